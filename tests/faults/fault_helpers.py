"""What the fault tests share: images stored without a message, waiting for them, checking
each ended once."""

from __future__ import annotations

import socket
import time
from datetime import timedelta
from unittest import mock

from django.db.models import Count
from django.utils import timezone

from classifier import tasks
from classifier.models import Classification, PetImage
from tests.conftest import WorkerProcess
from tests.helpers import store_photo, upload, wait_for

Status = PetImage.Status
HOST = socket.gethostname()
# Seconds a new pool child of the fault tests sleeps before it reports up: longer than
# Celery's default worker_proc_alive_timeout (4 s), which killed such children forever.
SLOW_CHILD_START = 6.0


def stored_images(user, count: int, names: tuple[str, ...] = ()) -> list[int]:
    """Uploads stored as the site stores them, whose messages were lost (never sent):
    a worker that starts sends them."""
    pks = []
    with mock.patch.object(tasks, "send", return_value=True):
        for i in range(count):
            file = upload(names[i] if i < len(names) else f"pet-{i}.jpg")
            pks.append(store_photo(user, file).pk)
    PetImage.objects.filter(pk__in=pks).update(uploaded_at=timezone.now() - timedelta(minutes=10))
    return pks


def finished(pks) -> bool:
    return not PetImage.objects.filter(pk__in=pks, status__in=[Status.PENDING, Status.PROCESSING]).exists()


def wait_finished(pks, timeout: float, *workers: WorkerProcess) -> float:
    """Seconds until every image is DONE or FAILED."""
    start = time.monotonic()
    try:
        wait_for(lambda: finished(pks), timeout=timeout, what="every image to finish")
    except AssertionError:
        states = list(PetImage.objects.filter(pk__in=pks).values_list("pk", "status", "attempts", "claimed_by"))
        raise AssertionError(f"{states}\n" + "\n".join(w.log() for w in workers)) from None
    return time.monotonic() - start


def assert_each_once(pks, failed: tuple[int, ...] = ()) -> None:
    """Every image DONE (or FAILED with a reason where expected), one history row per version."""
    for pet in PetImage.objects.filter(pk__in=pks):
        if pet.pk in failed:
            assert pet.status == Status.FAILED, pet.error_message
            assert pet.error_message, pet.error_message
        else:
            assert pet.status == Status.DONE, (pet.pk, pet.status, pet.error_message)
            assert pet.claim_token is None, (pet.pk, pet.status, pet.error_message)
            assert pet.classifications.filter(model_version=pet.model_version).count() == 1
    per_version = Classification.objects.filter(image__in=pks).values("image", "model_version").annotate(n=Count("pk"))
    assert all(row["n"] == 1 for row in per_version)


def processing_started(pks) -> bool:
    return PetImage.objects.filter(pk__in=pks, status=Status.PROCESSING, attempts__gte=1).exists()


def holders(pks) -> set[str]:
    """The processes (host:pid) holding claims on ``pks`` now."""
    return set(PetImage.objects.filter(pk__in=pks, status=Status.PROCESSING).values_list("claimed_by", flat=True))


def send_each(pks, queue: str) -> None:
    for pk in pks:
        tasks.classify_image.apply_async((pk,), queue=queue)


def record(record_property, **figures: float) -> None:
    for name, value in figures.items():
        record_property(name, round(value, 1))

def uploads_one(user, i: int) -> int:
    file = upload(f"burst-{i}.jpg")
    pet = store_photo(user, file)
    PetImage.objects.filter(pk=pet.pk).update(enqueued_at=timezone.now(), enqueue_count=1)
    return pet.pk
