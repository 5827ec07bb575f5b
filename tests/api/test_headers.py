"""RateLimit headers on every API answer, Retry-After and Location on uploads, and who may cache answers."""
import re

import pytest
from django.urls import reverse

from classifier.models import PetImage
from tests.helpers import upload

IMAGES = reverse("api:image-list")
RATE_LIMIT = re.compile(r'^"upload";r=(\d+);t=(\d+)$')


def remaining(response) -> int:
    match = RATE_LIMIT.match(response["RateLimit"])
    assert match, response["RateLimit"]
    return int(match.group(1))


@pytest.fixture
def rate(settings):
    settings.PETSITE_UPLOAD_RATE = "5/d"  # a day: the window never ends during a test
    return settings


def test_reads_show_the_allowance_without_spending_it(owner, rate):
    first = owner.get(IMAGES)
    assert first["RateLimit-Policy"] == '"upload";q=5;w=86400'
    assert remaining(first) == 5
    assert 0 <= int(RATE_LIMIT.match(first["RateLimit"]).group(2)) <= 86400
    assert remaining(owner.get(IMAGES)) == 5  # reading again spends nothing

    uploaded = owner.post(IMAGES, {"image": [upload(), upload()]}, format="multipart")
    assert uploaded.status_code == 202
    assert remaining(uploaded) == 3  # each photo counts
    assert remaining(owner.get(IMAGES)) == 3


def test_the_site_and_the_api_show_one_allowance(client, owner, user, rate):
    client.force_login(user)
    assert client.post(reverse("classifier:upload"), {"image": upload()}).status_code == 302
    assert remaining(owner.get(IMAGES)) == 4


def test_errors_carry_the_headers_too(owner, anonymous, make_image, other_user, rate):
    theirs = make_image(owner=other_user)
    not_found = owner.get(reverse("api:image-detail", args=[theirs.pk]))
    assert not_found.status_code == 404
    assert (not_found["RateLimit-Policy"], remaining(not_found)) == ('"upload";q=5;w=86400', 5)
    bad = owner.get(IMAGES, {"page_size": 1000})
    assert (bad.status_code, remaining(bad)) == (400, 5)
    # No known caller: the policy, but no allowance to tell.
    for response in [anonymous.get(IMAGES), owner.get("/api/v1/no-such-thing/")]:
        assert response.status_code in (401, 404)
        assert response["RateLimit-Policy"] == '"upload";q=5;w=86400'
        assert "RateLimit" not in response


def test_the_429_says_nothing_is_left_and_when_to_come_back(owner, rate):
    rate.PETSITE_UPLOAD_RATE = "1/d"
    assert owner.post(IMAGES, {"image": upload()}, format="multipart").status_code == 202
    refused = owner.post(IMAGES, {"image": upload()}, format="multipart")
    assert refused.status_code == 429
    assert remaining(refused) == 0
    assert 0 < int(refused["Retry-After"]) <= 86400


def test_an_upload_that_refused_some_files_for_the_rate_says_when_to_send_them(owner, rate):
    rate.PETSITE_UPLOAD_RATE = "2/d"
    response = owner.post(IMAGES, {"image": [upload(), upload(), upload()]}, format="multipart")
    assert response.status_code == 202
    assert [f["code"] for f in response.json()["files"]] == [None, None, "rate_limited"]
    assert 0 < int(response["Retry-After"]) <= 86400
    assert remaining(response) == 0


def test_an_upload_within_the_rate_has_no_retry_after(owner, rate):
    response = owner.post(IMAGES, {"image": upload()}, format="multipart")
    assert response.status_code == 202
    assert "Retry-After" not in response


def test_the_202_names_the_first_stored_image_in_location(owner, user):
    files = [upload("notes.txt", b"not a photo", "text/plain"), upload("a.jpg"), upload("b.jpg")]
    response = owner.post(IMAGES, {"image": files}, format="multipart")
    assert response.status_code == 202
    first = response.json()["files"][1]["image"]
    assert response["Location"] == first["url"] == f"http://testserver/api/v1/images/{first['id']}/"
    assert owner.get(response["Location"]).json()["id"] == first["id"]


def test_an_upload_that_stored_nothing_has_no_location(owner):
    response = owner.post(IMAGES, {"image": upload("e.jpg", b"")}, format="multipart")
    assert response.status_code == 400
    assert "Location" not in response
    assert not PetImage.objects.exists()


def test_without_a_rate_limit_there_is_nothing_to_tell(owner, settings):
    settings.RATELIMIT_ENABLE = False
    response = owner.get(IMAGES)
    assert response.status_code == 200
    assert "RateLimit-Policy" not in response
    assert "RateLimit" not in response


def test_while_the_cache_is_away_the_policy_is_told_but_not_the_allowance(owner, settings):
    settings.PETSITE_UPLOAD_RATE = "5/d"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0", "OPTIONS": {"socket_connect_timeout": 1}}}
    response = owner.get(IMAGES)
    assert response.status_code == 200
    assert response["RateLimit-Policy"] == '"upload";q=5;w=86400'
    assert "RateLimit" not in response


def test_answers_are_private_and_vary_by_credentials(owner, user, client):
    for response in [owner.get(IMAGES), owner.get("/api/v1/no-such-thing/")]:
        assert response["Cache-Control"] == "private, no-cache"
        assert {"Authorization", "Cookie"} <= {v.strip() for v in response["Vary"].split(",")}
    client.force_login(user)
    page = client.get(reverse("api:token"))  # a page for people: none of the API's headers
    assert page.status_code == 200
    assert "RateLimit-Policy" not in page


def test_an_empty_upload_rate_turns_the_limit_and_its_headers_off(owner, settings):
    settings.PETSITE_UPLOAD_RATE = ""
    for _ in range(3):
        response = owner.post(reverse("api:image-list"), {"image": upload()}, format="multipart")
        assert response.status_code == 202
        assert "RateLimit" not in response
        assert "RateLimit-Policy" not in response
