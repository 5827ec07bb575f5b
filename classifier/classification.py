"""Classifying images with the workers: claim, classify, save, and find what is stale.

Sending messages is the entry points' part (``classifier/tasks.py``): this module imports
no task, and returns what must be sent again.

The database row is the source of truth; a queue message is only a hint to look at a
row. That gives "exactly once in effect" with at-least-once delivery:

- **send**: a message names image ids; ``enqueued_at`` records when one was last sent.
- **claim**: one conditional UPDATE turns only claimable rows (pending, or held by a
  claim that is stale or whose process is dead) into PROCESSING with this claim's
  token. A second delivery, or a second worker, finds nothing to claim.
- **save**: the result lands only while the claim still holds (``claim_token`` matches),
  and the history keeps one row per (image, model version); :func:`record_prediction`
  is the one writer of both.
- **re-send**: ``tasks.requeue_stale`` (beat, every ``PETSITE_REQUEUE_INTERVAL`` seconds, and
  each worker at start) sends again what waited too long since it was last sent or
  claimed, never judged by upload time; re-sends back off per image.

A claim belongs to a process (``host:pid``). Worker processes run one task at a time
(Celery's prefork or solo pool), so a claim held by the very process that looks at it,
or by a process of the same host that no longer exists (whichever worker it belonged
to), is abandoned and can be taken over at once; any other claim only once it is older
than ``PETSITE_CLAIM_TIMEOUT``.

**Poison images.** ``attempts`` counts the tries of an image that started and did not
finish, however they ended: the child was killed (SIGKILL, out of memory, the task's
hard time limit; the claim is then found abandoned), or the forward pass raised. After
``MAX_ATTEMPTS`` the image ends FAILED with the reason, on whichever worker it was.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from registry import services as registry_services
from registry.models import ModelVersion

from .models import Classification, PetImage
from .signals import image_finished
from .workers import process_running

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # a worker that died this often on one image will die again: give up
RESEND_BACKOFF_STEPS = 5  # the n-th re-send waits up to 2**5 times PETSITE_REQUEUE_AFTER
Status = PetImage.Status
Error = PetImage.Error


# --- Claiming -----------------------------------------------------------------------------


def worker_identity() -> str:
    """Who holds a claim: this process, as ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _abandoned(holder: str) -> bool:
    """True for a claim of this very process (its task ended without saving) or of a
    process of this host that has died. Claims of other hosts expire by time only."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return int(pid) == os.getpid() or not process_running(int(pid))


def _dead_claim(images: QuerySet, now) -> Q:
    """Images of ``images`` claimed by nobody alive: the claim is missing, older than
    PETSITE_CLAIM_TIMEOUT, or held by an abandoned process (see :func:`_abandoned`)."""
    holders = set(images.filter(status=Status.PROCESSING).values_list("claimed_by", flat=True).distinct())
    abandoned = [holder for holder in holders if holder and _abandoned(holder)]
    stale = now - timedelta(seconds=settings.PETSITE_CLAIM_TIMEOUT)
    return Q(status=Status.PROCESSING) & (
        Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale) | Q(claimed_by__in=abandoned)
    )


def _claimable(pks: Sequence[int], version: ModelVersion, reclassify: bool) -> Q:
    claimable = Q(status=Status.PENDING) | _dead_claim(PetImage.objects.filter(pk__in=pks), timezone.now())
    if reclassify:  # a named version also takes finished images it has not classified yet
        claimable |= Q(status=Status.FAILED) | Q(status=Status.DONE) & ~Q(model_version=version)
    return claimable


def claim(pks: Sequence[int], version: ModelVersion, reclassify: bool = False) -> tuple[uuid.UUID, list[PetImage]]:
    """Atomically take the claimable images among ``pks``; returns the claim and its images.

    One UPDATE decides: of two workers given the same ids, each image goes to one.
    """
    token = uuid.uuid4()
    PetImage.objects.filter(pk__in=pks).filter(_claimable(pks, version, reclassify)).update(
        status=Status.PROCESSING, claim_token=token, claimed_by=worker_identity(), claimed_at=timezone.now()
    )
    return token, list(PetImage.objects.filter(claim_token=token).order_by("attempts", "pk"))


def _held(pet: PetImage, token: uuid.UUID) -> QuerySet:
    """The image's row while this claim still holds it: every write goes through here."""
    return PetImage.objects.filter(pk=pet.pk, claim_token=token, status=Status.PROCESSING)


def _finish(pet: PetImage, token: uuid.UUID, **fields) -> bool:
    finished = bool(_held(pet, token).update(claim_token=None, claimed_by="", **fields))
    if finished:  # the one place an image becomes done or failed (classifier/signals.py)
        image_finished.send(sender=PetImage, pk=pet.pk, status=fields["status"])
    return finished


