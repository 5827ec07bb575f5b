"""Storing an upload: a clean copy of the image, its thumbnail and its row, all or nothing.

The stored file is re-encoded from the pixels :func:`~classifier.validators.inspect_image`
decoded, turned upright: no EXIF, XMP or GPS metadata, no comment and nothing appended
to the file reaches storage or the image view, and width and height are as displayed.
The ICC profile stays, so colours do not shift. JPEG stays JPEG, with the source's
quantisation tables and chroma subsampling, so the re-encoding loses next to nothing;
PNG, GIF and BMP become PNG (lossless), WebP stays WebP (lossless if it was). Phone
photos, HEIC/HEIF and AVIF, become JPEG (``formats.py`` says why): at quality
CONVERTED_JPEG_QUALITY, which no one tells from the source at a photo's size; one with
transparency is laid on white first, as it would show on the page.

Memory: the decoded image is handed over from ImageInfo, turned upright only when its
EXIF orientation says so (the one extra full-size copy, while the source is dropped),
encoded into a temporary file, then reduced in place to the thumbnail.

The same owner sending the same bytes again gets the image already stored, even when
both requests run at once (:func:`get_or_create_pet_image`).

Many files in one request (:func:`store_uploads`) are checked and stored one after the
other, each on its own: a bad file is refused with its reason and the others are kept,
and only one decoded image is alive at a time, so twenty photos cost the memory of one.
Across the requests one process serves at once (gunicorn's threads), decodes take turns
(:func:`decode_turn`): at most as many run at once as ``PETSITE_DECODE_MEMORY_MIB`` holds
at their worst; the others wait, they are not refused.

File names are the client's, kept for the owner to recognise (:func:`display_name`:
cleaned, and shortened to the column's 255 characters keeping the extension) and
shortened further where a page shows them (:func:`short_name`). Stored files get random
names.

Deleting (:func:`delete_pet_image`) removes the row, then every file of the image.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import models, transaction
from PIL import Image, JpegImagePlugin

from . import formats
from .models import PetImage
from .validators import ORDINARY_COST, ORIENTATIONS_SWAPPING_SIDES, ImageInfo, inspect_image

THUMBNAIL_SIZE = (320, 320)
THUMBNAIL_REDUCING_GAP = 2.0  # reduce by whole factors first, then resample at least 2x: fast and smooth
SPOOL_BYTES = 1024 * 1024  # a re-encoded original larger than this goes to a temporary file, not memory
WEBP_QUALITY = 90  # for lossy WebP sources: the original quality is not recorded in the file
CONVERTED_JPEG_QUALITY = 92  # for a JPEG made from another format (HEIC, AVIF): as a phone's own JPEGs
JPEG_MODES = ("L", "RGB", "CMYK")  # what a JPEG holds; anything else is made RGB (or laid on white) first

TOO_MANY_FILES = "too_many_files"  # the code of a file past PETSITE_MAX_FILES_PER_UPLOAD

TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def get_or_create_pet_image(owner, upload: File, info: ImageInfo) -> tuple[PetImage, bool]:
    """``(image, created)``: store a validated upload, or find it among the owner's images.

    The same bytes from the same owner are one image: look first (cheap), and only if
    they are new, store them (:func:`store_pet_image`, which looks again under a lock).
    """
    sha256 = upload_sha256(upload)
    existing = find_duplicate(owner, sha256)
    if existing is not None:
        info.image = None  # the decoded pixels are not needed: let them go now
        return existing, False
    return store_pet_image(owner, upload, info, sha256)


def store_pet_image(owner, upload: File, info: ImageInfo, sha256: str) -> tuple[PetImage, bool]:
    """Store the files, then create the row (pending): the caller sends a created one to
    the workers (``tasks.send_new_uploads``; this module sends nothing).

    In the transaction that creates the row, the owner's row is locked and the owner's
    images are searched for ``sha256`` again: a request running beside this one may have
    stored the same photo since the caller looked. Then the fresh files are deleted and
    that image is returned, ``created`` False. If anything fails after a file was
    written, the written files are removed: an upload is either wholly saved or not at all.
    """
    pet = PetImage(
        owner=owner,
        original_name=display_name(upload.name),
        sha256=sha256,
        width=info.width,
        height=info.height,
    )
    duplicate = None
    try:
        original, extension, thumbnail = encode_upload(upload, info)
        with original:
            pet.image.save(f"upload{extension}", File(original), save=False)
        pet.thumbnail.save("thumb.jpg", thumbnail, save=False)
        with transaction.atomic():
            # One upload at a time per owner from here to commit (SQLite serialises
            # writing transactions anyway; PostgreSQL needs the row lock).
            get_user_model()._default_manager.select_for_update().only("pk").get(pk=owner.pk)
            duplicate = find_duplicate(owner, sha256)
            if duplicate is None:
                pet.save()
    except BaseException:
        _delete_files(pet)
        raise
    if duplicate is not None:
        _delete_files(pet)
        return duplicate, False
    return pet, True


@dataclass
class UploadOutcome:
    """What became of one file of a request: stored (``image``), or refused (``error``)."""

    name: str  # the client's file name, as kept (display_name)
    image: PetImage | None = None
    created: bool = False  # False with an image: the owner had uploaded these bytes before
    error: ValidationError | None = None

    @property
    def saved(self) -> bool:
        return self.image is not None

    @property
    def reason(self) -> str:
        """Why the file was refused, in words for its owner ("" when it was stored)."""
        return " ".join(self.error.messages) if self.error is not None else ""

    @property
    def code(self) -> str | None:
        """The refusal's code for programs ("empty", "rate_limited", …); None when stored."""
        return self.error.error_list[0].code if self.error is not None and self.error.error_list else None


