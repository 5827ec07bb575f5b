"""Checks an upload must pass before anything is stored.

Django's ImageField only verifies the header; a truncated JPEG passes that and fails
later in the worker. Here the header comes first: size in bytes, format and pixels are
checked before anything large is allocated, then the whole image is decoded once, so a
bad file becomes a form error and never a 500. The decoded image travels on to storage
(``uploads.py``) in :class:`ImageInfo`; nothing decodes it a second time.

Memory is bounded by pixels, not bytes: a 125 KiB PNG can hold 40 million pixels.
Pillow keeps most pixels in 4 bytes, and storing an image may need a second full-size
copy (turning it upright, or premultiplying alpha for the thumbnail), so an ordinary
image costs up to 8 bytes per pixel; ``PETSITE_MAX_IMAGE_PIXELS`` is chosen from that
(measured by ``bench/upload_memory.py``). A few kinds cost more per pixel while they
decode, and are allowed proportionally fewer pixels (see :func:`decode_cost`).
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.template.defaultfilters import filesizeformat
from PIL import ExifTags, Image, UnidentifiedImageError

from . import formats

log = logging.getLogger(__name__)

ORDINARY_COST = 8  # bytes per pixel: Pillow's 4-byte pixel, twice
WEBP_COST = 16  # libwebp's decoder keeps two canvases and hands over a third copy
# AVIF, by mode: libavif's decoded frame and Pillow's copy of its pixels beside the image while it loads.
AVIF_COSTS = {"RGB": 10, "RGBA": 12}
MAX_ASPECT_RATIO = 20  # longer side / shorter side: a photo of a pet is never a thin strip
# The worker resizes the shorter side to ~256 pixels: a 1x10000 strip would become
# 256x2,560,000 pixels (2 GB) there, so such strips are refused here.

ORIENTATIONS_SWAPPING_SIDES = {5, 6, 7, 8}  # EXIF orientations that turn the image by 90 degrees


@dataclass
class ImageInfo:
    """What :func:`inspect_image` learned, with the decoded image for storage."""

    format: str  # as Pillow names it: "JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "HEIF" or "AVIF"
    width: int  # as displayed (EXIF orientation applied)
    height: int
    image: Image.Image | None  # decoded, full size, as stored in the file (not yet upright)
    orientation: int = 1  # EXIF orientation: 1 is upright as stored, 2-8 need turning

    def take_image(self) -> Image.Image:
        """Hand the decoded image over, once: the caller then holds the only reference, so
        a full-size image dies as soon as the caller replaces it (by its upright copy, or
        by its thumbnail), and no forgotten reference keeps a second one alive."""
        image, self.image = self.image, None
        if image is None:
            raise RuntimeError("The decoded image was already taken from this ImageInfo.")
        return image


def inspect_image(upload: File) -> ImageInfo:
    """Decode ``upload`` fully, once, or raise ValidationError with a message for the user."""
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
            warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data" and such: nothing to act on
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(upload)  # reads the header only
            _check_header(image, upload)
            image.load()  # the whole image: a truncated or damaged file fails here
            _release_decoder(image)
            orientation = _orientation(image)
    except ValidationError:
        raise
    except UnidentifiedImageError:
        if _starts_like_an_image(upload):
            raise _damaged(upload, "its header is incomplete or unreadable") from None
        raise ValidationError(
            f"This file is not an image we can read; {formats.how_to_upload()}.", code="not_an_image"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(None, settings.PETSITE_MAX_IMAGE_PIXELS, "photos") from None
    except MemoryError:
        raise  # the server's problem, not the file's: let it be a 500 that someone sees
    except Exception as exc:  # any failure of the decoder means a broken file
        raise _damaged(upload, f"{type(exc).__name__}: {exc}") from None
    finally:
        upload.seek(0)
    width, height = image.size
    if orientation in ORIENTATIONS_SWAPPING_SIDES:
        width, height = height, width
    return ImageInfo(image.format, width, height, image, orientation)


def _check_header(image: Image.Image, upload: File) -> None:
    """Format, pixels and shape, from the header alone: refused before anything is decoded."""
    if formats.accepted(image.format) is None:
        raise ValidationError(f"{image.format} images are not accepted; {formats.how_to_upload()}.", code="format")
    width, height = image.size
    limit = pixel_limit(image, upload)
    if width * height > limit:
        if limit >= settings.PETSITE_MAX_IMAGE_PIXELS:
            kind = "photos"
        elif image.format in formats.JPEG.pillow:
            kind = "progressive JPEG photos in full colour resolution"
        else:
            kind = f"{formats.accepted(image.format).name} images"  # WebP, AVIF: costlier to decode
        raise _too_many_pixels(image.size, limit, kind)
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ValidationError(
            f"The image is {width}x{height} pixels: too long and narrow to be a photo of a pet. "
            "Crop it and try again.",
            code="aspect_ratio",
        )


def _damaged(upload: File, detail: str) -> ValidationError:
    # Pillow's own words ("broken data stream", "image file is truncated") help whoever
    # reads the log, not the person uploading.
    log.info("Refused a damaged image %r: %s", getattr(upload, "name", ""), detail)
    return ValidationError(
        "The image is damaged or incomplete, so we cannot read it. Try exporting or saving it again.",
        code="corrupt",
    )


def _starts_like_an_image(upload: File) -> bool:
    """Whether the file begins as an accepted format does (``formats.Format.signatures``)."""
    upload.seek(0)
    return formats.starts_like_an_accepted_image(upload.read(12))


def _too_many_pixels(size: tuple[int, int] | None, limit: int, kind: str) -> ValidationError:
    what = f"The image is {size[0]}x{size[1]} pixels" if size else "The image has too many pixels"
    return ValidationError(
        f"{what}; {kind} can have at most {limit:,} pixels. Make it smaller and try again.",
        code="too_many_pixels",
    )


def pixel_limit(image: Image.Image, upload: File) -> int:
    """The most pixels accepted for an image like ``image`` (opened, not yet decoded).

    ``PETSITE_MAX_IMAGE_PIXELS`` for an ordinary image; proportionally fewer for kinds
    whose decoding costs more than ORDINARY_COST bytes per pixel, so that every image
    accepted costs at most about as much memory as the largest ordinary one.
    """
    return settings.PETSITE_MAX_IMAGE_PIXELS * ORDINARY_COST // decode_cost(image, upload)


def decode_cost(image: Image.Image, upload: File) -> int:
    """Peak bytes per pixel of decoding and storing ``image`` (measured: bench/upload_memory.py).

    - WebP: Pillow's libwebp decoder keeps two full canvases and returns a third copy
      before the pixels land in the image: 16.
    - AVIF: while it loads, libavif's decoded frame (1.5 bytes a pixel, 2.5 with alpha),
      Pillow's copy of its pixels (3, or 4 with alpha) and the image (4) are alive at once:
      8.8 and 11.0 measured, 10 for RGB and 12 for RGBA. (HEIC stays within 8: libheif's
      YCbCr and RGB are alive together, then its RGB and the image.)
    - A progressive (or otherwise multi-scan) JPEG: libjpeg keeps every DCT coefficient,
      2 bytes per sample, beside the 4-byte pixels while it decodes: 10 for full-colour
      resolution (4:4:4), 12 for CMYK. Chroma-subsampled ones stay within 8.
    - Anything else: at most two 4-byte copies, 8.
    """
    if image.format in formats.WEBP.pillow:
        return WEBP_COST
    if image.format == "AVIF":
        return AVIF_COSTS.get(image.mode, max(AVIF_COSTS.values()))
    if image.format in formats.JPEG.pillow and (image.info.get("progressive") or _jpeg_scan_count(upload) > 1):
        layers = getattr(image, "layer", None) or []
        if layers:
            h_max = max(h for _, h, _, _ in layers) or 1
            v_max = max(v for _, _, v, _ in layers) or 1
            samples_per_pixel = sum(h * v for _, h, v, _ in layers) / (h_max * v_max)
            return max(ORDINARY_COST, round(4 + 2 * samples_per_pixel))
    return ORDINARY_COST


def _jpeg_scan_count(upload: File) -> int:
    """How many start-of-scan markers the file holds (more than one: libjpeg buffers the
    whole image's coefficients). Markers inside an embedded EXIF thumbnail count too,
    which only ever overestimates the cost."""
    position = upload.tell()
    upload.seek(0)
    count, tail = 0, b""
    for chunk in upload.chunks():
        block = tail + chunk
        count += block.count(b"\xff\xda")
        tail = block[-1:]
    upload.seek(position)
    return count


def _release_decoder(image: Image.Image) -> None:
    """Let go of what a decoder keeps after the pixels are loaded. Pillow's AVIF plugin
    keeps its libavif decoder, with the decoded frame (1.5 bytes a pixel), for seeking to
    other frames of an animation; only the first is used here, and the stored copy (a
    second full-size image when it is turned) must not be made beside it."""
    if getattr(image, "_decoder", None) is not None:
        image._decoder = None


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8) as Pillow's ``ImageOps.exif_transpose`` reads it; 1 when
    there is none, or when the EXIF block is unreadable (the metadata is dropped anyway)."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception as exc:  # junk metadata does not make the picture unusable
        log.info("Ignored unreadable EXIF data: %s: %s", type(exc).__name__, exc)
        return 1
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1
