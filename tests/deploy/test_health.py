"""/healthz and /readyz: each failure with a real broken dependency (a port nobody listens
on, a folder that cannot be made), answered with 503 and which check failed."""
from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.core.files.base import ContentFile

from petsite.celery import app
from registry.models import ModelVersion
from tests.test_settings import run

from .conftest import closed_port

pytestmark = pytest.mark.django_db


def test_liveness_touches_nothing(client, settings):
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "petsite.storage.MediaStorage",
                                                          "OPTIONS": {"bucket_name": "nowhere"}}}
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert "no-cache" in response["Cache-Control"]


def test_ready_when_database_broker_and_storage_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body.pop("workers")  # tests/classifier/test_workers.py
    assert body == {
        "status": "ok", "failing": [], "model": {"active": False},
        "checks": {"database": {"ok": True}, "broker": {"ok": True}, "storage": {"ok": True}},
    }


def test_readiness_says_whether_a_model_is_active_without_failing_on_it(client):
    """A site without a model still takes uploads (they wait), so it stays in the load balancer."""
    assert client.get("/readyz").json()["model"] == {"active": False}
    ModelVersion.objects.create(name="v1", file=ContentFile(b"-", name="v1.pt"), is_active=True)
    response = client.get("/readyz")
    assert (response.status_code, response.json()["model"]) == (200, {"active": True})


@pytest.fixture
def broker_on_a_closed_port(monkeypatch):
    # Celery reads CELERY_BROKER_URL from the environment before its configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{closed_port()}/0")
    assert app.conf.broker_url.startswith("redis://127.0.0.1:")


def test_not_ready_without_the_broker(client, broker_on_a_closed_port):
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["failing"]) == ("unavailable", ["broker"])
    assert body["checks"]["broker"] == {"ok": False, "error": "OperationalError"}


def test_not_ready_when_the_media_folder_cannot_be_made(client, settings, tmp_path):
    (tmp_path / "a-file").write_text("in the way")
    settings.MEDIA_ROOT = tmp_path / "a-file" / "media"
    response = client.get("/readyz")
    assert (response.status_code, response.json()["failing"]) == (503, ["storage"])
    assert response.json()["checks"]["storage"] == {"ok": False, "error": "NotADirectoryError"}


def test_probes_answer_a_load_balancer_over_plain_http_by_any_host(client, settings):
    """Load balancers ask by the machine's address over HTTP: no host check, no HTTPS redirect."""
    settings.ALLOWED_HOSTS = ["pets.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/", HTTP_HOST="10.0.3.7").status_code == 400  # the site itself refuses that host
    for probe in ("/healthz", "/readyz"):
        assert client.get(probe, HTTP_HOST="10.0.3.7").status_code == 200
    assert client.post("/readyz", HTTP_HOST="10.0.3.7").status_code == 405


def test_not_ready_without_the_database(tmp_path):
    """A process whose database does not answer (PostgreSQL on a closed port) says so, without a 500."""
    code = (
        "import django, json; django.setup(); from django.test import Client; "
        "r = Client().get('/readyz', HTTP_HOST='10.0.3.7'); print(r.status_code, json.dumps(r.json()))"
    )
    result = run(["-c", code], tmp_path, SECRET_KEY="k" * 50, DATABASE_URL=f"postgres://u@127.0.0.1:{closed_port()}/x",
                 CELERY_BROKER_URL=settings.CELERY_BROKER_URL)  # the run's broker: only the database is away
    assert result.returncode == 0, result.stderr
    status, body = result.stdout.strip().splitlines()[-1].split(" ", 1)
    body = json.loads(body)
    assert (status, body["failing"]) == ("503", ["database"])
    assert body["checks"]["database"] == {"ok": False, "error": "OperationalError"}
    assert body["model"] == {"active": False, "error": "OperationalError"}
