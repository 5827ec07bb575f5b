"""Error answers: the site's pages for people, problem details (RFC 9457) under /api/, and
503 with Retry-After, never 500, while the database or the cache is unreachable.

The database is made unreachable for real: the connection is closed and pointed at a
closed port (PostgreSQL) or at a file in a folder that does not exist (SQLite), so every
query of the request fails as in an outage. Errors raised inside a middleware (the
session saved after the view) are injected with a mock.
"""
from __future__ import annotations

import logging
import socket
import sqlite3
from contextlib import contextmanager
from unittest import mock

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.db import IntegrityError, OperationalError, connection
from django.test import Client, RequestFactory
from django.urls import reverse
from rest_framework.test import APIClient

from api import tokens
from classifier.models import PetImage
from petsite import errors
from petsite.outages import CACHE, DATABASE, unreachable_service
from tests.helpers import PROBLEM, assert_problem, store_photo, stored_files, upload


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def database_unreachable(tmp_path):
    """Every query fails as when the database server is away, until the block ends."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = str(tmp_path / "no-such-folder" / "db.sqlite3")
    else:
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(_closed_port()))
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def outage_error() -> OperationalError:
    """What Django raises when no connection can be made (the driver's error is the cause)."""
    error = OperationalError("connection to server at 127.0.0.1 failed: Connection refused")
    error.__cause__ = ConnectionRefusedError(111, "Connection refused")
    return error


def assert_unavailable_page(response, sent: bool = False) -> str:
    assert response.status_code == 503, response.content[:500]
    assert int(response["Retry-After"]) > 0
    page = response.content.decode()
    assert "Petsite is briefly unavailable" in page
    assert "Log out" not in page
    assert ("may not have been saved" in page) == sent
    assert "safe" not in page
    assert "is lost" not in page
    return page


# --- The database unreachable ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_every_page_answers_503_while_the_database_is_unreachable(user, tmp_path, settings):
    client = Client()
    client.force_login(user)
    pet = _stored_image(user)
    files_before = stored_files(settings.MEDIA_ROOT)
    pages = [
        reverse("classifier:gallery"), reverse("classifier:upload"), reverse("classifier:detail", args=[pet.pk]),
        reverse("classifier:statuses") + f"?ids={pet.pk}", reverse("classifier:image_file", args=[pet.pk]),
        reverse("classifier:review_dashboard"), reverse("registry:model_list"), reverse("api:token"),
        reverse("admin:index"),
    ]
    with database_unreachable(tmp_path):
        for url in pages:
            assert_unavailable_page(client.get(url))
        page = assert_unavailable_page(client.post(reverse("classifier:upload"), {"image": upload()}), sent=True)
        assert "send it again" in page
        # The site's scripts ask for JSON: they get problem details, and wait as long as Retry-After says.
        polled = client.get(reverse("classifier:statuses") + f"?ids={pet.pk}", HTTP_ACCEPT="application/json")
        assert_problem(polled, 503, "database_unavailable")
        sent = client.post(reverse("classifier:upload"), {"image": upload()}, HTTP_ACCEPT="application/json")
        assert "send it again" in assert_problem(sent, 503)["detail"]
        # Logging in needs the database too (django-axes, the users).
        login = Client().post(reverse("login"), {"username": "alice", "password": "pw-alice-123"})
        assert_unavailable_page(login, sent=True)
    assert list(PetImage.objects.values_list("pk", flat=True)) == [pet.pk]  # nothing claimed stored was stored
    assert stored_files(settings.MEDIA_ROOT) == files_before  # and no orphan file was left
    assert Client().get(reverse("classifier:gallery")).status_code == 200  # back: the landing page


@pytest.mark.django_db(transaction=True)
def test_the_api_answers_problem_details_while_the_database_is_unreachable(user, tmp_path):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {tokens.issue_token(user).key}")
    with database_unreachable(tmp_path):
        for url in [reverse("api:image-list"), reverse("api:image-detail", args=[1]), reverse("api:model-list")]:
            assert_problem(api.get(url), 503, "database_unavailable")
        body = assert_problem(api.post(reverse("api:image-list"), {"image": upload()}, format="multipart"), 503)
        assert "send it again" in body["detail"]
    assert not PetImage.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("debug", [False, True], ids=["production", "DEBUG"])
def test_a_session_that_cannot_be_saved_after_the_view_is_a_503(user, settings, debug):
    """The token page stores the new key in the session, which SessionMiddleware saves after
    the view: the database fails there, in a middleware, where Django calls handler500
    (and with DEBUG shows its own 500 page instead)."""
    settings.DEBUG = debug
    client = Client(raise_request_exception=False)
    client.force_login(user)
    with mock.patch.object(SessionStore, "save", side_effect=outage_error()):
        response = client.post(reverse("api:token"), {"action": "create"})
    assert_unavailable_page(response, sent=True)


@pytest.mark.django_db(transaction=True)
def test_the_outage_is_logged_once_not_at_every_request(user, tmp_path, caplog):
    client = Client()
    client.force_login(user)
    with caplog.at_level(logging.WARNING, logger="petsite.outages"), database_unreachable(tmp_path):
        for _ in range(5):
            assert client.get(reverse("classifier:gallery")).status_code == 503
    outage_lines = [r for r in caplog.records if r.name == "petsite.outages"]
    assert len(outage_lines) == 1
    assert "database is unreachable" in outage_lines[0].getMessage()
    assert not [r for r in caplog.records if r.name == "django.request" and r.levelno >= logging.ERROR]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="petsite.outages"):
        assert client.get(reverse("classifier:gallery")).status_code == 200
    (back,) = [r for r in caplog.records if r.name == "petsite.outages"]
    assert "answers again" in back.getMessage()
    assert "5 request(s)" in back.getMessage()


