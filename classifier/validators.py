"""Checks an upload must pass before anything is stored.

Django's ImageField only verifies the header; a truncated JPEG passes that and fails
later in the worker. Here the whole image is decoded once, with size and pixel
limits checked first, so a bad file becomes a form error and never a 500.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}


@dataclass
class ImageInfo:
    format: str
    extension: str
    width: int
    height: int
    image: Image.Image  # decoded, upright, RGB: for the thumbnail


def inspect_image(upload: UploadedFile) -> ImageInfo:
    """Decode ``upload`` fully or raise ValidationError with a message for the user."""
    if upload.size == 0:
        raise ValidationError("The file is empty.", code="empty")
    if upload.size > settings.PETSITE_MAX_UPLOAD_BYTES:
        raise ValidationError(
            f"The file is {filesizeformat(upload.size)}; the limit is "
            f"{filesizeformat(settings.PETSITE_MAX_UPLOAD_BYTES)}.",
            code="too_large",
        )
    upload.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(upload)
            fmt = image.format
            if fmt not in ALLOWED_FORMATS:
                raise ValidationError(
                    f"{fmt} images are not accepted; upload a JPEG, PNG, WebP, GIF or BMP photo.",
                    code="format",
                )
            width, height = image.size
            if width * height > settings.PETSITE_MAX_IMAGE_PIXELS:
                raise ValidationError(
                    f"The image is {width}x{height} pixels; the limit is "
                    f"{settings.PETSITE_MAX_IMAGE_PIXELS:,} pixels.",
                    code="too_many_pixels",
                )
            image.load()
            upright = ImageOps.exif_transpose(image).convert("RGB")  # what the thumbnail and model see
    except UnidentifiedImageError:
        raise ValidationError(
            "This file is not an image we can read; upload a JPEG, PNG, WebP, GIF or BMP photo.",
            code="not_an_image",
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValidationError("The image has too many pixels.", code="too_many_pixels") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValidationError(
            f"The image is damaged or incomplete ({exc}). Try exporting it again.", code="corrupt"
        ) from None
    finally:
        upload.seek(0)
    return ImageInfo(fmt, ALLOWED_FORMATS[fmt], *upright.size, upright)  # as displayed
