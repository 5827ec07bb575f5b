"""A 404 is the site's own page with DEBUG on too (bin/run): Django's technical page lists
every URL pattern and is wider than a phone. PETSITE_TECHNICAL_404=1 brings it back for
developers; under /api/ a 404 stays problem+json either way."""
import pytest
from django.urls import reverse

from tests.helpers import store_photo, upload

SITE_PAGE = "We could not find that page"
TECHNICAL = "Using the URLconf defined in"  # Django's technical 404 for an unknown address
TECHNICAL_RAISED = "Raised by:"  # … and for a view's Http404


@pytest.fixture
def others_photo(other_user):
    photo = upload()
    return store_photo(other_user, photo)


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_an_unknown_address_gets_the_sites_page(client, user, settings, debug):
    settings.DEBUG = debug
    client.force_login(user)
    response = client.get("/no-such-page/")
    page = response.content.decode()
    assert response.status_code == 404
    assert "404.html" in [t.name for t in response.templates]
    assert SITE_PAGE in page
    assert f"Log out {user.username}" in page
    assert TECHNICAL not in page
    assert "classifier:gallery" not in page


def test_a_views_404_gets_the_sites_page_with_debug(client, user, others_photo, settings):
    settings.DEBUG = True
    client.force_login(user)
    response = client.get(reverse("classifier:detail", args=[others_photo.pk]))
    page = response.content.decode()
    assert response.status_code == 404
    assert SITE_PAGE in page
    assert TECHNICAL_RAISED not in page


def test_the_slash_is_still_added_with_debug(client, user, settings):
    settings.DEBUG = True
    client.force_login(user)
    response = client.get("/upload")
    assert response.status_code == 301
    assert response["Location"] == reverse("classifier:upload")


def test_technical_404_on_request(client, user, others_photo, settings):
    settings.DEBUG = True
    settings.PETSITE_TECHNICAL_404 = True
    client.force_login(user)
    unknown = client.get("/no-such-page/")
    assert unknown.status_code == 404
    assert TECHNICAL in unknown.content.decode()
    raised = client.get(reverse("classifier:detail", args=[others_photo.pk]))
    assert raised.status_code == 404
    assert TECHNICAL_RAISED in raised.content.decode()


def test_technical_404_needs_debug(client, settings):
    settings.PETSITE_TECHNICAL_404 = True  # without DEBUG: nothing to show developers
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert SITE_PAGE in response.content.decode()


@pytest.mark.parametrize("technical", [False, True])
def test_the_api_answers_problem_json_with_debug(client, settings, technical):
    settings.DEBUG = True
    settings.PETSITE_TECHNICAL_404 = technical
    response = client.get("/api/no-such-endpoint/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"
