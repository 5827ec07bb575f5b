"""Bounded memory: the largest upload allowed stays within 150 MiB of an idle web process
and of an idle worker child, and the worker's reduced decoding keeps its predictions."""
from __future__ import annotations

import copy
import dataclasses
import io
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import requests
import torch
from django.conf import settings
from django.db import connection
from PIL import Image

from bench.upload_memory import measure_case
from classifier import uploads
from classifier.models import PetImage
from ml.checkpoints import load_checkpoint
from ml.data import open_image
from ml.inference import Predictor
from ml.synthetic import render_pet
from tests.helpers import encoded, upload
from tests.load import scaled

BUDGET_MIB = 150
MiB = 1024 * 1024


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", ["rgba-png", "rotated-jpeg", "webp", "progressive-cmyk-jpeg", "heic", "avif", "rgba-avif"]
)
def test_largest_allowed_upload_stays_within_150_mib(case, settings, tmp_path):
    """Each case in fresh processes (bench/upload_memory.py): validate and store it as the
    upload view does, then preprocess the stored file as a worker does."""
    row = measure_case(case, settings.PETSITE_MAX_IMAGE_PIXELS, workdir=tmp_path)
    for path in ("web", "worker"):
        measured = row[path]
        if not measured["exact_peak"]:
            pytest.skip("this system cannot reset a process's peak RSS (/proc/self/clear_refs)")
        assert measured["above_idle_mib"] <= BUDGET_MIB, (
            f"{case} at {row['size']}: {path} peaked {measured['above_idle_mib']:.0f} MiB above idle"
        )


# --- One process decodes a bounded number of uploads at once -----------------------------------


def test_the_decode_budget_sets_the_turns(settings):
    settings.PETSITE_MAX_IMAGE_PIXELS = 18_000_000  # 137 MiB at its worst
    assert uploads.decode_slots() == 1  # the default budget, 200 MiB
    settings.PETSITE_DECODE_MEMORY_MIB = 300
    assert uploads.decode_slots() == 2
    settings.PETSITE_DECODE_MEMORY_MIB = 100
    assert uploads.decode_slots() == 1  # never none: a budget below one upload still takes uploads, one at a time
    settings.PETSITE_DECODE_MEMORY_MIB = 1000
    assert uploads.decode_slots() == 7


@pytest.mark.django_db(transaction=True)
def test_eight_concurrent_uploads_decode_at_most_the_budgets_turns_at_once(user, settings):
    """Eight uploads in eight threads of one process (as gunicorn's threads serve them):
    the decodes under way are counted; at most decode_slots() run at once, the others wait
    their turn (none is refused), and all eight are stored."""
    settings.PETSITE_DECODE_MEMORY_MIB = 300  # two turns: waiting and taking turns both show
    slots = uploads.decode_slots()
    assert slots == 2
    count = {"now": 0, "most": 0}
    lock = threading.Lock()
    entered = threading.Semaphore(0)
    release = threading.Event()
    decode = uploads.inspect_image

    def counted(upload):
        with lock:
            count["now"] += 1
            count["most"] = max(count["most"], count["now"])
        entered.release()
        release.wait(timeout=120)  # held until the test has looked
        try:
            return decode(upload)
        finally:
            with lock:
                count["now"] -= 1

    outcomes = []

    def send(index: int) -> None:
        try:
            outcomes.extend(uploads.store_uploads(user, [upload(f"pet-{index}.jpg")]))
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    with mock.patch.object(uploads, "inspect_image", counted):
        for thread in threads:
            thread.start()
        for _ in range(slots):
            assert entered.acquire(timeout=60), "a decode never started"
        assert not entered.acquire(timeout=1)  # the six others wait for a turn…
        assert count["now"] == slots
        assert sum(t.is_alive() for t in threads) == 8
        release.set()
        for thread in threads:
            thread.join(timeout=120)
    assert count["most"] == slots
    assert len(outcomes) == 8
    assert all(outcome.saved for outcome in outcomes)
    assert PetImage.objects.filter(owner=user).count() == 8


