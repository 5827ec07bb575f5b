"""Celery tasks, and sending them: thin wrappers that pass ids, never objects, to the services.

The services (classification.py, explanations.py, uploads.py) import no task: they
return what must be sent, and the entry points (views, the API, commands, the admin,
the tasks here) send it through :func:`send` and :func:`send_on_commit`. Not Celery's
``delay_on_commit``: a message is only a hint (classification.py), so a broker that is
away must cost nothing but the message (the row stays pending and the beat re-sends
it), and each send is recorded on the rows (``enqueued_at``) for the re-send's back-off;
a bare ``delay`` run after the commit would raise into the request instead, and record
nothing.

Classification tasks are acknowledged only after they finish (a worker that dies
mid-task leaves the message for another) and retry while the database is away, long
enough to outlast an outage of a few minutes; after that the re-queue sends them again.
One still running after ``PETSITE_CLASSIFY_TIME_LIMIT`` seconds is hung: its child is
killed, which counts as a try of its images (classification.py, "Poison images").
"""
import logging
from collections.abc import Iterable, Sequence
from functools import partial
from http import HTTPStatus

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnreachable

from petsite.outages import BROKER, outages, unreachable_service
from registry import services as registry_services
from registry.models import ModelVersion

from . import classification, explanations
from .models import PetImage

log = logging.getLogger(__name__)

CHUNK_SIZE = 32  # images per message when many are sent at once

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
    send(classification.classify(pk))  # images whose try raised go again at once


@shared_task(**RELIABLE)
def classify_batch(pks: list[int], version_id: int | None = None) -> None:
    """Several images in one task: re-sends, activation, reclassification with a named version."""
    send(classification.classify_images(pks, version_id))


@shared_task(name="classifier.tasks.requeue_stale")
def requeue_stale_task() -> int:
    return requeue_stale()


@shared_task(**RELIABLE)
def make_heatmap(pk: int) -> None:
    """The Grad-CAM heatmap of one photo, asked for by a POST (:func:`ask_for_heatmap`)."""
    explanations.make_heatmap(pk)


# --- Sending ----------------------------------------------------------------------------------


def send(pks: Sequence[int], version_id: int | None = None) -> bool:
    """Send one message for ``pks`` now and record it; False if the broker is unreachable
    (nothing to send is True).

    A broker that is down is logged, not raised: the rows stay as they are and
    :func:`requeue_stale` sends them again later.
    """
    pks = list(pks)
    if not pks:
        return True
    try:
        if len(pks) == 1 and version_id is None:
            classify_image.delay(pks[0])
        else:
            classify_batch.delay(pks, version_id)
    except (BrokerUnreachable, OSError) as error:  # expected while the broker is away: one line
        log.warning("Could not send images %s to the workers (the broker is unreachable: %s); "
                    "they stay waiting and are sent again later", pks, error)
        return False
    except Exception:  # anything else is a bug: keep the traceback, and the rows, which are re-sent later
        log.exception("Could not send images %s to the workers; they will be re-sent", pks)
        return False
    PetImage.objects.filter(pk__in=pks).update(enqueued_at=timezone.now(), enqueue_count=F("enqueue_count") + 1)
    return True


def in_chunks(pks: Sequence[int], chunk_size: int = CHUNK_SIZE) -> list[list[int]]:
    """``pks`` in messages of ``chunk_size`` ids, in order."""
    pks = list(pks)
    return [pks[i : i + chunk_size] for i in range(0, len(pks), chunk_size)]


def send_on_commit(pks: Sequence[int], version_id: int | None = None, chunk_size: int = CHUNK_SIZE) -> list[list[int]]:
    """Send ``pks`` once the current transaction commits (at once outside one), ``chunk_size``
    per message; returns the chunks. A worker only sees committed rows."""
    chunks = in_chunks(pks, chunk_size)
    for chunk in chunks:
        transaction.on_commit(partial(send, chunk, version_id))
    return chunks


def send_new_uploads(outcomes: Iterable) -> None:
    """Send the photos an upload stored for the first time (``uploads.UploadOutcome``):
    the upload view's and the API's one call after storing."""
    send_on_commit([outcome.image.pk for outcome in outcomes if outcome.created])


def requeue_stale() -> int:
    """Send again every image that waited too long (``classification.stale_images``);
    returns how many were sent. Covers a lost message, a worker that died mid-task and a
    broker restart: the beat runs it, each worker at start, and ``requeue_pending``."""
    pks = list(classification.stale_images().order_by("pk").values_list("pk", flat=True))
    sent = 0
    for chunk in in_chunks(pks):
        sent += len(chunk) if send(chunk) else 0
    if sent:
        log.info("Re-sent %d image(s) that waited too long", sent)
    return sent


@worker_ready.connect
def _resend_what_was_stranded(**kwargs) -> None:
    """A worker that starts sends again what a dead worker of this host held, and
    anything else that waited too long, instead of waiting for the next beat run."""
    try:
        count = requeue_stale()
        log.info("Worker start: re-sent %d stranded image(s)", count)
    except DatabaseError:
        log.warning("Worker start: the database is unreachable; the beat task re-sends stranded images later")
    finally:
        connection.close()  # the main process classifies nothing: hold no connection


def send_pending_now() -> int:
    """Send every pending image now, whatever its age (a model just became active)."""
    pks = list(PetImage.objects.filter(status=PetImage.Status.PENDING).order_by("pk").values_list("pk", flat=True))
    send_on_commit(pks)
    return len(pks)


def on_model_activated(sender, version, **kwargs) -> None:
    """A new model can classify everything that was waiting for one. Images being
    classified right now are left to the model that claimed them."""
    send_pending_now()


def reclassify(images: QuerySet, version: ModelVersion | None = None, chunk_size: int = CHUNK_SIZE) -> list[list[int]]:
    """Send ``images`` to the workers in chunks, to be classified by ``version`` (default: active).

    The previous predictions stay in the Classification history. Returns the chunks sent.
    """
    version = version or registry_services.require_active_version()
    pks = list(images.order_by("pk").values_list("pk", flat=True))
    return send_on_commit(pks, version.pk, chunk_size)


def ask_for_heatmap(pet: PetImage) -> HTTPStatus:
    """Ask a worker for the heatmap of ``pet`` (the POST of the photo page's script, and of
    the API): OK when it is there already, ACCEPTED when asked for (now or in the last
    minutes), CONFLICT when there is nothing to explain (no result). Why a POST and not
    the result's worker: ``classifier/explanations.py``.

    Sent at once: the request writes no row a worker would need. While the broker is away
    nothing is sent and the next request asks again (ACCEPTED all the same: the page keeps
    waiting, as it would for a busy worker)."""
    if explanations.heatmap_is_current(pet):
        return HTTPStatus.OK
    if not explanations.needs_heatmap(pet):
        return HTTPStatus.CONFLICT
    key = explanations.reserve_heatmap_request(pet)
    if key is None:
        return HTTPStatus.ACCEPTED
    try:
        make_heatmap.delay(pet.pk)
    except Exception as error:
        if unreachable_service(error) != BROKER:
            raise
        outages.down(BROKER, error, "no heatmap is asked for until it answers again")
        explanations.forget_heatmap_request(key)
        return HTTPStatus.ACCEPTED
    outages.up(BROKER)
    return HTTPStatus.ACCEPTED
