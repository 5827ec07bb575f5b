"""Upload validation: a bad file is a form error (400), never a 500, and nothing is saved."""
import pytest
from django.urls import reverse

from classifier.models import PetImage
from tests.helpers import image_bytes, upload


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


def _stored_files(settings):
    root = settings.MEDIA_ROOT
    return sorted(p for p in root.rglob("*") if p.is_file() and "models" not in p.parts) if root.exists() else []


GOOD_JPEG = image_bytes()
BAD_FILES = {
    "not an image": (b"hello, I am a text file\n" * 20, "is not an image"),
    "empty": (b"", "empty"),
    "truncated jpeg": (GOOD_JPEG[: len(GOOD_JPEG) // 2], "damaged or incomplete"),
    "tiff": (image_bytes(fmt="TIFF"), "TIFF images are not accepted"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_upload_is_a_form_error(logged_in, settings, name):
    content, message = BAD_FILES[name]
    before = _stored_files(settings)
    response = logged_in.post(reverse("classifier:upload"), {"image": upload("x.jpg", content)})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert PetImage.objects.count() == 0
    assert _stored_files(settings) == before


def test_missing_file_is_a_form_error(logged_in):
    response = logged_in.post(reverse("classifier:upload"), {})
    assert response.status_code == 400 and "required" in response.content.decode()


def test_too_large_and_too_many_pixels(logged_in, settings):
    settings.PETSITE_MAX_UPLOAD_BYTES = 100
    response = logged_in.post(reverse("classifier:upload"), {"image": upload()})
    assert response.status_code == 400 and "the limit is 100" in response.content.decode()

    settings.PETSITE_MAX_UPLOAD_BYTES = 10_000_000
    settings.PETSITE_MAX_IMAGE_PIXELS = 50 * 50
    response = logged_in.post(reverse("classifier:upload"), {"image": upload()})
    assert response.status_code == 400 and "pixels" in response.content.decode()
    assert PetImage.objects.count() == 0


def test_good_upload_stores_image_thumbnail_and_hash(logged_in, user, settings):
    import hashlib

    content = image_bytes(size=(800, 600), fmt="PNG")
    response = logged_in.post(reverse("classifier:upload"), {"image": upload("Cat Photo.PNG", content, "image/png")})
    assert response.status_code == 302
    pet = PetImage.objects.get()
    assert pet.status == PetImage.Status.PENDING
    assert pet.sha256 == hashlib.sha256(content).hexdigest()
    assert pet.original_name == "Cat Photo.PNG" and "Cat Photo" not in pet.image.name
    assert pet.image.name.endswith(".png") and pet.image.read() == content
    from PIL import Image

    thumb = Image.open(pet.thumbnail.open("rb"))
    assert max(thumb.size) <= 320 and thumb.format == "JPEG"


def test_upload_page_needs_csrf(client, user):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(user)
    response = csrf_client.post(reverse("classifier:upload"), {"image": upload()})
    assert response.status_code == 403
    assert PetImage.objects.count() == 0


@pytest.mark.parametrize("mode", ["I;16", "LA", "1", "P", "RGBA"])
def test_unusual_png_modes_upload_fine(logged_in, mode):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (40, 30)).save(buffer, "PNG")
    response = logged_in.post(
        reverse("classifier:upload"), {"image": upload("odd.png", buffer.getvalue(), "image/png")}
    )
    assert response.status_code == 302
    assert PetImage.objects.get().thumbnail


def test_thumbnail_is_upright(logged_in):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    logged_in.post(reverse("classifier:upload"), {"image": upload("phone.jpg", image_bytes(size=(120, 60), exif=exif))})
    pet = PetImage.objects.get()
    assert Image.open(pet.thumbnail.open("rb")).size == (60, 120)
    assert (pet.width, pet.height) == (60, 120)  # as shown, not as stored
