"""Celery tasks: thin wrappers that pass ids, never objects, to the classification.

Classification tasks are acknowledged only after they finish (a worker that dies
mid-task leaves the message for another) and retry when the database is briefly away.
"""
from datetime import timedelta

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import classification

RELIABLE = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
    "max_retries": 5,
}


@shared_task(**RELIABLE)
def classify_image(pk: int) -> None:
    classification.classify(pk)


@shared_task(**RELIABLE)
def classify_batch(pks: list[int], version_id: int) -> None:
    """Reclassification: a chunk of images with a named model version."""
    classification.classify_images(pks, version_id)


@shared_task
def requeue_stale(minutes: int = 5) -> int:
    return classification.requeue_stale(timedelta(minutes=minutes))
