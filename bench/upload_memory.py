"""Peak memory of one worst-case upload, in the web process and in the worker.

An upload's memory is set by its pixels, not by its bytes: a 125 KiB PNG can decode to
hundreds of MiB. For each kind of worst case (an image with the most pixels allowed
for its kind, in a format and mode that cost the most per pixel), a fresh process sets
up what it serves with, is warmed up with a small upload of the same kind, measures its
idle RSS, then handles the big one; the figure is the peak RSS (Linux ``VmHWM``, reset
after warm-up) above that idle RSS.

- web: ``inspect_image`` then ``get_or_create_pet_image``, as the upload view calls them
  (Django set up on a private SQLite database and media folder in a temp directory).
- worker: ``Predictor.preprocess`` of the file the web path stored, as a Celery child
  does before the forward pass (a random-weight ResNet34 checkpoint at 224 px).

    python bench/upload_memory.py                       # every case at the configured limit, ~1 min
    python bench/upload_memory.py --pixels 40000000     # at another limit
    python bench/upload_memory.py --cases rotated-jpeg --paths web --json
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import secrets
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024

# name: (file name, content type, what it is)
CASES = {
    "rgba-png": ("big.png", "image/png", "RGBA PNG"),
    "cmyk-jpeg": ("big.jpg", "image/jpeg", "CMYK JPEG"),
    "rotated-jpeg": ("big.jpg", "image/jpeg", "RGB JPEG, EXIF orientation 6"),
    "png16": ("big.png", "image/png", "16-bit RGB PNG"),
    "palette-gif": ("big.gif", "image/gif", "palette GIF"),
    "webp": ("big.webp", "image/webp", "RGB WebP (lossy)"),
    "progressive-cmyk-jpeg": ("big.jpg", "image/jpeg", "progressive CMYK JPEG"),
    # Phone photos: stored as JPEG (classifier/formats.py). Turned by the container (irot), as phones write them.
    "heic": ("big.heic", "image/heic", "RGB HEIC, 512-px tiles, turned (irot)"),
    "rgba-heic": ("big.heic", "image/heic", "RGBA HEIC, turned (irot)"),
    "avif": ("big.avif", "image/avif", "RGB AVIF, turned (irot)"),
    "rgba-avif": ("big.avif", "image/avif", "RGBA AVIF, turned (irot)"),
}
PATHS = ("web", "worker")


# --- The images ------------------------------------------------------------------------


def _picture(mode: str, size: tuple[int, int]) -> Image.Image:
    """Flat colour with a few shapes: cheap to compress (the file stays under the byte
    limit), yet not a single colour that an encoder could special-case."""
    w, h = size
    image = Image.new("RGB", size, (90, 140, 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle((w // 8, h // 8, w // 2, h // 2), fill=(220, 180, 60))
    draw.ellipse((w // 2, h // 3, w - w // 10, h - h // 10), fill=(40, 90, 30))
    draw.line((0, 0, w - 1, h - 1), fill=(255, 255, 255), width=max(1, w // 200))
    if mode == "RGBA":
        image.putalpha(Image.new("L", size, 200))
    elif mode != "RGB":
        image = image.convert(mode)
    return image


def _png16(image: Image.Image) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow reads them but does not write them)."""
    import numpy as np

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    w, h = image.size
    compressor = zlib.compressobj(6)
    idat = bytearray()
    raw = image.tobytes()
    for y in range(h):
        row = np.frombuffer(raw, np.uint8, count=3 * w, offset=3 * w * y).astype(np.uint16) * 257
        idat += compressor.compress(b"\x00" + row.astype(">u2").tobytes())
    idat += compressor.flush()
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", bytes(idat)) + chunk(b"IEND", b"")


