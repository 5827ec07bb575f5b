"""Images through the API, continued: who may call (tokens, the site's session), the files,
the heatmap asked for by a POST, and bodies over the request limit."""
import io
import re

from django.urls import reverse
from rest_framework.test import APIClient

from tests.api.test_images import IMAGES, detail, feedback
from tests.helpers import upload

# --- authentication ---------------------------------------------------------------------------


def test_a_wrong_or_revoked_token_is_refused(anonymous, owner, user):
    anonymous.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert anonymous.get(IMAGES).status_code == 401
    user.auth_token.delete()
    assert owner.get(IMAGES).status_code == 401


def test_an_inactive_users_token_is_refused(owner, user):
    user.is_active = False
    user.save()
    assert owner.get(IMAGES).status_code == 401


def test_the_sites_scripts_use_the_session_with_its_csrf_token(user, make_image):
    pet = make_image("pug")
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.get(detail(pet)).status_code == 200
    refused = browser.post(feedback(pet), {"answer": "correct"}, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    browser.get(reverse("classifier:detail", args=[pet.pk]))  # a page sets the CSRF cookie
    token = browser.cookies["csrftoken"].value
    response = browser.post(feedback(pet), {"answer": "correct"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200
    assert response.json()["is_correct"] is True


def test_the_browsable_api_offers_the_upload_form(user):
    browser = APIClient()
    browser.force_login(user)
    page = browser.get(IMAGES, HTTP_ACCEPT="text/html").content.decode()
    assert re.search(r'<input name="image"\s+type="file"', page)
    assert 'name="headline"' not in page


# --- files --------------------------------------------------------------------------------


def test_a_token_client_fetches_its_photo_and_thumbnail_others_get_404(owner, other, anonymous, user):
    from PIL import Image

    response = owner.post(IMAGES, {"image": upload("rex.jpg")}, format="multipart")
    files = response.json()["files"][0]["image"]["files"]
    assert files["heatmap"] is None  # none made yet
    for kind in ("file", "thumbnail"):
        fetched = owner.get(files[kind])
        assert fetched.status_code == 200
        assert fetched["Content-Type"] == "image/jpeg"
        assert Image.open(io.BytesIO(b"".join(fetched.streaming_content))).format == "JPEG"
        assert other.get(files[kind]).status_code == 404
        assert anonymous.get(files[kind]).status_code == 401


def test_a_body_over_the_request_limit_is_a_json_413(owner, settings):
    settings.PETSITE_MAX_REQUEST_BYTES = 1000
    response = owner.post(IMAGES, {"image": upload("big.jpg", b"x" * 5000)}, format="multipart")
    assert response.status_code == 413
    assert "at most 1000 bytes" in response.json()["detail"]


def test_reading_asks_for_nothing_a_post_asks_for_the_heatmap_which_then_appears(
        owner, make_image, django_capture_on_commit_callbacks):
    from unittest import mock

    from classifier import explanations

    pet = make_image("pug", 0.9)
    with mock.patch("classifier.tasks.make_heatmap.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            assert owner.get(detail(pet)).json()["files"]["heatmap"] is None
        assert delay.call_count == 0  # a read sends nothing
        assert owner.post(reverse("api:image-explain", args=[pet.pk])).status_code == 202
    assert [call.args for call in delay.call_args_list] == [(pet.pk,)]

    explanations.make_heatmap(pet.pk)  # what the worker does
    heatmap = owner.get(detail(pet)).json()["files"]["heatmap"]
    assert heatmap.endswith(reverse("api:image-heatmap", args=[pet.pk]))
    fetched = owner.get(heatmap)
    assert fetched.status_code == 200
    assert b"".join(fetched.streaming_content).startswith(b"\xff\xd8")
