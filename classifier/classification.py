"""Classifying images with the workers: enqueue, claim, classify, re-send what is stale.

The database row is the source of truth. A queue message is only a hint to look at
a row: losing one loses nothing, because ``requeue_stale`` finds rows that have
waited too long and enqueues them again.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from ml import services as ml_services
from ml.checkpoints import CheckpointError
from ml.models import ModelVersion

from .models import Classification, PetImage

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # a worker that died this often on one image will die again: give up
Status = PetImage.Status


def enqueue(pk: int) -> None:
    """Ask a worker to classify image ``pk`` once the current transaction commits.

    A broker that is down is logged, not raised: the row stays pending and
    ``requeue_stale`` sends it again later.
    """
    from .tasks import classify_image

    def send() -> None:
        try:
            classify_image.delay(pk)
        except Exception:  # kombu raises several types when the broker is unreachable
            log.exception("Could not enqueue image %s; it stays pending and will be re-sent", pk)

    transaction.on_commit(send)


def classify(pk: int) -> None:
    """Classify image ``pk`` with the active model (the task behind every upload)."""
    classify_images([pk])


def classify_images(pks: Sequence[int], version_id: int | None = None) -> None:
    """Classify images with model version ``version_id`` (default: the active one), batched.

    Idempotent: an image already classified by that version is left alone, and a
    finished image is only classified again when a version is named (reclassify).
    Without an active model images stay pending with the reason recorded, and are
    classified when a model is activated. An unreadable image fails with the reason.
    """
    version = ModelVersion.objects.filter(pk=version_id).first() if version_id else ml_services.active_version()
    if version is None:
        if version_id is None:
            PetImage.objects.filter(pk__in=pks, status=Status.PENDING).update(error_message=ml_services.NO_ACTIVE_MODEL)
        return
    todo = [
        pet
        for pet in PetImage.objects.filter(pk__in=pks)
        if _should_classify(pet, version, reclassify=bool(version_id))
    ]
    if not todo:
        return
    todo_pks = [pet.pk for pet in todo]
    PetImage.objects.filter(pk__in=todo_pks).update(attempts=F("attempts") + 1)
    PetImage.objects.filter(pk__in=todo_pks, status=Status.PENDING).update(status=Status.PROCESSING, error_message="")
    try:
        predictor = ml_services.predictor_for(version)
    except (CheckpointError, OSError) as exc:
        log.exception("Model %s cannot be loaded", version.name)
        PetImage.objects.filter(pk__in=todo_pks, status=Status.PROCESSING).update(
            status=Status.PENDING, error_message=f"The model {version.name} cannot be loaded: {exc}"
        )
        return

    readable, tensors = [], []
    for pet in todo:
        try:
            with pet.image.open("rb") as f:
                tensors.append(predictor.preprocess(f))
            readable.append(pet)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
            PetImage.objects.filter(pk=pet.pk).update(
                status=Status.FAILED, error_message=f"The image could not be read: {exc}", classified_at=timezone.now()
            )
    if not readable:
        return
    now = timezone.now()
    with transaction.atomic():
        for pet, predictions in zip(
            readable, predictor.predict_preprocessed(tensors, k=settings.PETSITE_TOP_K), strict=True
        ):
            top_k = [{"breed": p.label, "probability": round(p.probability, 6)} for p in predictions]
            best = predictions[0]
            Classification.objects.create(
                image=pet,
                model_version=version,
                predicted_breed=best.label,
                confidence=best.probability,
                top_k=top_k,
                created_at=now,
            )
            PetImage.objects.filter(pk=pet.pk).update(
                status=Status.DONE,
                predicted_breed=best.label,
                confidence=best.probability,
                top_k=top_k,
                model_version=version,
                classified_at=now,
                error_message="",
            )


def _should_classify(pet: PetImage, version: ModelVersion, reclassify: bool) -> bool:
    """Decide for one image; gives up (FAILED) on one that has killed workers too often."""
    if pet.status == Status.DONE and pet.model_version_id == version.pk:
        return False
    if pet.is_finished and not reclassify:
        return False
    if pet.status == Status.PROCESSING and pet.attempts >= MAX_ATTEMPTS:
        PetImage.objects.filter(pk=pet.pk).update(
            status=Status.FAILED, error_message=f"Classification did not finish after {pet.attempts} attempts."
        )
        return False
    return True


def reclassify(images: QuerySet, version: ModelVersion | None = None, chunk_size: int = 32) -> list[list[int]]:
    """Send ``images`` to the workers in chunks, to be classified by ``version`` (default: active).

    The previous predictions stay in the Classification history. Returns the chunks sent.
    """
    from .tasks import classify_batch

    version = version or ml_services.require_active_version()
    pks = list(images.order_by("pk").values_list("pk", flat=True))
    chunks = [pks[i : i + chunk_size] for i in range(0, len(pks), chunk_size)]
    for chunk in chunks:
        transaction.on_commit(lambda chunk=chunk: classify_batch.delay(chunk, version.pk))
    return chunks


def requeue_stale(older_than: timedelta = timedelta(minutes=5)) -> int:
    """Enqueue again every image pending or stuck in processing for longer than ``older_than``.

    Covers a lost message, a worker that died mid-task and a broker restart.
    """
    cutoff = timezone.now() - older_than
    pks = list(
        PetImage.objects.filter(status__in=[Status.PENDING, Status.PROCESSING], uploaded_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    for pk in pks:
        enqueue(pk)
    return len(pks)


def on_model_activated(sender, version, **kwargs) -> None:
    """A new model can classify everything that was waiting for one."""
    requeue_stale(older_than=timedelta(0))