def make_case(case: str, size: tuple[int, int], directory: Path) -> Path:
    """Write the image of ``case`` at ``size`` into ``directory``; return its path."""
    path = directory / f"{case}-{size[0]}x{size[1]}{Path(CASES[case][0]).suffix}"
    if case == "rgba-png":
        _picture("RGBA", size).save(path, "PNG", compress_level=6)
    elif case == "cmyk-jpeg":
        _picture("CMYK", size).save(path, "JPEG", quality=90)
    elif case == "progressive-cmyk-jpeg":
        _picture("CMYK", size).save(path, "JPEG", quality=90, progressive=True)
    elif case == "rotated-jpeg":
        exif = Image.Exif()
        exif[0x0112] = 6  # stored landscape, shown portrait: the pixels must turn
        _picture("RGB", size).save(path, "JPEG", quality=90, exif=exif)
    elif case == "png16":
        path.write_bytes(_png16(_picture("RGB", size)))
    elif case == "palette-gif":
        _picture("RGB", size).quantize(16).save(path, "GIF")
    elif case == "webp":
        _picture("RGB", size).save(path, "WEBP", quality=80, method=0)
    elif case in ("heic", "rgba-heic"):
        import pillow_heif  # what the site registers (classifier/formats.py); here for the encoder

        pillow_heif.register_heif_opener()
        image = _picture("RGBA" if case == "rgba-heic" else "RGB", size)
        # As an iPhone writes them: 512-pixel tiles (alpha is never tiled), the turn in the container.
        image.save(path, "HEIF", quality=50, tile_size=512, exif=_turned(), enc_params={"preset": "ultrafast"})
    elif case in ("avif", "rgba-avif"):
        image = _picture("RGBA" if case == "rgba-avif" else "RGB", size)
        image.save(path, "AVIF", quality=50, speed=10, exif=_turned())
    else:
        raise ValueError(f"unknown case {case!r}")
    return path


