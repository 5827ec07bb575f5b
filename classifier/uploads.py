"""Storing an upload: the validated file, its thumbnail and its row, all or nothing."""
from __future__ import annotations

import hashlib
import io

from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from PIL import Image

from .classification import enqueue
from .models import PetImage
from .validators import ImageInfo

THUMBNAIL_SIZE = (320, 320)


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