def _release(pets: Sequence[PetImage], token: uuid.UUID, code: str, reason: str) -> list[int]:
    """Give the images back (pending), for example when the model cannot be loaded;
    returns the ids given back (those this claim still held)."""
    held = PetImage.objects.filter(pk__in=[p.pk for p in pets], claim_token=token)
    pks = list(held.order_by("pk").values_list("pk", flat=True))
    held.update(status=Status.PENDING, claim_token=None, claimed_by="", error_code=code, error_message=reason)
    return pks


def _fail(pet: PetImage, token: uuid.UUID, code: str, reason: str, **fields) -> bool:
    """End ``pet`` FAILED for ``code`` (what the owner is told), ``reason`` for staff."""
    return _finish(pet, token, status=Status.FAILED, error_code=code, error_message=reason, **fields)


def _gave_up(attempts: int, last_error: str = "") -> str:
    """The reason a poison image failed, for staff (``error_message``)."""
    reason = f"Classification did not finish after {attempts} tries."
    return f"{reason} The last one failed with {last_error}." if last_error else reason


# --- Classifying --------------------------------------------------------------------------


def classify(pk: int) -> list[int]:
    """Classify image ``pk`` with the active model (the task behind every upload), and with
    it up to ``PETSITE_BATCH_SIZE - 1`` other images waiting, in one forward pass; returns
    the ids to send again (:func:`classify_images`).

    Micro-batching without waiting: a lone upload goes at once, alone; during a burst a
    worker takes what has piled up. The other images' own messages then find nothing to
    claim. Oldest first, so that nobody waits behind a stream of newer uploads.
    """
    waiting = PetImage.objects.filter(status=Status.PENDING).exclude(pk=pk)
    oldest_first = waiting.order_by(Coalesce("enqueued_at", "uploaded_at"), "pk").values_list("pk", flat=True)
    others = oldest_first[: max(settings.PETSITE_BATCH_SIZE - 1, 0)]
    return classify_images([pk, *others])


def classify_images(pks: Sequence[int], version_id: int | None = None) -> list[int]:
    """Classify the claimable images among ``pks`` with ``version_id`` (default: the active model).

    Returns the ids of images whose try raised and that were given back: the caller (the
    task) sends them again at once. This module sends nothing itself (``tasks.py`` does).

    Without an active model images stay pending with the reason recorded, and are
    classified when a model is activated. A named version (reclassification) also
    takes finished images it has not classified yet.

    A worker that dies mid-way leaves its images claimed and ``attempts`` counting the
    unfinished tries. When a batch comes back after such a death, its images are
    classified one at a time, the least tried first, so that an image that kills
    workers only fails itself: after MAX_ATTEMPTS it ends FAILED with the reason.
    """
    version = ModelVersion.objects.filter(pk=version_id).first() if version_id else registry_services.active_version()
    if version is None:
        if version_id is None:
            PetImage.objects.filter(pk__in=pks, status=Status.PENDING).update(
                error_code=Error.NO_ACTIVE_MODEL, error_message=registry_services.NO_ACTIVE_MODEL
            )
        return []
    token, pets = claim(pks, version, reclassify=version_id is not None)
    for pet in pets:
        if pet.attempts >= MAX_ATTEMPTS:  # its last tries ended with the worker process (killed, or timed out)
            _fail(pet, token, Error.TOO_MANY_TRIES, _gave_up(pet.attempts))
    pets = [pet for pet in pets if pet.attempts < MAX_ATTEMPTS]
    if not pets:
        return []
    from ml.checkpoints import CheckpointError  # torch: only in the worker, never in the web process

    try:
        predictor = registry_services.predictor_for(version)
    except (CheckpointError, OSError) as exc:
        log.exception("Model %s cannot be loaded", version.name)
        _release(pets, token, Error.MODEL_UNLOADABLE, f"The model {version.name} cannot be loaded: {exc}")
        return []
    batches = [pets] if all(pet.attempts == 0 for pet in pets) else [[pet] for pet in pets]
    again = []
    for batch in batches:
        try:
            _classify_batch(batch, token, version, predictor)
        except (OperationalError, InterfaceError):  # the database is away: the task retries
            raise
        except Exception as error:
            log.exception("Classifying images %s failed", [pet.pk for pet in batch])
            again += _failed_try(batch, token, f"{type(error).__name__}: {error}")
    return again