def _turned() -> bytes:
    """EXIF saying "turn by 90 degrees": the HEIF and AVIF encoders write it as the container's irot."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif.tobytes()


def square(pixels: int) -> tuple[int, int]:
    side = math.isqrt(pixels)
    return side, side


def allowed_pixels(case: str, pixels: int, directory: Path) -> int:
    """The most pixels the validator accepts for an image of ``case`` when the limit is
    ``pixels``: kinds that cost more per pixel to decode are allowed fewer."""
    import django

    django.setup()
    from django.core.files import File

    from classifier.validators import ORDINARY_COST, decode_cost

    sample = make_case(case, (64, 48), directory)
    with open(sample, "rb") as handle, Image.open(handle) as image:
        cost = decode_cost(image, File(handle))
    sample.unlink()
    return pixels * ORDINARY_COST // cost


# --- Measuring, inside the child process -----------------------------------------------


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _reset_peak() -> bool:
    """Reset the kernel's high-water mark of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak() -> int:
    try:
        with open("/proc/self/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) * 1024
    except (OSError, AttributeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _measure(run, warmup_file: Path, big_file: Path) -> dict:
    run(warmup_file)  # lazy imports, plugin registration, database connection
    gc.collect()
    idle = _rss()
    exact = _reset_peak()
    started = time.perf_counter()
    result = run(big_file)
    seconds = time.perf_counter() - started
    peak = _peak()
    return {
        "idle_mib": idle / MiB, "peak_mib": peak / MiB, "above_idle_mib": (peak - idle) / MiB,
        "seconds": seconds, "exact_peak": exact, **(result or {}),
    }


def child_web(big_file: Path, warmup_file: Path, content_type: str) -> dict:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import UploadedFile
    from django.core.management import call_command

    from classifier import uploads
    from classifier.validators import inspect_image

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench")
    # Older checkouts (to measure "before") have only create_pet_image, returning the image.
    store = getattr(uploads, "get_or_create_pet_image", lambda *args: (uploads.create_pet_image(*args), True))

    stored: list[str] = []

    def run(path: Path) -> dict:
        with open(path, "rb") as handle:
            upload = UploadedFile(handle, name=path.name, content_type=content_type, size=path.stat().st_size)
            info = inspect_image(upload)
            pet, _ = store(user, upload, info)
        del info
        stored.append(pet.image.path)
        return {"stored": pet.image.path, "stored_bytes": pet.image.size}

    return {**_measure(run, warmup_file, big_file), "stored_warmup": stored[0]}


def child_worker(big_file: Path, warmup_file: Path, workdir: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    from ml.breeds import BREED_KEYS
    from ml.checkpoints import save_checkpoint
    from ml.inference import Predictor
    from ml.model import build_resnet34

    torch.manual_seed(0)
    model = build_resnet34(num_classes=len(BREED_KEYS), weights=None)
    checkpoint = save_checkpoint(workdir / "bench.pt", model, classes=BREED_KEYS, image_size=224, metrics={})
    predictor = Predictor(checkpoint)
    del model

    def run(path: Path) -> dict:
        with open(path, "rb") as handle:
            tensor = predictor.preprocess(handle)
        return {"tensor": list(tensor.shape)}

    return _measure(run, warmup_file, big_file)


# --- The parent: one fresh process per case and path -----------------------------------


def _child_env(workdir: Path, pixels: int) -> dict[str, str]:
    """A private database and media folder, and an in-process broker: nothing shared is touched,
    whatever the calling environment (or a .env file) names."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PETSITE_", "CELERY_", "AWS_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "petsite.settings",
        "PYTHONPATH": str(ROOT),
        "PETSITE_VAR_DIR": str(workdir / "var"),
        "DATABASE_URL": f"sqlite:///{workdir / 'var' / 'bench.sqlite3'}",
        "MEDIA_ROOT": str(workdir / "media"),
        "CELERY_BROKER_URL": "memory://",  # in-process: the upload's message goes nowhere, instantly
        "AWS_STORAGE_BUCKET_NAME": "",
        "PETSITE_MAX_IMAGE_PIXELS": str(pixels),
        "PETSITE_TORCH_THREADS": "1",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "0",  # DEBUG would keep every SQL query in memory
    })
    return env


def _run_child(args: list[str], env: dict[str, str]) -> dict:
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=600,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"child {args[:2]} failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    return json.loads(lines[-1])


def measure_case(case: str, pixels: int, paths=PATHS, workdir: Path | None = None) -> dict:
    """Peak RSS above idle of ``case`` at ``pixels``, for each of ``paths``, in fresh processes."""
    with tempfile.TemporaryDirectory(prefix="petsite-bench-", dir=workdir) as tmp:
        tmp = Path(tmp)
        size = square(allowed_pixels(case, pixels, tmp))
        big = make_case(case, size, tmp)
        warmup = make_case(case, (64, 48), tmp)
        env = _child_env(tmp, pixels)
        name, content_type, what = CASES[case]
        row = {"case": case, "what": what, "size": list(size), "file_bytes": big.stat().st_size}
        web = _run_child(["--child", "web", "--file", str(big), "--warmup", str(warmup),
                          "--content-type", content_type, "--workdir", str(tmp)], env)
        row["web"] = web
        if "worker" in paths:
            row["worker"] = _run_child(["--child", "worker", "--file", web["stored"], "--warmup", web["stored_warmup"],
                                        "--content-type", content_type, "--workdir", str(tmp)], env)
        if "web" not in paths:
            del row["web"]
        return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pixels", type=int, help="pixel limit to test at (default: the configured one)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, of: " + ", ".join(CASES))
    parser.add_argument("--paths", default=",".join(PATHS), help="web, worker or both")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--content-type", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "web":
        print(json.dumps(child_web(args.file, args.warmup, args.content_type)))
        return
    if args.child == "worker":
        print(json.dumps(child_worker(args.file, args.warmup, args.workdir)))
        return

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "petsite.settings")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))  # only read, never used to sign
    from django.conf import settings

    pixels = args.pixels or settings.PETSITE_MAX_IMAGE_PIXELS
    paths = [p for p in args.paths.split(",") if p]
    rows = [measure_case(case, pixels, paths) for case in args.cases.split(",") if case]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"Peak RSS above idle (MiB), one upload at the limit for its kind ({pixels:,} pixels for ordinary "
          f"ones); python {sys.version.split()[0]}, "
          f"Pillow {Image.__version__}")
    print(f"{'case':<22} {'size':>11} {'file':>9} " + " ".join(f"{p + ' MiB':>11} {p + ' s':>9}" for p in paths))
    for row in rows:
        cells = " ".join(f"{row[p]['above_idle_mib']:>11.0f} {row[p]['seconds']:>9.2f}" for p in paths)
        print(f"{row['case']:<22} {'x'.join(map(str, row['size'])):>11} {row['file_bytes'] / 1024:>8.0f}K {cells}")


if __name__ == "__main__":
    main()
