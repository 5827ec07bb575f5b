"""Celery tasks: thin wrappers that pass ids, never objects, to the services.

Classification tasks are acknowledged only after they finish (a worker that dies
mid-task leaves the message for another) and retry when the database is briefly away.
"""
from datetime import timedelta

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import services

RELIABLE = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
    "max_retries": 5,
}


@shared_task(**RELIABLE)
def classify_image(pk: int) -> None:
    services.classify(pk)


@shared_task(**RELIABLE)
def classify_batch(pks: list[int], version_id: int) -> None:
    """Reclassification: a chunk of images with a named model version."""
    services.classify_images(pks, version_id)


@shared_task
def requeue_stale(minutes: int = 5) -> int:
    return services.requeue_stale(timedelta(minutes=minutes))
