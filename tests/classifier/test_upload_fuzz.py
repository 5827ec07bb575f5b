"""Bounded fuzzing of uploads: mutated JPEG, PNG, GIF, WebP, HEIC and AVIF bytes (bit flips,
truncations, inserted bytes and well-formed chunks with odd contents).

Every input is either accepted (it can be stored: a row and both files) or refused
with one of our plain-words messages; never another exception, never an orphan file.
2,800 inputs per run in all (2,400 through ``inspect_image`` and the encoder, 400
through the upload view), derandomised so that CI tests the same inputs every time;
about 20 s on a 2-core machine.
"""
from __future__ import annotations

import io
import struct
import zlib

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from PIL import Image

from classifier import uploads
from classifier.models import PetImage
from classifier.validators import inspect_image
from tests.helpers import encoded, stored_files, upload

INSPECT_EXAMPLES = 2400
VIEW_EXAMPLES = 400
FUZZ = hypothesis_settings(
    derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

MESSAGES = {  # code: words every message with that code starts with
    "empty": "The file is empty.",
    "too_large": "The file is ",
    "not_an_image": "This file is not an image we can read",
    "format": "",  # "<FORMAT> images are not accepted; ..."
    "too_many_pixels": "The image ",
    "aspect_ratio": "The image is ",
    "corrupt": "The image is damaged or incomplete, so we cannot read it.",
}
PILLOW_WORDS = ("cannot identify", "truncated", "broken", "decoder", "not processed", "PIL", "Errno", "Traceback")


def _seed(fmt: str, mode: str = "RGB", **options) -> bytes:
    image = Image.new("RGB", (48, 36), (30, 120, 200))
    image.paste((220, 200, 40), (8, 6, 30, 24))
    for x in range(0, 48, 6):
        image.putpixel((x, x * 36 // 48), (255, 255, 255))
    return encoded(image.convert(mode), fmt, **options)


def _exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _seed("JPEG", exif=exif)


SEEDS = {
    "jpeg": _seed("JPEG", quality=85),
    "progressive jpeg": _seed("JPEG", progressive=True),
    "rotated jpeg": _exif_jpeg(),
    "png": _seed("PNG"),
    "rgba png": _seed("PNG", mode="RGBA"),
    "palette png": _seed("PNG", mode="P"),
    "gif": _seed("GIF"),
    "webp": _seed("WEBP", quality=80),
    "heic": _seed("HEIF", quality=60),  # phone photos: libheif (pillow-heif) and libavif (Pillow)
    "avif": _seed("AVIF", quality=60, speed=10),
}


def _chunk(kind: str, tag: bytes, payload: bytes) -> bytes:
    """A well-formed container chunk with arbitrary contents, in the seed's own syntax."""
    if "png" in kind:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))
    if "jpeg" in kind:
        marker = 0xE0 + tag[0] % 16 if tag[0] % 3 else 0xFE  # an APPn segment or a comment
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
    if kind == "gif":
        blocks = b"".join(bytes([len(payload[i:i + 255])]) + payload[i:i + 255] for i in range(0, len(payload), 255))
        return b"\x21" + tag[:1] + blocks + b"\x00"  # an extension block
    return tag + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) % 2)  # a RIFF chunk


SIGNATURE_BYTES = 12  # RIFF....WEBP; JPEG, PNG and GIF need fewer
PNG_TAGS = st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP", b"IDAT", b"PLTE", b"tRNS", b"acTL", b"fcTL",
                            b"gAMA", b"pHYs", b"IHDR", b"IEND", b"zzZz"])
