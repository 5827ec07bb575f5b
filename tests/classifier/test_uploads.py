"""Uploads: a bad file is a form error (400), never a 500, and nothing is saved; the same
photo twice is one image; a body larger than the site accepts is refused before it is read."""
import hashlib
import io
import threading

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from PIL import Image

from classifier import uploads
from classifier.models import PetImage
from classifier.validators import inspect_image
from tests.helpers import image_bytes, stored_files, upload


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


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
    before = stored_files(settings.MEDIA_ROOT)
    response = logged_in.post(reverse("classifier:upload"), {"image": upload("x.jpg", content)})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert PetImage.objects.count() == 0
    assert stored_files(settings.MEDIA_ROOT) == before


def test_missing_file_is_a_form_error(logged_in):
    response = logged_in.post(reverse("classifier:upload"), {})
    assert response.status_code == 400
    assert "required" in response.content.decode()


def test_too_large_and_too_many_pixels(logged_in, settings):
    settings.PETSITE_MAX_UPLOAD_BYTES = 100
    response = logged_in.post(reverse("classifier:upload"), {"image": upload()})
    assert response.status_code == 400
    assert "the limit is 100" in response.content.decode()

    settings.PETSITE_MAX_UPLOAD_BYTES = 10_000_000
    settings.PETSITE_MAX_IMAGE_PIXELS = 50 * 50
    response = logged_in.post(reverse("classifier:upload"), {"image": upload()})
    assert response.status_code == 400
    assert "can have at most 2,500 pixels" in response.content.decode()
    assert PetImage.objects.count() == 0


def test_good_upload_stores_image_thumbnail_and_hash(logged_in, user, settings):
    content = image_bytes(size=(800, 600), fmt="PNG")
    response = logged_in.post(reverse("classifier:upload"), {"image": upload("Cat Photo.PNG", content, "image/png")})
    assert response.status_code == 302
    pet = PetImage.objects.get()
    assert pet.status == PetImage.Status.PENDING
    assert pet.sha256 == hashlib.sha256(content).hexdigest()  # of the bytes sent, not of the stored copy
    assert pet.original_name == "Cat Photo.PNG"
    assert "Cat Photo" not in pet.image.name
    stored = Image.open(pet.image.open("rb"))
    assert pet.image.name.endswith(".png")
    assert stored.format == "PNG"
    assert stored.tobytes() == Image.open(io.BytesIO(content)).tobytes()  # re-encoded, losslessly

    thumb = Image.open(pet.thumbnail.open("rb"))
    assert max(thumb.size) <= 320
    assert thumb.format == "JPEG"


def test_upload_page_needs_csrf(client, user):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(user)
    response = csrf_client.post(reverse("classifier:upload"), {"image": upload()})
    assert response.status_code == 403
    assert PetImage.objects.count() == 0


@pytest.mark.parametrize("mode", ["I;16", "LA", "1", "P", "RGBA"])
def test_unusual_png_modes_upload_fine(logged_in, mode):
    buffer = io.BytesIO()
    Image.new(mode, (40, 30)).save(buffer, "PNG")
    response = logged_in.post(
        reverse("classifier:upload"), {"image": upload("odd.png", buffer.getvalue(), "image/png")}
    )
    assert response.status_code == 302
    assert PetImage.objects.get().thumbnail


def test_thumbnail_is_upright(logged_in):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    logged_in.post(reverse("classifier:upload"), {"image": upload("phone.jpg", image_bytes(size=(120, 60), exif=exif))})
    pet = PetImage.objects.get()
    assert Image.open(pet.thumbnail.open("rb")).size == (60, 120)
    assert (pet.width, pet.height) == (60, 120)  # as shown, not as stored


def test_big_image_thumbnail_is_small_and_faithful(logged_in):
    """The thumbnail is reduced from the full image in place; it still shows the picture."""
    picture = Image.new("RGB", (2400, 1600), (250, 250, 250))
    picture.paste((200, 30, 30), (0, 0, 1200, 1600))  # left half red
    logged_in.post(reverse("classifier:upload"), {"image": upload("big.jpg", encode_jpeg(picture))})
    thumb = Image.open(PetImage.objects.get().thumbnail.open("rb"))
    assert thumb.size == (320, 213)
    red, white = thumb.getpixel((40, 100)), thumb.getpixel((280, 100))
    assert red[0] > 150
    assert red[1] < 80
    assert min(white) > 220


def encode_jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# --- The same photo twice -------------------------------------------------------------


def test_same_photo_twice_is_one_image(logged_in, settings):
    content = image_bytes(size=(300, 200))
    first = logged_in.post(reverse("classifier:upload"), {"image": upload("rex.jpg", content)})
    files = stored_files(settings.MEDIA_ROOT)
    again = logged_in.post(reverse("classifier:upload"), {"image": upload("rex again.jpg", content)}, follow=True)
    pet = PetImage.objects.get()
    assert first.url == pet.get_absolute_url()
    assert again.redirect_chain == [(pet.get_absolute_url(), 302)]
    assert "You uploaded this photo before; here it is." in again.content.decode()
    assert stored_files(settings.MEDIA_ROOT) == files  # no second copy stored
    assert pet.original_name == "rex.jpg"


def test_same_photo_from_two_users_is_two_images(client, user, other_user):
    content = image_bytes(size=(300, 200))
    for owner in (user, other_user):
        client.force_login(owner)
        response = client.post(reverse("classifier:upload"), {"image": upload("rex.jpg", content)}, follow=True)
        assert "uploaded this photo before" not in response.content.decode()
    assert sorted(PetImage.objects.values_list("owner__username", flat=True)) == ["alice", "bob"]
    assert PetImage.objects.values("image").distinct().count() == 2


def test_duplicate_stored_meanwhile_wins_and_fresh_files_go(user, settings):
    """Request B looks, finds nothing; request A stores the same photo and commits; B goes
    on storing: under the lock it finds A's image, returns it and deletes its own files."""
    content = image_bytes(size=(300, 200))
    file_b = upload("b.jpg", content)
    info_b = inspect_image(file_b)
    sha256 = uploads.upload_sha256(file_b)
    assert uploads.find_duplicate(user, sha256) is None  # B's first look

    file_a = upload("a.jpg", content)
    pet_a, created_a = uploads.get_or_create_pet_image(user, file_a, inspect_image(file_a))
    files = stored_files(settings.MEDIA_ROOT)

    pet_b, created_b = uploads.store_pet_image(user, file_b, info_b, sha256)
    assert (created_a, created_b) == (True, False)
    assert pet_b == pet_a
    assert PetImage.objects.count() == 1
    assert stored_files(settings.MEDIA_ROOT) == files


@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_of_one_photo_make_one_image(user, settings):
    """Real threads, each with its own database connection, committing for real."""
    content = image_bytes(size=(1600, 1200))  # big enough that both pass the first look before either commits
    barrier = threading.Barrier(3)
    results, errors = [], []
    before = set(stored_files(settings.MEDIA_ROOT))

    def send(name: str) -> None:
        try:
            file = upload(name, content)
            info = inspect_image(file)
            barrier.wait(timeout=30)
            results.append(uploads.get_or_create_pet_image(user, file, info))
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(f"copy-{i}.jpg",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    pet = PetImage.objects.get()
    assert sorted(created for _, created in results) == [False, False, True]
    assert {found.pk for found, _ in results} == {pet.pk}
    new_files = set(stored_files(settings.MEDIA_ROOT)) - before
    assert new_files == {settings.MEDIA_ROOT / pet.image.name, settings.MEDIA_ROOT / pet.thumbnail.name}


# --- Request bodies larger than the site accepts ----------------------------------------


def test_oversized_body_is_refused_before_it_is_read(logged_in, settings):
    """The body declares more than the limit: 413 with the site's page. The test client's
    input raises if anything reads past the few bytes really sent, so a 413 here also
    shows that nothing read the body."""
    declared = settings.PETSITE_MAX_REQUEST_BYTES + 1
    response = logged_in.post(
        reverse("classifier:upload"), data=b"--x--\r\n", content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(declared),
    )
    assert response.status_code == 413
    page = response.content.decode()
    assert "That upload is too large" in page
    assert "at most 10.0\xa0MB" in page
    assert "Log out alice" in page  # the site's layout, for the signed-in user
    assert PetImage.objects.count() == 0


def test_request_limit_follows_the_setting(logged_in, settings):
    content = image_bytes(size=(300, 200))
    settings.PETSITE_MAX_REQUEST_BYTES = len(content) // 2
    response = logged_in.post(reverse("classifier:upload"), {"image": upload("rex.jpg", content)})
    assert response.status_code == 413
    assert PetImage.objects.count() == 0

    settings.PETSITE_MAX_REQUEST_BYTES = len(content) + 4096  # the file and the multipart framing
    response = logged_in.post(reverse("classifier:upload"), {"image": upload("rex.jpg", content)})
    assert response.status_code == 302
    assert PetImage.objects.count() == 1


def test_default_request_limit_is_a_full_request_of_photos_and_a_margin(settings):
    from petsite import settings as project_settings

    most = project_settings.PETSITE_MAX_FILES_PER_UPLOAD * project_settings.PETSITE_MAX_UPLOAD_BYTES
    assert project_settings.PETSITE_MAX_FILES_PER_UPLOAD == 20
    assert project_settings.PETSITE_MAX_REQUEST_BYTES == most + 1024 * 1024


def test_small_requests_pass(logged_in):
    assert logged_in.get(reverse("classifier:upload")).status_code == 200
