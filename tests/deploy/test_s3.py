"""Media on S3 (a moto server on a free local port): photos stay private, the image views
redirect to signed URLs that expire, deletion removes every object, and the readiness
probe notices a bucket that is not there."""
from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from classifier.models import PetImage
from petsite.storage import MediaStorage
from tests.helpers import upload

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
    assert photo_files(pet) <= s3.keys() and len(photo_files(pet)) == 2  # the photo and its thumbnail

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