def test_only_unreachable_services_count_as_outages():
    assert unreachable_service(outage_error()) == DATABASE
    locked = sqlite3.connect(":memory:")
    try:
        locked.execute("SELECT * FROM no_such_table")
    except sqlite3.OperationalError as cause:
        bug = OperationalError(str(cause))
        bug.__cause__ = cause
    assert unreachable_service(bug) is None  # a programming error stays a 500 that someone sees
    assert unreachable_service(IntegrityError("duplicate key")) is None
    assert unreachable_service(RuntimeError("boom")) is None
    from redis.exceptions import ConnectionError as RedisConnectionError

    assert unreachable_service(RedisConnectionError("Connection refused")) == CACHE


def test_a_bug_is_still_a_500_without_any_claim_that_uploads_are_safe(db):
    response = errors.server_error(RequestFactory().get("/"))
    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in page
    assert "safe" not in page
    assert "is lost" not in page
    assert "Log out" not in page
    api = errors.server_error(RequestFactory().get("/api/images/"))
    assert api.status_code == 500
    assert api["Content-Type"] == PROBLEM


# --- Error bodies under /api/ ------------------------------------------------------------------


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {tokens.issue_token(user).key}")
    return client


def raw_upload(client, url: str, parts: list[tuple[bytes, bytes]]):
    """A multipart body written by hand: (file name, content) per part named "image"."""
    boundary = b"PetsiteBoundary7MA4YWxk"
    body = b"".join(
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="image"; filename="' + name
        + b'"\r\nContent-Type: image/jpeg\r\n\r\n' + content + b"\r\n"
        for name, content in parts
    ) + b"--" + boundary + b"--\r\n"
    return client.generic("POST", url, body, content_type=f"multipart/form-data; boundary={boundary.decode()}")


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_an_unknown_api_url_is_a_json_404(api, settings, debug):
    settings.DEBUG = debug  # bin/run's DEBUG answers its own HTML 404 page elsewhere
    body = assert_problem(api.get("/api/no-such-thing/"), 404, "not_found")
    assert_problem(api.post("/api/images", {}), 404, "not_found")  # no slash: no redirect that would drop the body
    assert "nothing at this address" in body["detail"]
    if not debug:
        assert "We could not find that page" in Client().get("/no-such-page/").content.decode()  # pages stay pages