# --- Eight worst uploads at once through gunicorn -------------------------------------------

PROCESS_BUDGET_MIB = 300  # each web process, above its idle size, with 8 worst uploads at once


def _proc(pid: int, field: str) -> int:
    """A memory figure of process ``pid`` from /proc (VmRSS, VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(rf"{field}:\s+(\d+)", status.read()).group(1)) * 1024


def _reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM (Linux 4.0 and later)
        return True
    except OSError:
        return False


def concurrent_upload_peaks(case: str, workdir: Path, count: int = 8, **env: str) -> dict:
    """Peak RSS above idle of each gunicorn process (as deployed: 2 processes of 4 threads)
    while ``count`` users each send the worst allowed upload of ``case`` at the same time,
    through the API. The processes are warmed up first by small uploads of the same kind."""
    from django.contrib.auth import get_user_model

    from api import tokens
    from bench.upload_memory import CASES, allowed_pixels, make_case, square
    from tests.conftest import worker_env
    from tests.faults.services import GunicornServer

    name, content_type, _ = CASES[case]
    big = make_case(case, square(allowed_pixels(case, settings.PETSITE_MAX_IMAGE_PIXELS, workdir)), workdir)
    small = make_case(case, (64, 48), workdir)
    users = get_user_model().objects
    keys = [tokens.issue_token(users.create_user(f"heavy-{i}")).key for i in range(count)]
    server = GunicornServer(worker_env(CACHE_URL=f"filecache://{workdir / 'cache'}", **env))
    server.start(timeout=scaled(60))
    try:
        def send(key: str, path: Path) -> int:
            with path.open("rb") as handle:
                return requests.post(f"{server.url}/api/images/", headers={"Authorization": f"Token {key}"},
                                     files={"image": (name, handle, content_type)}, timeout=scaled(300)).status_code

        def all_at_once(path: Path) -> list[int]:
            with ThreadPoolExecutor(count) as pool:
                return list(pool.map(send, keys, [path] * count))

        for _ in range(3):  # each process serves some: imports, connections, Pillow's plugins
            assert all_at_once(small) == [202] * count
        workers = server.workers()
        time.sleep(1)
        idle = {pid: _proc(pid, "VmRSS") for pid in workers}
        if not all(_reset_peak(pid) for pid in workers):
            pytest.skip("this system cannot reset a process's peak RSS (/proc/PID/clear_refs)")
        started = time.monotonic()
        statuses = all_at_once(big)
        seconds = time.monotonic() - started
        above = {pid: (_proc(pid, "VmHWM") - idle[pid]) / MiB for pid in workers}
    finally:
        server.stop()
    assert statuses == [202] * count, statuses  # each waited for its turn: none was refused
    return {"case": case, "size": big.name, "idle_mib": {p: v / MiB for p, v in idle.items()},
            "above_idle_mib": above, "seconds": seconds}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_eight_worst_uploads_at_once_keep_each_gunicorn_process_within_300_mib(tmp_path, record_property):
    """The bound the decode budget is for, measured with real processes (the count of
    decodes at once is asserted above; this is the memory it buys)."""
    result = concurrent_upload_peaks("rotated-jpeg", tmp_path)
    for pid, mib in result["above_idle_mib"].items():
        record_property(f"process_{pid}_above_idle_mib", round(mib))
        assert mib < PROCESS_BUDGET_MIB, result


# --- The worker decodes no larger than the model needs --------------------------------------


def photo(index: int, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    return render_pet(index, np.random.default_rng(index), image_size=256).resize(size).convert(mode)


def rotated_jpeg(image: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(image, "JPEG", exif=exif)


# Ordinary photos: the sizes, formats and modes that people upload.
PHOTOS = [
    lambda: encoded(photo(0, (4000, 3000)), "JPEG", quality=90),
    lambda: encoded(photo(3, (1600, 1200)), "JPEG"),
    lambda: rotated_jpeg(photo(6, (2000, 1500))),
    lambda: encoded(photo(9, (1600, 1200), "L"), "JPEG"),
    lambda: encoded(photo(12, (1600, 1200), "CMYK"), "JPEG"),
    lambda: encoded(photo(15, (1200, 1600)), "PNG", compress_level=1),
    lambda: encoded(photo(18, (2400, 1600), "RGBA"), "PNG", compress_level=1),
    lambda: encoded(photo(21, (900, 900)), "WEBP"),
    lambda: encoded(photo(24, (800, 600), "P"), "GIF"),
    lambda: encoded(photo(27, (1024, 768)), "BMP"),
    lambda: encoded(photo(30, (300, 200)), "JPEG"),
]


@pytest.fixture(scope="module")
def predictor_224(checkpoint_file) -> Predictor:
    """The test checkpoint at the ImageNet input size (224, resized from 256)."""
    checkpoint = dataclasses.replace(load_checkpoint(checkpoint_file), image_size=224, resize_size=256)
    return Predictor(checkpoint)


def test_reduced_decoding_keeps_the_top_1(predictor_224):
    """Today's path decodes at full size (``transform(open_image(f))``); ``preprocess``
    decodes reduced. Random weights leave every top-1 a near-tie, so the head is set to
    the photos' own features (a nearest-neighbour classifier): each top-1 then has a
    real margin, and it must not change."""
    predictor = copy.deepcopy(predictor_224)
    files = [make() for make in PHOTOS]
    full = [predictor.transform(open_image(io.BytesIO(data))) for data in files]
    reduced = [predictor.preprocess(io.BytesIO(data)) for data in files]

    body = copy.deepcopy(predictor.model)
    body.fc = torch.nn.Identity()
    with torch.inference_mode():
        features = torch.nn.functional.normalize(body(torch.stack(full)), dim=1)
        predictor.model.fc.weight.zero_()
        predictor.model.fc.bias.fill_(-100.0)
        predictor.model.fc.weight[: len(files)] = 20 * features
        predictor.model.fc.bias[: len(files)] = 0.0

    before = [r.top_k for r in predictor.classify_batch(full)]
    after = [r.top_k for r in predictor.classify_batch(reduced)]
    classes = predictor.classes
    assert [p[0].label for p in before] == classes[: len(files)]  # the head works as meant
    assert min(p[0].probability - p[1].probability for p in before) > 0.2  # no near-ties
    assert [p[0].label for p in after] == [p[0].label for p in before]
    for tensor_full, tensor_reduced in zip(full, reduced, strict=True):
        assert tensor_reduced.shape == tensor_full.shape
        assert (tensor_reduced - tensor_full).abs().mean() < 0.05  # in normalised units (std ~0.23 of 0-1)


def test_open_image_reduces_only_when_asked():
    jpeg = encoded(photo(1, (4000, 3000)), "JPEG")
    assert open_image(io.BytesIO(jpeg)).size == (4000, 3000)  # training: as before
    assert open_image(io.BytesIO(jpeg), min_size=256).size == (500, 375)  # libjpeg at 1/8
    assert open_image(io.BytesIO(jpeg), min_size=400).size == (1000, 750)  # 1/4: 1/8 would be too small

    png = encoded(photo(2, (3000, 2000), "RGBA"), "PNG", compress_level=1)
    reduced = open_image(io.BytesIO(png), min_size=256)
    assert reduced.mode == "RGB"
    assert reduced.size == (1000, 667)

    small = encoded(photo(3, (600, 400)), "PNG")
    assert open_image(io.BytesIO(small), min_size=256).size == (600, 400)


def test_reduced_images_are_still_upright():
    picture = photo(4, (2000, 1500))
    picture.paste((255, 0, 0), (0, 0, 400, 300))  # red in the stored top-left corner
    for data in (rotated_jpeg(picture), encoded(picture, "PNG", exif=rotated_exif())):
        image = open_image(io.BytesIO(data), min_size=256)
        assert image.width < image.height  # turned
        red = image.getpixel((image.width - 10, 10))
        assert red[0] > 200
        assert red[1] < 60


def rotated_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif
