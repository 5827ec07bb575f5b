"""Many photos in one upload: each file is checked and stored on its own, the answer lists
each file's fate (a page, or JSON when asked for), a request carries a limited number of
files, and the upload rate counts photos, whichever way they come."""
import pytest
from django.urls import reverse

from classifier import uploads
from classifier.models import PetImage
from tests.helpers import image_bytes, stored_files, upload

URL = reverse("classifier:upload")
JSON = {"HTTP_ACCEPT": "application/json"}
NOT_AN_IMAGE = b"shopping list: milk, eggs\n" * 10


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


def test_good_files_are_kept_and_a_bad_one_is_listed_with_its_reason(logged_in, user, settings):
    files = [upload("a.jpg"), upload("notes.txt", NOT_AN_IMAGE, "text/plain"), upload("b.jpg"), upload("c.png")]
    before = stored_files(settings.MEDIA_ROOT)
    response = logged_in.post(URL, {"image": files}, follow=True)

    assert response.redirect_chain == [(reverse("classifier:gallery"), 302)]
    assert sorted(PetImage.objects.filter(owner=user).values_list("original_name", flat=True)) == [
        "a.jpg", "b.jpg", "c.png"
    ]
    page = response.content.decode()
    assert (
        "3 photos uploaded, 1 refused: notes.txt (This file is not an image we can read; "
        "upload a JPEG, PNG, WebP, GIF, BMP, HEIC or AVIF photo)." in page
    )
    # Each photo and its thumbnail, nothing of the text.
    assert len(stored_files(settings.MEDIA_ROOT)) - len(before) == 3 * 2


def test_a_photo_sent_before_counts_apart(logged_in):
    content, other = image_bytes(size=(120, 90)), image_bytes(size=(90, 120))
    logged_in.post(URL, {"image": [upload("first.jpg", content), upload("second.jpg", other)]})
    response = logged_in.post(URL, {"image": [upload("again.jpg", content), upload("new.jpg")]}, follow=True)
    assert "1 photo uploaded, 1 already in your gallery." in response.content.decode()
    response = logged_in.post(URL, {"image": [upload("again.jpg", content), upload("again.png", other)]}, follow=True)
    assert "2 photos already in your gallery." in response.content.decode()
    assert PetImage.objects.count() == 3


def test_when_every_file_is_refused_the_form_says_why_for_each(logged_in, settings):
    files = [upload("notes.txt", NOT_AN_IMAGE, "text/plain"), upload("empty.jpg", b"")]
    before = stored_files(settings.MEDIA_ROOT)
    response = logged_in.post(URL, {"image": files})
    assert response.status_code == 400
    errors = response.context["form"].errors["image"]
    assert errors == [
        "notes.txt: This file is not an image we can read; upload a JPEG, PNG, WebP, GIF, BMP, HEIC or AVIF photo.",
        "empty.jpg: The file is empty.",
    ]
    assert PetImage.objects.count() == 0
    assert stored_files(settings.MEDIA_ROOT) == before


def test_json_answer_lists_each_file(logged_in, user):
    content = image_bytes(size=(120, 90))
    logged_in.post(URL, {"image": upload("before.jpg", content)})
    files = [upload("new.jpg"), upload("notes.txt", NOT_AN_IMAGE, "text/plain"), upload("again.jpg", content)]
    response = logged_in.post(URL, {"image": files}, **JSON)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    new, refused, again = response.json()["files"]
    pet = PetImage.objects.get(original_name="new.jpg")
    assert (new["ok"], new["created"], new["id"]) == (True, True, pet.pk)
    assert (new["status"], new["finished"]) == ("pending", False)
    assert new["detail_url"] == pet.get_absolute_url()
    assert new["name"] == "new.jpg"
    assert refused == {
        "name": "notes.txt", "ok": False, "code": "not_an_image",
        "error": "This file is not an image we can read; upload a JPEG, PNG, WebP, GIF, BMP, HEIC or AVIF photo.",
    }
    before = PetImage.objects.get(original_name="before.jpg")
    assert (again["ok"], again["created"], again["id"]) == (True, False, before.pk)
    assert response.json()["summary"].startswith("1 photo uploaded, 1 already in your gallery, 1 refused: notes.txt")


