"""Celery tasks: thin wrappers that pass ids, never objects, to the classification functions.

Classification tasks are acknowledged only after they finish (a worker that dies
mid-task leaves the message for another) and retry while the database is away, long
enough to outlast an outage of a few minutes; after that the re-queue sends them again.
One still running after ``PETSITE_CLASSIFY_TIME_LIMIT`` seconds is hung: its child is
killed, which counts as a try of its images (classification.py, "Poison images").
"""
from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from . import classification, explanations

RELIABLE = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OperationalError, InterfaceError),
    # 1, 2, 4, 8, 16, then every 30 s: ten retries span about three minutes. Without
    # jitter, so the span is guaranteed; the re-queue covers anything longer.
    "retry_backoff": True,
    "retry_backoff_max": 30,
    "retry_jitter": False,
    "max_retries": 10,
    "time_limit": settings.PETSITE_CLASSIFY_TIME_LIMIT,
}


@shared_task(**RELIABLE)
def classify_image(pk: int) -> None:
    classification.classify(pk)


@shared_task(**RELIABLE)
def classify_batch(pks: list[int], version_id: int | None = None) -> None:
    """Several images in one task: re-sends, activation, reclassification with a named version."""
    classification.classify_images(pks, version_id)


@shared_task
def requeue_stale() -> int:
    return classification.requeue_stale()


@shared_task(**RELIABLE)
def make_heatmap(pk: int) -> None:
    """The Grad-CAM heatmap of one photo, asked for by the first view of its page."""
    explanations.make_heatmap(pk)