def store_uploads(owner, files: Iterable[File]) -> list[UploadOutcome]:
    """Check and store each of ``files`` for ``owner``: one outcome per file, in order.

    Each file goes through :func:`~classifier.validators.inspect_image` and
    :func:`get_or_create_pet_image` before the next one is read, so a refusal touches
    only its own file, and the memory of one decoded photo is let go (stored or refused)
    before the next is decoded, in its turn among the process's decodes
    (:func:`decode_turn`). Each file is stored in its own transaction: a file stored
    stays stored whatever happens to the ones after it.
    """
    outcomes = []
    for upload in files:
        name = display_name(upload.name)
        with decode_turn():
            try:
                info = inspect_image(upload)
            except ValidationError as error:
                outcomes.append(UploadOutcome(name, error=_detached(error)))
                continue
            pet, created = get_or_create_pet_image(owner, upload, info)  # takes the decoded image from info
        outcomes.append(UploadOutcome(name, image=pet, created=created))
    return outcomes


def split_at_file_limit(files: Sequence[File]) -> tuple[Sequence[File], Sequence[File]]:
    """``(taken, later)``: the first ``PETSITE_MAX_FILES_PER_UPLOAD`` of a request's files,
    and the rest. "20 at a time" is one rule for every way in: the page's script keeps 20
    photos on their way at once and sends the others as those finish; a request that
    carries more (the form without JavaScript, the API) has its first 20 stored and the
    others named as not sent (:func:`not_sent`), so a long request never stores some of
    what it was sent and loses the rest silently, nor refuses all for a few too many."""
    limit = settings.PETSITE_MAX_FILES_PER_UPLOAD
    return files[:limit], files[limit:]


def not_sent(files: Iterable[File]) -> list[UploadOutcome]:
    """The outcome of each file past the request's limit: not stored, with how to send it."""
    limit = settings.PETSITE_MAX_FILES_PER_UPLOAD
    error = ValidationError(
        f"Not sent: {limit} photos go at a time. Choose this one again to upload it.", code=TOO_MANY_FILES
    )
    return [UploadOutcome(display_name(file.name), error=error) for file in files]


MiB = 1024 * 1024
_turns_lock = threading.Lock()
_turns: dict[int, threading.BoundedSemaphore] = {}