def test_too_many_files_is_a_json_400(api, settings):
    parts = [(f"{i}.jpg".encode(), b"x") for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)]
    assert_problem(raw_upload(api, reverse("api:image-list"), parts), 400, "too_many_files")
    assert not PetImage.objects.exists()


def test_a_request_that_is_too_large_is_a_json_413(api, settings):
    response = api.generic("POST", reverse("api:image-list"), b"", content_type="multipart/form-data; boundary=x",
                           CONTENT_LENGTH=str(settings.PETSITE_MAX_REQUEST_BYTES + 1))
    assert_problem(response, 413, "too_large")


def test_a_wrong_method_is_json(api):
    response = api.delete(reverse("api:image-list"))
    assert response.status_code == 405
    assert response["Content-Type"].split(";")[0] in ("application/json", PROBLEM)


def test_a_bug_in_an_api_view_is_a_json_500(api):
    with mock.patch("api.views.own_images", side_effect=RuntimeError("injected")):
        response = api.get(reverse("api:image-list"))
    assert_problem(response, 500, "server_error")


@pytest.mark.parametrize("length", [300, 1000])
def test_a_long_file_name_is_kept_shortened_with_its_extension(api, user, length):
    from tests.helpers import image_bytes

    name = "a" * (length - 4) + ".jpg"
    response = raw_upload(api, reverse("api:image-list"), [(name.encode(), image_bytes())])
    assert response.status_code == 202, response.content[:500]
    (outcome,) = response.json()["files"]
    pet = PetImage.objects.get(owner=user)
    assert len(pet.original_name) <= 255
    assert pet.original_name.endswith(".jpg")
    assert pet.original_name.startswith("aaa")
    assert outcome["name"] == pet.original_name

    client = Client()
    client.force_login(user)
    page = client.get(reverse("classifier:detail", args=[pet.pk])).content.decode()
    assert "a" * 100 not in page.replace(f'title="{pet.original_name}"', "")  # shown shortened…
    assert "…aaaaaaaa.jpg" in page  # …with its end and extension


# --- Refusals in one line ---------------------------------------------------------------------


def test_a_permission_refusal_is_logged_in_one_line(client, user, caplog):
    client.force_login(user)
    with caplog.at_level(logging.INFO):
        response = client.get(reverse("classifier:review_dashboard"))
    assert response.status_code == 403
    assert "You may not open this page" in response.content.decode()
    refusals = [r for r in caplog.records if "Forbidden" in r.getMessage()]
    assert len(refusals) == 1, [(r.name, r.getMessage()) for r in refusals]
    assert refusals[0].exc_info is None, [(r.name, r.getMessage()) for r in refusals]


def test_a_csrf_refusal_is_the_sites_page_in_one_line(user, caplog):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    with caplog.at_level(logging.INFO):
        response = client.post(reverse("classifier:upload"), {"image": upload()})
    assert response.status_code == 403
    assert "Please reload the page and try again" in response.content.decode()
    refusals = [r for r in caplog.records if "Forbidden" in r.getMessage()]
    assert len(refusals) == 1
    assert refusals[0].exc_info is None
    assert not PetImage.objects.exists()


def test_404_page(client, user):
    client.force_login(user)
    response = client.get(reverse("classifier:detail", args=[999999]))
    page = response.content.decode()
    assert response.status_code == 404
    assert "We could not find that page" in page
    assert "Upload a photo" in page


def test_403_page(client, user):
    client.force_login(user)
    response = client.get(reverse("classifier:review_dashboard"))
    page = response.content.decode()
    assert response.status_code == 403
    assert "You may not open this page" in page
    assert "My pets" in page


def _stored_image(user) -> PetImage:

    file = upload()
    return store_photo(user, file)
