"""What happens to an upload, as plain functions; views and tasks only call these.

The database row is the source of truth. A queue message is only a hint to look at
a row: losing one loses nothing, because ``requeue_stale`` finds rows that have
waited too long and enqueues them again.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Sequence

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from ml import services as ml_services
from ml.breeds import BREED_KEYS
from ml.checkpoints import CheckpointError
from ml.data import DATASET_DIR, open_image, write_annotations
from ml.models import ModelVersion

from .models import LABEL_CHOICES, NOT_A_PET, Classification, PetImage, label_name
from .validators import ImageInfo

log = logging.getLogger(__name__)

LABEL_KEYS = {key for key, _ in LABEL_CHOICES}
THUMBNAIL_SIZE = (320, 320)
MAX_ATTEMPTS = 3  # a worker that died this often on one image will die again: give up
Status = PetImage.Status


def make_thumbnail(image: Image.Image) -> ContentFile:
    """A JPEG no larger than THUMBNAIL_SIZE of an upright RGB image (as inspect_image gives)."""
    thumb = image.copy()
    thumb.thumbnail(THUMBNAIL_SIZE)
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=85)
    return ContentFile(buffer.getvalue())


def create_pet_image(owner, upload: UploadedFile, info: ImageInfo) -> PetImage:
    """Store a validated upload and its thumbnail, create its row, enqueue it after commit.

    If anything fails after a file was written, the written files are removed: an
    upload is either wholly saved or not at all.
    """
    upload.seek(0)
    content = upload.read()
    pet = PetImage(
        owner=owner,
        original_name=(upload.name or "upload")[:255],
        sha256=hashlib.sha256(content).hexdigest(),
        width=info.width,
        height=info.height,
    )
    try:
        pet.image.save(f"upload{info.extension}", ContentFile(content), save=False)
        pet.thumbnail.save("thumb.jpg", make_thumbnail(info.image), save=False)
        with transaction.atomic():
            pet.save()
            enqueue(pet.pk)
    except BaseException:
        for field in (pet.image, pet.thumbnail):
            if field.name:
                field.storage.delete(field.name)
        raise
    return pet


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
    todo = [pet for pet in PetImage.objects.filter(pk__in=pks) if _should_classify(pet, version, reclassify=bool(version_id))]
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
        for pet, predictions in zip(readable, predictor.predict_preprocessed(tensors, k=settings.PETSITE_TOP_K)):
            top_k = [{"breed": p.label, "probability": round(p.probability, 6)} for p in predictions]
            best = predictions[0]
            Classification.objects.create(
                image=pet, model_version=version, predicted_breed=best.label,
                confidence=best.probability, top_k=top_k, created_at=now,
            )
            PetImage.objects.filter(pk=pet.pk).update(
                status=Status.DONE, predicted_breed=best.label, confidence=best.probability, top_k=top_k,
                model_version=version, classified_at=now, error_message="",
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
    chunks = [pks[i:i + chunk_size] for i in range(0, len(pks), chunk_size)]
    for chunk in chunks:
        transaction.on_commit(lambda chunk=chunk: classify_batch.delay(chunk, version.pk))
    return chunks


def requeue_stale(older_than: timedelta = timedelta(minutes=5)) -> int:
    """Enqueue again every image pending or stuck in processing for longer than ``older_than``.

    Covers a lost message, a worker that died mid-task and a broker restart.
    """
    cutoff = timezone.now() - older_than
    pks = list(
        PetImage.objects.filter(status__in=[Status.PENDING, Status.PROCESSING], uploaded_at__lt=cutoff)
        .values_list("pk", flat=True)
    )
    for pk in pks:
        enqueue(pk)
    return len(pks)


def on_model_activated(sender, version, **kwargs) -> None:
    """A new model can classify everything that was waiting for one."""
    requeue_stale(older_than=timedelta(0))


# --- Feedback and review ------------------------------------------------------------------


def record_feedback(pet: PetImage, *, correct: bool, label: str = "") -> None:
    """The owner's answer. "Correct" stores the predicted breed as their label, so the
    answer keeps its meaning if a later model predicts something else."""
    if correct and not pet.predicted_breed:
        raise ValueError("There is no prediction to confirm yet.")
    if not correct and label not in LABEL_KEYS:
        raise ValueError(f"Unknown label {label!r}.")
    pet.is_correct = correct
    pet.true_breed = pet.predicted_breed if correct else label
    pet.feedback_at = timezone.now()
    pet.save(update_fields=["is_correct", "true_breed", "feedback_at"])


def _mark_reviewed(images: QuerySet, reviewer, label) -> int:
    return images.update(reviewed_label=label, reviewed_by=reviewer, reviewed_at=timezone.now())


def confirm_predictions(images: QuerySet, reviewer) -> int:
    """The reviewer agrees with the model. Images without a prediction are skipped."""
    return _mark_reviewed(images.exclude(predicted_breed=""), reviewer, F("predicted_breed"))


def accept_owner_answers(images: QuerySet, reviewer) -> int:
    """The reviewer agrees with the owner. Images without an owner's answer are skipped."""
    return _mark_reviewed(images.exclude(true_breed=""), reviewer, F("true_breed"))


