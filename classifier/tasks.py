"""Celery tasks: thin wrappers that pass ids, never objects, to the services."""
from datetime import timedelta

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import services


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def classify_image(pk: int) -> None:
    services.classify(pk)


@shared_task
def requeue_stale(minutes: int = 5) -> int:
    return services.requeue_stale(timedelta(minutes=minutes))
