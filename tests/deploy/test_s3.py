"""Media on S3 (a moto server on a free local port): photos stay private, the image views
redirect to signed URLs that expire, deletion removes every object, and the readiness
probe notices a bucket that is not there."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from classifier.models import PetImage
from ml.breeds import BREED_KEYS
from ml.checkpoints import load_checkpoint
from petsite.celery import app
from petsite.storage import MediaStorage
from registry.services import local_checkpoint, register_model
from tests.conftest import BASE_DIR, WorkerProcess, worker_env
from tests.helpers import upload, wait_for

from .conftest import REGION


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def photo_files(pet: PetImage) -> set[str]:
    return {field.name for field in (pet.image, pet.thumbnail, pet.heatmap) if field}


def test_uploads_are_private_objects_served_by_signed_urls_that_expire(client, user, other_user, s3, settings):
    client.force_login(user)
    assert client.post(reverse("classifier:upload"), {"image": upload()}).status_code == 302
    pet = PetImage.objects.get()
    assert photo_files(pet) <= s3.keys()
    assert len(photo_files(pet)) == 2

    for name, field in [("classifier:image_file", pet.image), ("classifier:thumbnail", pet.thumbnail)]:
        response = client.get(reverse(name, args=[pet.pk]))
        assert response.status_code == 302
        url = response["Location"]
        assert url.startswith(f"{settings.STORAGES['default']['OPTIONS']['endpoint_url']}/{s3.name}/{field.name}?")
        assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == [str(settings.PETSITE_SIGNED_URL_SECONDS)]
        assert response["Cache-Control"] == f"private, max-age={settings.PETSITE_SIGNED_URL_SECONDS // 2}"
        # The signed URL works; the same object without a signature is refused.
        stored = s3.client.get_object(Bucket=s3.name, Key=field.name)["Body"].read()
        assert fetch(url) == (200, stored)
        assert fetch(url.split("?")[0])[0] == 403

    client.force_login(other_user)  # no redirect, no URL: the photo does not exist for them
    assert client.get(reverse("classifier:image_file", args=[pet.pk])).status_code == 404


def test_deleting_a_photo_removes_its_objects(client, user, s3, django_capture_on_commit_callbacks):
    client.force_login(user)
    client.post(reverse("classifier:upload"), {"image": upload()})
    pet = PetImage.objects.get()
    files = photo_files(pet)
    assert files <= s3.keys()
    with django_capture_on_commit_callbacks(execute=True):  # the files go once the deletion is committed
        assert client.post(reverse("classifier:delete", args=[pet.pk])).status_code == 302
    assert not PetImage.objects.exists()
    assert files.isdisjoint(s3.keys())


def test_signed_urls_can_name_the_address_browsers_use(s3_env):
    """In Compose the processes reach MinIO as minio:9000, browsers as localhost:9000."""
    options = {"bucket_name": "media", "endpoint_url": s3_env["AWS_S3_ENDPOINT_URL"], "region_name": REGION,
               "signature_version": "s3v4", "access_key": "testing", "secret_key": "testing"}
    url = MediaStorage(**options, public_endpoint_url="http://localhost:9000", querystring_expire=60).url("a/b.jpg")
    assert url.startswith("http://localhost:9000/media/a/b.jpg?")
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["60"]
    assert MediaStorage(**options).url("a/b.jpg").startswith(f"{s3_env['AWS_S3_ENDPOINT_URL']}/media/a/b.jpg?")


@pytest.mark.django_db
def test_readiness_needs_the_bucket(client, s3, settings):
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json()
    settings.STORAGES = {**settings.STORAGES, "default": {
        **settings.STORAGES["default"],
        "OPTIONS": {**settings.STORAGES["default"]["OPTIONS"], "bucket_name": "no-such-bucket"},
    }}
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["storage"]
    assert body["checks"]["storage"] == {"ok": False, "error": "ClientError"}
    assert body["checks"]["database"] == body["checks"]["broker"] == {"ok": True}


# --- the whole flow with a real worker on S3 ---------------------------------------------


@pytest.fixture
def s3_worker(s3, s3_env, transactional_db):
    """A real Celery worker on S3 (JSON logs), on a queue of its own, which this process sends to."""
    queue = f"petsite-s3-{uuid.uuid4().hex[:8]}"
    node = f"s3-{queue}@{socket.gethostname()}"
    default_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = WorkerProcess(worker_env(**s3_env, CELERY_TASK_DEFAULT_QUEUE=queue, LOG_FORMAT="json"), args=("-n", node))
    worker.node = node
    try:
        if not worker.ready.wait(timeout=90):
            pytest.fail("Celery worker did not start:\n" + worker.log())
        yield worker
    finally:
        worker.stop()
        app.conf.task_default_queue = default_queue


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_upload_classify_view_and_delete_through_a_worker_on_s3(client, user, s3, s3_worker, checkpoint_file):
    # A model registered into S3, and loaded from there (the worker reads it; training copies it to a local file).
    version = register_model(checkpoint_file, name="s3-model", activate=True)
    assert version.file.name in s3.keys()
    with local_checkpoint(version) as path:
        assert load_checkpoint(path).classes == list(BREED_KEYS)
    assert not path.exists()

    client.force_login(user)
    request_id = uuid.uuid4().hex
    client.post(reverse("classifier:upload"), {"image": upload()}, HTTP_X_REQUEST_ID=request_id)
    pet = PetImage.objects.get()
    try:
        wait_for(lambda: PetImage.objects.filter(pk=pet.pk, status=PetImage.Status.DONE).exists(), timeout=120,
                 what="the worker to classify the photo")
    except AssertionError:
        raise AssertionError(s3_worker.log()) from None
    pet.refresh_from_db()
    assert pet.model_version == version
    assert pet.predicted_breed in BREED_KEYS

    # The photo's page asks the worker for the heatmap (its script's POST), which lands in S3 and is
    # served like the photo.
    assert client.get(reverse("classifier:detail", args=[pet.pk])).status_code == 200
    assert client.post(reverse("classifier:explain", args=[pet.pk])).status_code == 202
    wait_for(lambda: PetImage.objects.get(pk=pet.pk).heatmap, timeout=120, what="the heatmap")
    pet.refresh_from_db()
    assert photo_files(pet) <= s3.keys()
    assert len(photo_files(pet)) == 3
    response = client.get(reverse("classifier:heatmap", args=[pet.pk]))
    assert response.status_code == 302
    status, content = fetch(response["Location"])
    assert status == 200
    assert content.startswith(b"\xff\xd8")

    # The worker's log lines about this upload carry the id of the request that stored it.
    events = [json.loads(line) for line in s3_worker.lines if line.startswith("{")]
    assert any(e["request_id"] == request_id and e["logger"].startswith("celery") for e in events), s3_worker.log()

    # The worker answers a ping, as Compose's health check asks it.
    ping = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "petsite", "inspect", "ping", "--destination", s3_worker.node,
         "--timeout", "10"], cwd=BASE_DIR, env=worker_env(), capture_output=True, text=True, timeout=120,
    )
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert "pong" in ping.stdout, ping.stdout + ping.stderr

    files = photo_files(pet)
    client.post(reverse("classifier:delete", args=[pet.pk]))
    assert files.isdisjoint(s3.keys())