def set_label(images: QuerySet, label: str, reviewer) -> int:
    """The reviewer's own label, a breed or NOT_A_PET, for every image given."""
    if label not in LABEL_KEYS:
        raise ValueError(f"Unknown label {label!r}.")
    return _mark_reviewed(images, reviewer, label)


def review_summary() -> dict:
    """What the review dashboard shows: the queue, each model version's accuracy measured
    on reviewed images, and the breed pairs the models confuse most in reviewed data."""
    breed_labelled = PetImage.objects.labelled().exclude(reviewed_label=NOT_A_PET)
    queue = PetImage.objects.needing_review()
    per_version = (
        Classification.objects.filter(image__in=breed_labelled)
        .values("model_version__name")
        .annotate(
            total=Count("pk"),
            correct=Count("pk", filter=Q(predicted_breed=F("image__reviewed_label"))),
        )
        .order_by("model_version__name")
    )
    confused = (
        breed_labelled.exclude(predicted_breed="")
        .exclude(predicted_breed=F("reviewed_label"))
        .values("reviewed_label", "predicted_breed")
        .annotate(count=Count("pk"))
        .order_by("-count", "reviewed_label")[:15]
    )
    return {
        "waiting": queue.count(),
        "waiting_owner_said_wrong": queue.filter(is_correct=False).count(),
        "reviewed": PetImage.objects.labelled().count(),
        "not_a_pet": PetImage.objects.filter(reviewed_label=NOT_A_PET).count(),
        "versions": [
            {**row, "name": row["model_version__name"] or "(deleted model)", "accuracy": row["correct"] / row["total"]}
            for row in per_version
        ],
        "confused": [
            {"actual": label_name(row["reviewed_label"]), "predicted": label_name(row["predicted_breed"]), "count": row["count"]}
            for row in confused
        ],
        "threshold": settings.PETSITE_REVIEW_CONFIDENCE,
    }


# --- Back to training -----------------------------------------------------------------------


def export_reviewed(dest: str | os.PathLike, since=None) -> Counter:
    """Write reviewed images in the Oxford-IIIT Pet layout that ``train --extra-data`` reads.

    Only staff-reviewed labels count as ground truth, and "not a cat or dog" is left out.
    Images are named ``<breed>_<id>.jpg`` (the id keeps names stable across exports),
    stored upright as RGB JPEG like the dataset's own files. Returns counts per breed.
    """
    images = PetImage.objects.labelled().exclude(reviewed_label=NOT_A_PET).order_by("pk")
    if since is not None:
        images = images.filter(reviewed_at__gte=since)
    images_dir = Path(dest) / DATASET_DIR / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rows, counts = [], Counter()
    for pet in images.iterator():
        name = f"{pet.reviewed_label}_{pet.pk}"
        try:
            with pet.image.open("rb") as f:
                open_image(f).save(images_dir / f"{name}.jpg", "JPEG", quality=95)
        except (OSError, UnidentifiedImageError) as exc:
            log.warning("Skipping image %s in the export: %s", pet.pk, exc)
            continue
        rows.append((name, BREED_KEYS.index(pet.reviewed_label)))
        counts[pet.reviewed_label] += 1
    write_annotations(dest, trainval=rows)
    return counts