def _failed_try(pets: Sequence[PetImage], token: uuid.UUID, error: str) -> list[int]:
    """A try that raised counts like one whose process died: an image tried ``MAX_ATTEMPTS``
    times ends FAILED with the error; the others are given back, to be sent again at once
    (returned; tried before, they are then classified one at a time, so a poison image
    fails alone)."""
    attempts = dict(PetImage.objects.filter(pk__in=[p.pk for p in pets]).values_list("pk", "attempts"))
    retry = []
    for pet in pets:
        if attempts.get(pet.pk, 0) >= MAX_ATTEMPTS:
            _fail(pet, token, Error.TOO_MANY_TRIES, _gave_up(attempts[pet.pk], error))
        else:
            retry.append(pet)
    return _release(retry, token, Error.TRY_FAILED, f"The last try failed with {error}")


def _classify_batch(pets: Sequence[PetImage], token: uuid.UUID, version: ModelVersion, predictor) -> None:
    """One forward pass for ``pets``, counted as an attempt for each before it starts.

    The claim's time restarts with the pass: a new child's first task imports PyTorch and
    loads the model first, which on a busy machine can take most of PETSITE_CLAIM_TIMEOUT.
    """
    PetImage.objects.filter(pk__in=[p.pk for p in pets], claim_token=token).update(
        attempts=F("attempts") + 1, claimed_at=timezone.now()
    )
    readable, tensors = [], []
    for pet in pets:
        try:
            with pet.image.open("rb") as f:
                tensors.append(predictor.preprocess(f))
            readable.append(pet)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
            log.warning("Image %s could not be read: %s", pet.pk, exc)
            _fail(pet, token, Error.UNREADABLE, "The stored image could not be read.",
                  classified_at=timezone.now(), attempts=0)
    if not readable:
        return
    results = predictor.classify_batch(tensors, k=settings.PETSITE_TOP_K, batch_size=len(tensors))
    now = timezone.now()
    for pet, result in zip(readable, results, strict=True):
        if not record_prediction(pet, token, version, _prediction(result), now):
            log.info("Image %s: claim lost before saving; result dropped", pet.pk)


# --- The current prediction: one writer ---------------------------------------------------

PREDICTION_FIELDS = ("predicted_breed", "confidence", "top_k", "verdict", "verdict_scores")


def _prediction(result) -> dict[str, Any]:
    """One image's result (``ml.inference``'s) as the fields of :data:`PREDICTION_FIELDS`."""
    best = result.top_k[0]
    return {
        "predicted_breed": best.label, "confidence": best.probability, "verdict": result.verdict,
        "top_k": [{"breed": p.label, "probability": round(p.probability, 6)} for p in result.top_k],
        "verdict_scores": _json_scores(result.scores),
    }


def record_prediction(pet: PetImage, token: uuid.UUID, version: ModelVersion, prediction: dict, now) -> bool:
    """Make ``prediction`` by ``version`` the image's current one: the only writer of the
    prediction on PetImage (its current one) and in Classification (the history), both in
    one transaction, so the image's prediction is always its latest history row's.

    Only while ``token``'s claim holds (False otherwise: another worker's result counts).
    The history keeps one row per (image, version): a version classifying again replaces
    its row, which becomes the latest.
    """
    with transaction.atomic():
        saved = _finish(pet, token, status=Status.DONE, model_version=version, classified_at=now,
                        error_code=Error.NONE, error_message="", attempts=0, **prediction)
        if saved:
            Classification.objects.update_or_create(
                image=pet, model_version=version, defaults={**prediction, "created_at": now}
            )
    return saved


def _json_scores(scores: dict) -> dict:
    """The verdict's scores as JSON that every database stores (PostgreSQL refuses NaN)."""
    return {
        key: (round(value, 6) if math.isfinite(value) else None) if isinstance(value, float) else value
        for key, value in scores.items()
    }


# --- Re-sending -----------------------------------------------------------------------------


def _stale_pending(now) -> Q:
    """Pending images whose last message is older than the re-send cutoff, which doubles
    with each re-send (a long backlog is not flooded with copies of its own messages).
    Needs the ``sent_at`` annotation of :func:`stale_images`."""
    after = timedelta(seconds=settings.PETSITE_REQUEUE_AFTER)
    stale = Q(enqueue_count__gte=RESEND_BACKOFF_STEPS + 1, sent_at__lt=now - after * 2**RESEND_BACKOFF_STEPS)
    for count in range(RESEND_BACKOFF_STEPS + 1):
        stale |= Q(enqueue_count=count, sent_at__lt=now - after * 2 ** max(count - 1, 0))
    return stale


def stale_images(now=None) -> QuerySet:
    """What waits too long: pending since the last send, or claimed by nobody alive."""
    now = now or timezone.now()
    return PetImage.objects.annotate(sent_at=Coalesce("enqueued_at", "uploaded_at")).filter(
        Q(status=Status.PENDING) & _stale_pending(now) | _dead_claim(PetImage.objects.all(), now)
    )
