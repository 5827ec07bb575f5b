"""Webhook tasks, and sending them: the entry points of ``services.py``.

A delivery row is written in the transaction that finishes the image (the receiver
below, in a savepoint: a webhook's trouble never undoes a classification); its first
try is sent after the commit, and a retry due soon is sent with a countdown. Retries due
later (longer than the broker's visibility timeout allows for a countdown), and
deliveries whose message was lost, are sent by the beat task :func:`send_due`.
"""
import logging
from functools import partial

from celery import shared_task
from django.conf import settings
from django.db import transaction

from . import services

log = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver(pk: int) -> None:
    """Try delivery ``pk`` once, if it is due (a second message for it finds nothing to do)."""
    delay = services.try_delivery(pk)
    # A countdown longer than the visibility timeout would be handed out again and again
    # (DESIGN.md, "Redis broker"): those retries are the beat's.
    if delay is not None and delay < settings.PETSITE_BROKER_VISIBILITY_TIMEOUT / 2:
        send(pk, countdown=delay)


@shared_task(name="webhooks.tasks.send_due", ignore_result=True)
def send_due() -> int:
    """Send every delivery that is due (the beat, every 10 s); returns how many."""
    pks = list(services.due().order_by("next_attempt_at").values_list("pk", flat=True)[:500])
    return sum(send(pk) for pk in pks)


def send(pk: int, countdown: float | None = None) -> bool:
    """Send a message for delivery ``pk``; False when the broker cannot be reached (the beat sends it later)."""
    try:
        deliver.apply_async((pk,), countdown=countdown)
    except Exception as error:
        log.warning("Could not send webhook delivery %s to the workers (%s); the beat sends it later", pk, error)
        return False
    return True


def on_image_finished(sender, pk: int, **kwargs) -> None:
    """Receiver of ``classifier.signals.image_finished``: write the owner's delivery in the
    finishing transaction, send it after the commit."""
    try:
        with transaction.atomic():  # a savepoint: a failure here leaves the classification's transaction usable
            delivery = services.record_image_finished(pk)
    except Exception:
        log.exception("Could not record the webhook for image %s", pk)
        return
    if delivery is not None:
        transaction.on_commit(partial(send, delivery.pk))


def send_test(endpoint) -> None:
    """Record a test event for ``endpoint`` and send it after the commit (the token page's button)."""
    delivery = services.record_test(endpoint)
    transaction.on_commit(partial(send, delivery.pk))
