"""Phone photos: HEIC (pillow-heif) and AVIF (Pillow) uploads, made here by the tests.

Each is accepted through the page's form and through the API, stored as an upright JPEG
(turned as the file says: HEIC and AVIF carry the turn in the container, as phones
write it) without EXIF or GPS data, with a thumbnail, and a worker classifies it from
the stored file. A damaged one is refused in words (never a 500), and one with too
many pixels is refused from its header, before its pixels are decoded.
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from PIL import ExifTags, Image
from rest_framework.test import APIClient

from api import tokens
from classifier import classification, formats
from classifier.models import PetImage
from tests.classifier.test_privacy import gps_exif
from tests.helpers import stored_files, upload

URL = reverse("classifier:upload")
API = reverse("api:image-list")
JSON = {"HTTP_ACCEPT": "application/json"}
RED, BLUE = (255, 0, 0), (0, 0, 255)
SIZE = (120, 80)  # as the camera stored it: landscape; EXIF orientation 6 shows it portrait, 80x120
KINDS = {"heic": ("HEIF", "IMG_0001.HEIC", "image/heic"), "avif": ("AVIF", "photo.avif", "image/avif")}


def phone_photo(kind: str, size: tuple[int, int] = SIZE, mode: str = "RGB", exif: Image.Exif | None = None) -> bytes:
    """A blue photo with a red corner at the top left as stored, encoded as ``kind`` with
    ``exif`` (the camera's by default; an empty one: none). The encoders write EXIF
    orientation as the container's turn (irot), as phones do."""
    image = Image.new("RGB", size, BLUE)
    image.paste(RED, (0, 0, 24, 24))
    if mode == "RGBA":
        image.putalpha(Image.new("L", size, 255))
        image.paste((0, 0, 0, 0), (size[0] // 2, 0, size[0], size[1]))  # the right half transparent
    buffer = io.BytesIO()
    exif = gps_exif(orientation=6) if exif is None else exif  # the camera's make, where it was, "turn me"
    image.save(buffer, KINDS[kind][0], quality=90, **({"exif": exif.tobytes()} if exif else {}))
    return buffer.getvalue()


def phone_upload(kind: str, content: bytes | None = None):
    pillow_format, name, content_type = KINDS[kind]
    return upload(name, phone_photo(kind) if content is None else content, content_type)


def near(pixel, colour, tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=False))


def assert_stored_upright_jpeg_without_metadata(pet: PetImage) -> None:
    """The stored copy: a JPEG, portrait (the turn applied once: red now at the top right),
    no EXIF (so no GPS) and no XMP; the thumbnail a portrait JPEG too."""
    assert pet.image.name.endswith(".jpg")
    assert (pet.width, pet.height) == (80, 120)
    raw = pet.image.open("rb").read()
    stored = Image.open(io.BytesIO(raw))
    assert stored.format == "JPEG"
    assert stored.size == (80, 120)
    assert near(stored.getpixel((70, 8)), RED)
    assert near(stored.getpixel((8, 8)), BLUE)
    assert near(stored.getpixel((8, 110)), BLUE)
    assert near(stored.getpixel((70, 110)), BLUE)
    assert not stored.getexif()
    assert "exif" not in stored.info
    assert "xmp" not in stored.info
    assert b"Exif" not in raw
    assert b"PetCam" not in raw

    thumbnail = Image.open(pet.thumbnail.open("rb"))
    assert thumbnail.format == "JPEG"
    assert thumbnail.size == (80, 120)
    assert near(thumbnail.getpixel((70, 8)), RED)
    assert near(thumbnail.getpixel((8, 8)), BLUE)


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


def test_the_test_files_are_what_phones_send():
    """The files are real HEIC and AVIF, with the camera's EXIF (GPS too) and a turn to apply."""
    heic, avif = Image.open(io.BytesIO(phone_photo("heic"))), Image.open(io.BytesIO(phone_photo("avif")))
    assert (heic.format, avif.format) == ("HEIF", "AVIF")
    for image in (heic, avif):
        assert image.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude] == (51.0, 30.0, 12.5)
    # pillow-heif turns HEIC as libheif reads it (the turn is in the container); AVIF says "turn me" in EXIF.
    assert heic.size == (80, 120)
    assert avif.size == (120, 80)
    assert avif.getexif()[ExifTags.Base.Orientation] == 6


@pytest.mark.parametrize("kind", KINDS)
def test_a_phone_photo_through_the_page_is_stored_as_an_upright_jpeg_without_exif(logged_in, user, kind):
    response = logged_in.post(URL, {"image": phone_upload(kind)})
    pet = PetImage.objects.get(owner=user)
    assert response.status_code == 302
    assert response["Location"] == pet.get_absolute_url()
    assert pet.original_name == KINDS[kind][1]
    assert_stored_upright_jpeg_without_metadata(pet)
    page = logged_in.get(pet.get_absolute_url())
    assert page.status_code == 200
    served = logged_in.get(reverse("classifier:image_file", args=[pet.pk]))
    assert served.status_code == 200
    assert served["Content-Type"] == "image/jpeg"


@pytest.mark.parametrize("kind", KINDS)
def test_a_phone_photo_through_the_api_is_stored_as_jpeg(user, kind):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {tokens.issue_token(user).key}")
    response = client.post(API, {"image": phone_upload(kind)}, format="multipart")
    assert response.status_code == 202, response.json()
    (outcome,) = response.json()["files"]
    pet = PetImage.objects.get(pk=outcome["image"]["id"])
    assert outcome["ok"]
    assert (outcome["image"]["width"], outcome["image"]["height"]) == (80, 120)
    assert_stored_upright_jpeg_without_metadata(pet)
    downloaded = client.get(outcome["image"]["files"]["file"])
    assert downloaded.status_code == 200
    assert downloaded["Content-Type"] == "image/jpeg"


@pytest.mark.parametrize("kind", KINDS)
def test_a_worker_classifies_a_phone_photo_from_the_stored_file(logged_in, user, model_version, kind):
    logged_in.post(URL, {"image": phone_upload(kind)})
    pet = PetImage.objects.get(owner=user)
    classification.classify(pet.pk)  # the worker's own code, on the stored file
    pet.refresh_from_db()
    assert pet.status == PetImage.Status.DONE
    assert pet.predicted_breed
    assert pet.model_version == model_version


def test_a_transparent_avif_is_laid_on_white(logged_in, user):
    content = phone_photo("avif", mode="RGBA", exif=Image.Exif())
    assert Image.open(io.BytesIO(content)).mode == "RGBA"
    logged_in.post(URL, {"image": phone_upload("avif", content)})
    stored = Image.open(PetImage.objects.get(owner=user).image.open("rb"))
    assert stored.format == "JPEG"
    assert stored.mode == "RGB"
    assert near(stored.getpixel((100, 40)), (255, 255, 255))
    assert near(stored.getpixel((40, 40)), BLUE)


# --- refused, in words ------------------------------------------------------------------


def truncated(content: bytes) -> bytes:
    """The file cut inside its last box, "mdat" (the picture data and the EXIF block)."""
    return content[: len(content) - 40]


def without_picture(content: bytes) -> bytes:
    """The file with its "mdat" box (the picture data) overwritten by zeros: its header,
    sizes and offsets all still read, and only decoding the picture can fail."""
    position = 0
    while position < len(content):
        size, name = int.from_bytes(content[position:position + 4], "big"), content[position + 4:position + 8]
        if name == b"mdat":
            return content[:position + 8] + bytes(size - 8) + content[position + size:]
        position += size
    raise AssertionError("no mdat box")


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_phone_photo_is_refused_in_words(logged_in, settings, kind):
    before = stored_files(settings.MEDIA_ROOT)
    damaged = {
        "cut in its picture": truncated(phone_photo(kind)),
        "its picture data lost": without_picture(phone_photo(kind, exif=Image.Exif())),
        "cut in its header": phone_photo(kind)[:200],
        "only its header's first box": phone_photo(kind)[:32],
    }
    for what, content in damaged.items():
        response = logged_in.post(URL, {"image": phone_upload(kind, content)}, **JSON)
        assert response.status_code == 400, what
        (outcome,) = response.json()["files"]
        assert outcome["code"] == "corrupt", (what, outcome)
        assert outcome["error"] == (
            "The image is damaged or incomplete, so we cannot read it. Try exporting or saving it again."
        )
    page = logged_in.post(URL, {"image": phone_upload(kind, truncated(phone_photo(kind)))})
    assert page.status_code == 400
    assert "damaged or incomplete" in page.content.decode()
    assert PetImage.objects.count() == 0
    assert stored_files(settings.MEDIA_ROOT) == before


@pytest.mark.parametrize("kind", KINDS)
def test_a_phone_photo_with_too_many_pixels_is_refused_before_it_is_decoded(logged_in, settings, kind):
    """The file's picture data is lost: decoding it fails ("corrupt"). Refused for its
    pixels instead: the header alone was read."""
    content = without_picture(phone_photo(kind, size=(400, 300), exif=Image.Exif()))
    response = logged_in.post(URL, {"image": phone_upload(kind, content)}, **JSON)
    assert response.json()["files"][0]["code"] == "corrupt"  # decoded, it fails

    settings.PETSITE_MAX_IMAGE_PIXELS = 60_000  # 400x300 is 120,000 pixels (AVIF is allowed fewer still)
    response = logged_in.post(URL, {"image": phone_upload(kind, content)}, **JSON)
    (outcome,) = response.json()["files"]
    assert response.status_code == 400, outcome
    assert outcome["code"] == "too_many_pixels", outcome
    assert outcome["error"].startswith("The image is ")
    assert "Make it smaller and try again." in outcome["error"]
    assert PetImage.objects.count() == 0


def test_an_avif_with_a_container_brand_is_read_as_avif(logged_in, user):
    """"mif1" files may be HEIC or AVIF: Pillow's AVIF plugin looks first and passes on the HEIC ones."""
    avif = phone_photo("avif")
    assert avif[8:12] == b"avif"
    response = logged_in.post(URL, {"image": phone_upload("avif", avif[:8] + b"mif1" + avif[12:])})
    assert response.status_code == 302
    assert_stored_upright_jpeg_without_metadata(PetImage.objects.get(owner=user))


# --- one list of formats ----------------------------------------------------------------


def test_every_place_that_names_the_formats_reads_them_from_one_list(logged_in, client):
    words = "JPEG, PNG, WebP, GIF, BMP, HEIC or AVIF"
    assert formats.names_in_words() == words
    page = logged_in.get(URL).content.decode()
    assert f'data-formats="{words}"' in page
    assert f'<p class="hint">{words}, up to' in page
    schema = client.get(reverse("api:schema"), {"format": "json"}).json()
    field = schema["components"]["schemas"]["UploadRequest"]["properties"]["image"]
    assert f"({words}; HEIC and AVIF are stored as JPEG)" in field["description"]
    assert f"This file is not an image we can read; upload a {words} photo." in (
        Path(settings.BASE_DIR, "docs", "api.md").read_text()
    )
    script = Path(settings.BASE_DIR, "static", "js", "upload.js").read_text()
    assert "JPEG, PNG" not in script
    assert "image/jpeg" not in script