def test_json_answer_when_nothing_was_stored(logged_in):
    response = logged_in.post(URL, {"image": upload("empty.jpg", b"")}, **JSON)
    assert response.status_code == 400
    expected = {"name": "empty.jpg", "ok": False, "code": "empty", "error": "The file is empty."}
    assert response.json()["files"] == [expected]

    response = logged_in.post(URL, {}, **JSON)
    assert response.status_code == 400
    assert response.json() == {"errors": ["This field is required."], "files": []}


def test_a_browser_gets_html(logged_in):
    """Browsers accept */* too: only a client that prefers JSON gets JSON."""
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = logged_in.post(URL, {"image": [upload(), upload()]}, HTTP_ACCEPT=browser)
    assert response.status_code == 302
    assert response["Location"] == reverse("classifier:gallery")


def test_one_photo_still_leads_to_its_page(logged_in):
    response = logged_in.post(URL, {"image": upload()})
    assert response.status_code == 302
    assert response["Location"] == PetImage.objects.get().get_absolute_url()


# --- The per-request limit --------------------------------------------------------------


def test_past_the_limit_the_first_files_are_stored_and_the_others_named_as_not_sent(logged_in, user, settings):
    """"20 at a time", without JavaScript: 22 photos in one go store the first 20, and the
    page names the 2 others and says how to send them (before, all 22 were refused)."""
    assert settings.PETSITE_MAX_FILES_PER_UPLOAD == 20
    files = [upload(f"p{number:02}.jpg") for number in range(1, 23)]
    response = logged_in.post(URL, {"image": files}, follow=True)

    assert response.redirect_chain == [(reverse("classifier:gallery"), 302)]
    stored = PetImage.objects.filter(owner=user).values_list("original_name", flat=True)
    assert sorted(stored) == [f"p{number:02}.jpg" for number in range(1, 21)]
    assert (
        "20 photos uploaded, 2 not sent (20 go at a time): p21.jpg, p22.jpg. Choose them again to upload them."
        in response.content.decode()
    )

    settings.PETSITE_MAX_FILES_PER_UPLOAD = 2
    response = logged_in.post(URL, {"image": [upload("a.jpg"), upload("b.jpg"), upload("c.jpg")]}, **JSON)
    assert response.status_code == 200
    a, b, c = response.json()["files"]
    assert a["ok"]
    assert b["ok"]
    assert c == {
        "name": "c.jpg", "ok": False, "code": "too_many_files",
        "error": "Not sent: 2 photos go at a time. Choose this one again to upload it.",
    }
    assert PetImage.objects.count() == 22


def test_files_past_the_limit_do_not_count_against_the_upload_rate(logged_in, user, settings):
    settings.PETSITE_MAX_FILES_PER_UPLOAD = 2
    settings.PETSITE_UPLOAD_RATE = "4/d"
    response = logged_in.post(URL, {"image": [upload() for _ in range(5)]}, **JSON)
    assert [file.get("code") for file in response.json()["files"]] == [None, None] + ["too_many_files"] * 3
    response = logged_in.post(URL, {"image": [upload(), upload()]}, **JSON)
    assert [file["ok"] for file in response.json()["files"]] == [True, True]
    assert PetImage.objects.filter(owner=user).count() == 4


def test_the_form_offers_many_files_and_its_limits(logged_in):
    page = logged_in.get(URL).content.decode()
    assert 'type="file" name="image"' in page
    assert " multiple" in page
    accept = (
        "image/jpeg,image/png,image/webp,image/gif,image/bmp,image/heic,image/heif,image/heic-sequence,"
        "image/heif-sequence,image/avif,.jpg,.jpeg,.jfif,.png,.webp,.gif,.bmp,.heic,.heif,.hif,.avif"
    )
    assert f'accept="{accept}"' in page
    assert f'data-accept="{accept}"' in page
    assert 'data-formats="JPEG, PNG, WebP, GIF, BMP, HEIC or AVIF"' in page
    assert f'data-max-bytes="{10 * 1024 * 1024}"' in page
    assert 'data-max-files="20"' in page
    assert "JPEG, PNG, WebP, GIF, BMP, HEIC or AVIF, up to 10.0\xa0MB each, 20 at a time" in page
    assert 'src="/static/js/upload.js"' in page