ANY_TAG = st.binary(min_size=4, max_size=4)


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    """A seed image with one to four mutations."""
    kind = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[kind])
    for _ in range(draw(st.integers(1, 4))):
        if len(data) < 2:
            break
        operation = draw(st.sampled_from(["flip", "flip", "truncate", "insert", "overwrite", "chunk"]))
        # The signature stays, except for truncations: a file that does not even begin like an
        # image is refused at once (the corpus has those), so mutations past it find more.
        start = 1 if operation == "truncate" else min(SIGNATURE_BYTES, len(data) - 1)
        position = draw(st.integers(start, len(data) - 1))
        if operation == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "truncate":
            del data[position:]
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        elif operation == "overwrite":
            blob = draw(st.binary(min_size=1, max_size=16))
            data[position:position + len(blob)] = blob
        else:
            tag = draw(PNG_TAGS if "png" in kind else ANY_TAG)
            payload = draw(st.binary(max_size=300) | st.just(zlib.compress(b"\x00" * 200_000)))
            data[position:position] = _chunk(kind, tag, payload)
    return kind, bytes(data)


def assert_plain_refusal(error: ValidationError) -> str:
    assert error.code in MESSAGES, error.code
    message = error.messages[0]
    assert message.startswith(MESSAGES[error.code]), message
    assert not any(word in message for word in PILLOW_WORDS), message
    return message


@pytest.fixture
def small_images(settings):
    """Mutated headers may claim any size: keep the largest allowed decode small and fast."""
    settings.PETSITE_MAX_IMAGE_PIXELS = 2_000_000


@hypothesis_settings(FUZZ, max_examples=INSPECT_EXAMPLES)
@given(sample=mutated())
def test_inspect_image_accepts_what_it_can_store_and_refuses_the_rest_in_plain_words(small_images, sample):
    kind, data = sample
    file = upload(f"fuzz.{kind.split()[-1]}", data)
    try:
        info = inspect_image(file)
    except ValidationError as error:
        assert_plain_refusal(error)
        event(f"refused: {error.code}")
        return
    event("accepted")
    original, extension, thumbnail = uploads.encode_upload(file, info)
    with original:
        stored = Image.open(original)
        stored.load()
    assert stored.size == (info.width, info.height)
    assert extension in (".jpg", ".png", ".webp")
    assert max(Image.open(io.BytesIO(thumbnail.read())).size) <= 320


@pytest.mark.slow  # ~15 s since HEIC and AVIF seeds joined; the quick loop keeps the validator's fuzz test
@pytest.mark.django_db
@hypothesis_settings(FUZZ, max_examples=VIEW_EXAMPLES)
@given(sample=mutated())
def test_upload_view_stores_wholly_or_refuses_with_nothing_left(
    client, user, settings, small_images, tmp_path, sample
):
    settings.PETSITE_UPLOAD_RATE = "100000/m"
    settings.MEDIA_ROOT = tmp_path  # only this test's files to compare, however many examples ran
    client.force_login(user)
    kind, data = sample
    rows, files = set(PetImage.objects.values_list("pk", flat=True)), set(stored_files(settings.MEDIA_ROOT))

    response = client.post(reverse("classifier:upload"), {"image": upload(f"fuzz-{kind}.bin", data)})

    new_rows = set(PetImage.objects.values_list("pk", flat=True)) - rows
    new_files = set(stored_files(settings.MEDIA_ROOT)) - files
    if response.status_code == 302:
        pet = PetImage.objects.get(pk=int(response.url.rstrip("/").split("/")[-1]))
        own_files = {settings.MEDIA_ROOT / pet.image.name, settings.MEDIA_ROOT / pet.thumbnail.name}
        assert own_files <= set(stored_files(settings.MEDIA_ROOT))
        if new_rows:  # a new image: exactly its row and its two files
            assert new_rows == {pet.pk}
            assert new_files == own_files
            event("accepted")
        else:  # the same bytes sent before: the image already stored, nothing new
            assert not new_files
            event("accepted again: the image already stored")
    else:
        assert response.status_code == 400, response.status_code
        errors = response.context["form"].errors.as_data()["image"]
        assert len(errors) == 1
        assert_plain_refusal(errors[0])
        assert not new_rows
        assert not new_files
        event(f"refused: {errors[0].code}")
