"""What happens to an upload, as plain functions; views and tasks only call these.

The database row is the source of truth. A queue message is only a hint to look at
a row: losing one loses nothing, because ``requeue_stale`` finds rows that have
waited too long and enqueues them again.
"""
from __future__ import annotations

import hashlib
import io
import logging
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone
from PIL import Image, ImageOps, UnidentifiedImageError

from ml import services as ml_services
from ml.checkpoints import CheckpointError

from .models import PetImage
from .validators import ImageInfo

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = (320, 320)
MAX_ATTEMPTS = 3  # a worker that died this often on one image will die again: give up
Status = PetImage.Status


def make_thumbnail(image: Image.Image) -> ContentFile:
    """A JPEG no larger than THUMBNAIL_SIZE, upright as the EXIF orientation says."""
    thumb = ImageOps.exif_transpose(image).convert("RGB")
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
    """Classify image ``pk`` with the active model. Idempotent: a finished image is left alone.

    Without an active model the image stays pending with the reason recorded, and is
    classified when a model is activated. An unreadable image fails with the reason.
    """
    pet = PetImage.objects.filter(pk=pk).first()
    if pet is None or pet.is_finished:
        return
    if pet.status == Status.PROCESSING and pet.attempts >= MAX_ATTEMPTS:
        PetImage.objects.filter(pk=pk).update(
            status=Status.FAILED, error_message=f"Classification did not finish after {pet.attempts} attempts."
        )
        return
    version = ml_services.active_version()
    if version is None:
        PetImage.objects.filter(pk=pk, status=Status.PENDING).update(error_message=ml_services.NO_ACTIVE_MODEL)
        return
    PetImage.objects.filter(pk=pk).update(status=Status.PROCESSING, attempts=pet.attempts + 1, error_message="")
    try:
        predictor = ml_services.predictor_for(version)
    except (CheckpointError, OSError) as exc:
        log.exception("Model %s cannot be loaded", version.name)
        PetImage.objects.filter(pk=pk).update(
            status=Status.PENDING, error_message=f"The active model {version.name} cannot be loaded: {exc}"
        )
        return
    try:
        with pet.image.open("rb") as f:
            predictions = predictor.predict(f, k=settings.PETSITE_TOP_K)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
        PetImage.objects.filter(pk=pk).update(
            status=Status.FAILED, error_message=f"The image could not be read: {exc}", classified_at=timezone.now()
        )
        return
    PetImage.objects.filter(pk=pk).update(
        status=Status.DONE,
        predicted_breed=predictions[0].label,
        confidence=predictions[0].probability,
        top_k=[{"breed": p.label, "probability": round(p.probability, 6)} for p in predictions],
        model_version=version,
        classified_at=timezone.now(),
        error_message="",
    )


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
