"""``GET /api/images/<id>/?wait=N``: at once when finished, else woken when it finishes, else after N s.

The waits here finish long before their N (a second or less of 20): an answer before N
proves the wake-up, whatever the machine's speed. The periodic re-read is pushed past N
(``RECHECK_SECONDS``), so that only the wake-up (or the fallback's poll) can answer early.
"""
import threading
import time

import pytest
from django.urls import reverse

from api import waiting
from classifier.models import PetImage
from tests.helpers import store_photo
from tests.webhooks.conftest import finish

LONG = 20  # seconds asked for; the tests' images finish within about one


def wait_url(pet, seconds) -> str:
    return reverse("api:image-detail", args=[pet.pk]) + f"?wait={seconds}"


@pytest.fixture
def no_recheck(monkeypatch):
    monkeypatch.setattr(waiting, "RECHECK_SECONDS", 60.0)


def finish_soon(pet, version, after: float = 0.5) -> threading.Thread:
    """Finish ``pet`` from another thread (its own database connection, as a worker's) after ``after`` s."""
    def run():
        from django.db import connection

        time.sleep(after)
        try:
            finish(pet, version)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_finished_image_answers_at_once(owner, make_image):
    pet = make_image()
    started = time.monotonic()
    response = owner.get(wait_url(pet, 30))
    assert response.status_code == 200
    assert response.json()["finished"] is True
    assert time.monotonic() - started < 5  # not the 30 s it asked for


@pytest.mark.parametrize("value", ["31", "-1", "abc", "1.5", ""])
def test_a_wait_outside_0_to_30_is_a_400_problem(owner, make_image, value):
    response = owner.get(wait_url(make_image(), value))
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["code"]) == (400, "invalid")
    assert "0 to 30" in body["detail"]


def test_an_unfinished_image_answers_after_the_wait_with_its_state(owner, user, model_version):
    pet = store_photo(user)
    started = time.monotonic()
    response = owner.get(wait_url(pet, 1))
    assert time.monotonic() - started >= 1
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["finished"]) == ("pending", False)


@pytest.mark.django_db(transaction=True)
def test_the_answer_comes_when_the_image_finishes(owner, user, model_version, no_recheck):
    pet = store_photo(user, send=False)  # finished here, by no worker
    thread = finish_soon(pet, model_version)
    started = time.monotonic()
    response = owner.get(wait_url(pet, LONG))
    waited = time.monotonic() - started
    thread.join()
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["finished"]) == ("done", True)
    assert waited < LONG / 2, f"woken after {waited:.1f} s: the finish did not wake the request"


@pytest.mark.django_db(transaction=True)
def test_without_redis_the_wait_reads_the_database_with_a_back_off(owner, user, model_version, settings, monkeypatch):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"  # the discard port: nothing answers
    reads = []
    real_read = waiting._read
    monkeypatch.setattr(waiting, "_read", lambda pk: reads.append(time.monotonic()) or real_read(pk))
    pet = store_photo(user, send=False)  # finished here, by no worker
    thread = finish_soon(pet, model_version, after=1.0)
    response = owner.get(wait_url(pet, LONG))
    thread.join()
    assert response.json()["finished"] is True
    gaps = [later - earlier for earlier, later in zip(reads, reads[1:], strict=False)]
    assert 3 <= len(reads) < 40, reads  # a back-off: not a busy loop, and not one read per N seconds
    assert gaps[0] >= waiting.POLL_FIRST * 0.9
    assert max(gaps) <= waiting.POLL_MAX + 1.0


@pytest.mark.django_db(transaction=True)
def test_a_finish_just_before_subscribing_is_not_lost(owner, user, model_version, no_recheck, monkeypatch):
    """The image finishes (and its wake-up is published to nobody) between the first read
    and the subscription: the read after subscribing must see it."""
    pet = store_photo(user, send=False)  # finished here, by no worker
    real_channel = waiting.channel
    finished = []

    def channel_finishing_first(pk):
        if not finished:
            finished.append(pk)
            finish(PetImage.objects.get(pk=pk), model_version)
        return real_channel(pk)

    monkeypatch.setattr(waiting, "channel", channel_finishing_first)
    started = time.monotonic()
    response = owner.get(wait_url(pet, LONG))
    assert finished == [pet.pk]
    assert response.json()["finished"] is True
    assert time.monotonic() - started < LONG / 2


def test_a_user_with_too_many_waits_gets_429_and_the_server_503(owner, user, other_user, settings, model_version):
    settings.PETSITE_WAIT_MAX_PER_USER, settings.PETSITE_WAIT_MAX_WAITERS = 1, 2
    pet = store_photo(user)
    with waiting.waiter_slot(user.pk):
        refused = owner.get(wait_url(pet, 5))
        assert refused.status_code == 429
        assert refused["Content-Type"] == "application/problem+json"
        assert (refused["Retry-After"], refused.json()["code"]) == ("1", "too_many_waits")
        assert owner.get(wait_url(pet, 0)).status_code == 200  # no wait asked: no slot needed
        with waiting.waiter_slot(other_user.pk):
            busy = owner.get(wait_url(pet, 5))
            assert (busy.status_code, busy.json()["code"], busy["Retry-After"]) == (503, "too_many_waiting", "1")
    assert waiting._waiting == {}  # every slot given back