def decode_slots() -> int:
    """How many uploads one process may decode at once: ``PETSITE_DECODE_MEMORY_MIB`` over
    the most one decode may cost (ORDINARY_COST bytes a pixel at the pixel limit; kinds
    that cost more per pixel are allowed fewer pixels), and at least one."""
    worst = settings.PETSITE_MAX_IMAGE_PIXELS * ORDINARY_COST
    return max(1, settings.PETSITE_DECODE_MEMORY_MIB * MiB // worst)


def decode_turn() -> threading.BoundedSemaphore:
    """The process's turns to decode an upload, :func:`decode_slots` of them (``with
    decode_turn(): ...``): an upload beyond them waits for one to end, however many
    threads serve requests."""
    slots = decode_slots()
    with _turns_lock:
        return _turns.setdefault(slots, threading.BoundedSemaphore(slots))


def _detached(error: ValidationError) -> ValidationError:
    """The same messages and codes without the traceback: its frames (and the exception
    it was raised from) would keep a half-decoded image alive while the next file is read."""
    return ValidationError([ValidationError(e.message, code=e.code, params=e.params) for e in error.error_list])


def upload_summary(outcomes: list[UploadOutcome]) -> str:
    """One sentence for the owner, such as "3 photos uploaded, 1 already in your gallery, 1 refused: x.txt (…)",
    and which files were not sent (past the request's limit) and how to send them."""
    new = sum(outcome.created for outcome in outcomes)
    again = sum(outcome.saved and not outcome.created for outcome in outcomes)
    later = [outcome for outcome in outcomes if outcome.code == TOO_MANY_FILES]
    refused = [outcome for outcome in outcomes if not outcome.saved and outcome.code != TOO_MANY_FILES]
    parts = []
    if new or not (again or refused or later):
        parts.append(f"{new} photo{'s' if new != 1 else ''} uploaded")
    if again:
        photos = "" if parts else f" photo{'s' if again != 1 else ''}"
        parts.append(f"{again}{photos} already in your gallery")
    if refused:
        # The reasons are sentences: their final stop goes, the summary's own ends the whole.
        reasons = "; ".join(f"{short_name(outcome.name)} ({outcome.reason.rstrip('.')})" for outcome in refused)
        parts.append(f"{len(refused)} refused: {reasons}")
    if later:
        names = ", ".join(short_name(outcome.name) for outcome in later)
        parts.append(f"{len(later)} not sent ({settings.PETSITE_MAX_FILES_PER_UPLOAD} go at a time): {names}")
    them = "them" if len(later) != 1 else "it"
    return ", ".join(parts) + "." + (f" Choose {them} again to upload {them}." if later else "")


def delete_pet_image(pet: PetImage) -> None:
    """Delete ``pet``: its row (with its prediction history), then all its files.

    The files go only once the deletion is committed: should the transaction roll
    back, the row still finds its files. Every file field of the model counts
    (original, thumbnail and any added later, such as a heatmap), so a new kind of
    file cannot be left behind in storage. A worker classifying the image meanwhile
    finds its claim gone and saves nothing (classification.py writes only through
    the claim).
    """
    files = _stored_files(pet)
    with transaction.atomic():
        pet.delete()
        transaction.on_commit(lambda: _delete_stored(files))


def _stored_files(pet: PetImage) -> list[tuple]:
    """``(storage, name)`` of every file of ``pet``: each file field of the model counts."""
    fields = (getattr(pet, f.name) for f in pet._meta.fields if isinstance(f, models.FileField))
    return [(field.storage, field.name) for field in fields if field.name]


def _delete_stored(files: list[tuple]) -> None:
    for storage, name in files:
        storage.delete(name)  # Django's storages do nothing for a name already gone


def find_duplicate(owner, sha256: str) -> PetImage | None:
    """The owner's earliest image with these bytes, if any."""
    return PetImage.objects.filter(owner=owner, sha256=sha256).order_by("pk").first()


def upload_sha256(upload: File) -> str:
    """SHA-256 of the uploaded bytes, read in chunks (no second copy of the file in memory)."""
    digest = hashlib.sha256()
    for chunk in upload.chunks():  # chunks() starts at the beginning
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


NAME_LENGTH = PetImage._meta.get_field("original_name").max_length
SHORT_NAME_LENGTH = 60  # characters of a file name that pages show
MAX_EXTENSION = 10  # a longer "extension" is part of the name


def display_name(name: str | None) -> str:
    """The client's file name as we keep it: printable, valid UTF-8, and shortened to fit
    the column (NAME_LENGTH) with its extension kept: "aaaa…aaa.jpg".

    Only shown to the owner; storage names are random (``models._random_name``)."""
    name = "".join(ch for ch in (name or "") if ch.isprintable())
    name = name.encode("utf-8", "replace").decode("utf-8").strip()  # lone surrogates become "?"
    return shorten(name, NAME_LENGTH) or "upload"


def short_name(name: str) -> str:
    """A file name as pages show it: at most SHORT_NAME_LENGTH characters, extension kept."""
    return shorten(name, SHORT_NAME_LENGTH)


def shorten(name: str, length: int) -> str:
    """``name`` cut in the middle to ``length`` characters, keeping its extension and end."""
    if len(name) <= length:
        return name
    stem, dot, extension = name.rpartition(".")
    ending = dot + extension if stem and len(extension) <= MAX_EXTENSION else ""
    stem = name[: len(name) - len(ending)]
    keep = length - len(ending) - 1  # one for the ellipsis
    tail = min(keep // 3, 8)
    return stem[: keep - tail] + "…" + (stem[-tail:] if tail else "") + ending


def encode_upload(upload: File, info: ImageInfo) -> tuple[IO[bytes], str, ContentFile]:
    """``(original, extension, thumbnail)``: the image to store, upright and without metadata,
    in a temporary file, and its thumbnail. Takes the decoded image from ``info``."""
    image = info.take_image()
    stored_format = formats.accepted(info.format).stored_as
    options = _save_options(image, stored_format, info.orientation, upload)
    transpose = TRANSPOSE_FOR_ORIENTATION.get(info.orientation)
    if transpose is not None:
        image = image.transpose(transpose)  # the one full-size copy; the source is dropped here
    elif info.format in formats.WEBP.pillow:
        image = image.copy()  # drops the source and with it libwebp's two full-size decoder canvases
    image = _eight_bit(image)
    if stored_format == "JPEG":
        image = _jpeg_mode(image)
    image.info = {}  # nothing of the source may ride along: EXIF, XMP, comments, text chunks

    original = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    try:
        image.save(original, stored_format, **options)
        original.seek(0)
        thumbnail = make_thumbnail(image)
    except BaseException:
        original.close()
        raise
    return original, formats.stored_extension(stored_format), thumbnail


def make_thumbnail(image: Image.Image) -> ContentFile:
    """A JPEG no larger than THUMBNAIL_SIZE of an upright image.

    ``image`` is reduced in place, so the caller gives it up; only the small result is
    converted to RGB. Palette and 1-bit images are made colour (or grey) first: their
    pixels are indexes, which cannot be averaged.
    """
    if image.mode in ("P", "PA"):
        image = image.convert("RGB")
    elif image.mode == "1":
        image = image.convert("L")
    image.thumbnail(THUMBNAIL_SIZE, reducing_gap=THUMBNAIL_REDUCING_GAP)
    if image.mode != "RGB":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return ContentFile(buffer.getvalue())


def _save_options(image: Image.Image, stored_format: str, orientation: int, upload: File) -> dict:
    """Encoder options for the stored copy: the ICC profile and what keeps the quality.

    Read from the decoded source, before it is turned (a turned copy is a plain image
    that no longer knows its JPEG tables)."""
    options: dict = {}
    if icc_profile := image.info.get("icc_profile"):
        options["icc_profile"] = icc_profile
    if stored_format == "JPEG":
        qtables = getattr(image, "quantization", None)
        if qtables:
            options["qtables"] = qtables
        else:
            options["quality"] = CONVERTED_JPEG_QUALITY
        subsampling = JpegImagePlugin.get_sampling(image)
        if subsampling == 1 and orientation in ORIENTATIONS_SWAPPING_SIDES:
            subsampling = 0  # 4:2:2 turned by 90 degrees has no JPEG encoding in Pillow: keep full chroma
        if subsampling != -1:
            options["subsampling"] = subsampling
    elif stored_format == "PNG":
        transparency = image.info.get("transparency")
        if transparency is not None and not image.mode.startswith("I;16"):
            options["transparency"] = transparency
    elif stored_format == "WEBP":
        if _webp_is_lossless(upload):
            options["lossless"] = True
        else:
            options["quality"] = WEBP_QUALITY
    return options


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale scaled to 8 bits. Pillow converts such images to RGB by clipping
    (most of a 16-bit picture turns white), for the thumbnail and the model alike."""
    if not image.mode.startswith("I;16"):
        return image
    return image.point(lambda value: value / 256).convert("L")


def _jpeg_mode(image: Image.Image) -> Image.Image:
    """``image`` in a mode JPEG can hold: transparent parts laid on white (as the page shows
    them), other modes made RGB. JPEG sources are in such a mode already: unchanged."""
    if image.mode in JPEG_MODES:
        return image
    if image.has_transparency_data:
        if image.mode != "RGBA":
            image = image.convert("RGBA")
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image, (0, 0), image)  # the alpha band is the mask
        return flat
    return image.convert("RGB")


def _webp_is_lossless(upload: File) -> bool:
    """Whether a WebP file's first image is lossless (a "VP8L" chunk rather than "VP8 ").

    Re-encoding lossy data losslessly would only make it several times larger."""
    try:
        upload.seek(12)  # "RIFF", size, "WEBP"
        while len(header := upload.read(8)) == 8:
            fourcc, size = header[:4], int.from_bytes(header[4:], "little")
            if fourcc in (b"VP8L", b"VP8 "):
                return fourcc == b"VP8L"
            if fourcc == b"ANMF":
                upload.seek(16, os.SEEK_CUR)  # an animation frame: its image chunk follows a 16-byte header
                continue
            upload.seek(size + size % 2, os.SEEK_CUR)
        return False
    finally:
        upload.seek(0)


def _delete_files(pet: PetImage) -> None:
    _delete_stored(_stored_files(pet))
