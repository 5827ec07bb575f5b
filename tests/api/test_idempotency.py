"""Idempotency-Key on uploads: the first answer replayed, never done twice, refused when misused."""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from api.idempotency import LIFETIME, RUNNING_AT_MOST
from api.models import IdempotentRequest
from classifier.models import PetImage
from tests.helpers import image_bytes, upload

IMAGES = reverse("api:image-list")
PROBLEM = "application/problem+json"
KEY = "5f0c6d3e-9a51-4be4-8c43-2f1f0b9e6a11"


def send(client, files, key=KEY):
    parts = [upload(name, content) for name, content in files]
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(IMAGES, {"image": parts}, format="multipart", **headers)


@pytest.fixture
def photos() -> list[tuple[str, bytes]]:
    return [("rex.jpg", image_bytes(mark=11)), ("tom.jpg", image_bytes(mark=12))]


def test_a_repeat_replays_the_first_answer_and_uploads_nothing_again(owner, user, settings, photos):
    settings.PETSITE_UPLOAD_RATE = "2/d"  # two photos: a second real upload would be a 429
    first = send(owner, photos)
    assert first.status_code == 202
    assert "Idempotent-Replayed" not in first
    again = send(owner, photos)
    assert again.status_code == 202
    assert again.content == first.content  # the same answer: created stays true, status as it was
    assert again["Location"] == first["Location"]
    assert again["Content-Type"] == first["Content-Type"]
    assert again["Idempotent-Replayed"] == "true"
    assert [f["created"] for f in again.json()["files"]] == [True, True]
    assert PetImage.objects.filter(owner=user).count() == 2
    assert again["RateLimit"].startswith('"upload";r=0;')  # the allowance was spent once, by the first
    assert send(owner, photos, key="another-key").status_code == 429  # a new key is a new upload


def test_without_a_key_a_repeat_is_a_new_answer(owner, user, photos):
    assert [f["created"] for f in send(owner, photos, key=None).json()["files"]] == [True, True]
    assert [f["created"] for f in send(owner, photos, key=None).json()["files"]] == [False, False]


def test_the_same_key_with_other_files_is_a_422(owner, user, photos):
    assert send(owner, photos).status_code == 202
    for files in [photos[:1], [("other.jpg", photos[0][1]), photos[1]], list(reversed(photos))]:
        refused = send(owner, files)
        assert refused.status_code == 422
        assert refused["Content-Type"] == PROBLEM
        assert refused.json()["code"] == "idempotency_key_reused"
    assert PetImage.objects.filter(owner=user).count() == 2


def test_a_key_still_running_is_a_409_until_its_request_is_given_up(owner, user, photos):
    record = IdempotentRequest.objects.create(user=user, key=KEY, fingerprint=fingerprint_of(owner, photos))
    busy = send(owner, photos)
    assert busy.status_code == 409
    assert (busy["Content-Type"], busy.json()["code"]) == (PROBLEM, "idempotency_key_in_use")
    assert not PetImage.objects.exists()

    IdempotentRequest.objects.filter(pk=record.pk).update(created_at=timezone.now() - RUNNING_AT_MOST - timedelta(1))
    taken_over = send(owner, photos)  # the first died with its process
    assert taken_over.status_code == 202
    assert PetImage.objects.filter(owner=user).count() == 2


def fingerprint_of(client, files) -> str:
    """The fingerprint the API computes for ``files``: send them once with a throwaway key."""
    send(client, files, key="probe")
    record = IdempotentRequest.objects.get(key="probe")
    PetImage.objects.all().delete()
    return record.fingerprint


def test_keys_are_kept_24_hours(owner, user, photos):
    first = send(owner, photos)
    IdempotentRequest.objects.update(created_at=timezone.now() - LIFETIME - timedelta(seconds=1))
    later = send(owner, [("new.jpg", image_bytes(mark=13))])  # the old key's files do not matter any more
    assert later.status_code == 202
    assert "Idempotent-Replayed" not in later
    assert later["Location"] != first["Location"]
    assert IdempotentRequest.objects.count() == 1  # the expired row went


def test_keys_are_per_user(owner, other, photos):
    assert send(owner, photos).status_code == 202
    theirs = send(other, photos)
    assert theirs.status_code == 202
    assert "Idempotent-Replayed" not in theirs


def test_answers_that_did_nothing_are_not_kept(owner, user, settings, photos):
    settings.PETSITE_UPLOAD_RATE = "1/d"
    assert send(owner, photos[:1], key="spend").status_code == 202
    assert send(owner, photos[1:]).status_code == 429  # refused before anything was done
    assert not IdempotentRequest.objects.filter(key=KEY).exists()
    settings.PETSITE_UPLOAD_RATE = "5/d"
    assert send(owner, photos[1:]).status_code == 202  # the key is free: the retry goes through


def test_a_refusal_of_the_files_is_kept_and_replayed(owner, photos):
    empty = [("e.jpg", b"")]
    first = send(owner, empty)
    assert first.status_code == 400
    again = send(owner, empty)
    assert (again.status_code, again.content, again["Idempotent-Replayed"]) == (400, first.content, "true")


@pytest.mark.parametrize("key", ["", "   ", "x" * 256, "clé"])
def test_a_malformed_key_is_a_400(owner, photos, key):
    response = send(owner, photos, key=key)
    assert response.status_code == 400
    assert (response["Content-Type"], response.json()["code"]) == (PROBLEM, "invalid_idempotency_key")
    assert not PetImage.objects.exists()


def test_a_quoted_key_is_the_same_key(owner, photos):
    assert send(owner, photos, key=f'"{KEY}"').status_code == 202
    assert send(owner, photos)["Idempotent-Replayed"] == "true"