# --- The upload rate counts photos ------------------------------------------------------


def test_the_upload_rate_counts_each_photo_of_a_request(logged_in, user, settings):
    """Five photos a day: three in one request, then two of the next three (the third is
    refused with the wait), then nothing. The decorator's count and the view's count share
    one allowance: if they counted apart, the last request would pass."""
    settings.PETSITE_UPLOAD_RATE = "5/d"
    assert logged_in.post(URL, {"image": [upload() for _ in range(3)]}).status_code == 302

    response = logged_in.post(URL, {"image": [upload("d.jpg"), upload("e.jpg"), upload("f.jpg")]}, **JSON)
    assert response.status_code == 200
    d, e, f = response.json()["files"]
    assert d["ok"]
    assert e["ok"]
    assert not f["ok"]
    assert f["code"] == "rate_limited"
    assert f["error"].startswith("Not uploaded: you have sent as many photos as we accept for now. Please wait ")
    assert PetImage.objects.filter(owner=user).count() == 5

    response = logged_in.post(URL, {"image": upload()})
    assert response.status_code == 429
    assert PetImage.objects.filter(owner=user).count() == 5


# --- The service ------------------------------------------------------------------------


def test_store_uploads_keeps_no_traceback_of_a_refusal(user):
    """A refusal's traceback would keep the half-decoded image of that file alive while the
    next files are decoded: twenty photos must cost the memory of one."""
    truncated = image_bytes(size=(400, 300))[:2000]
    outcomes = uploads.store_uploads(user, [upload("cut.jpg", truncated), upload("ok.jpg")])
    refused, stored = outcomes
    assert [error.code for error in refused.error.error_list] == ["corrupt"]
    assert refused.error.__traceback__ is None
    assert refused.error.__context__ is None
    assert all(error.__traceback__ is None for error in refused.error.error_list)
    assert stored.saved
    assert stored.created
    assert not refused.saved
    assert refused.reason.startswith("The image is damaged or incomplete")


# --- Photos uploaded from the gallery join its grid ------------------------------------------


def test_a_stored_photo_comes_with_its_gallery_tile(logged_in, user):
    response = logged_in.post(URL, {"image": [upload("rex.jpg"), upload("notes.txt", NOT_AN_IMAGE, "text/plain")]},
                              **JSON)
    stored, refused = response.json()["files"]
    pet = PetImage.objects.get(owner=user)
    gallery = logged_in.get(reverse("classifier:gallery")).content.decode()
    assert stored["tile"].strip() in gallery  # the gallery's own markup for that photo, from the same template
    assert f'data-id="{pet.pk}"' in stored["tile"]
    assert 'data-finished="false"' in stored["tile"]
    assert "tile" not in refused


@pytest.mark.parametrize(("query", "joins"), [
    ("", True), ("?sort=newest", True), ("?page=1", True),
    ("?sort=oldest", False), ("?page=2", False), ("?species=cat", False),
])
def test_new_photos_join_the_grid_only_where_the_newest_come_first(logged_in, settings, query, joins):
    settings.PETSITE_GALLERY_PAGE_SIZE = 1
    logged_in.post(URL, {"image": [upload(), upload()]})
    page = logged_in.get(reverse("classifier:gallery") + query).content.decode()
    assert ("data-new-tiles" in page) is joins


def test_an_empty_gallery_has_a_grid_waiting_for_its_first_photos(logged_in):
    page = logged_in.get(reverse("classifier:gallery")).content.decode()
    assert "No photos yet." in page
    assert "data-live-gallery data-new-tiles" in page
