"""Webhook deliveries against a real receiver on 127.0.0.1: signed, the image as the API shows it,
retried with the recorded back-off, never following redirects, failed after the last try.

Tasks run here with ``apply()`` (in this process); the messages they would send are
recorded instead (``sent``), so a test sees what would be scheduled and when.
"""
import ipaddress
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from classifier.models import PetImage
from tests.helpers import store_photo
from tests.webhooks.conftest import finish
from webhooks import services, tasks
from webhooks.models import Delivery


@pytest.fixture
def sent(monkeypatch) -> list[tuple[int, float | None]]:
    """The (delivery id, countdown) of every message the webhook tasks send."""
    messages = []
    monkeypatch.setattr(tasks.deliver, "apply_async", lambda args, countdown=None: messages.append((*args, countdown)))
    return messages


@pytest.fixture
def endpoint(user, receiver):
    return services.register(user, receiver.url, "http://testserver/")[0]


def finished_delivery(user, model_version, django_capture_on_commit_callbacks, failed=False) -> Delivery:
    """An image of ``user`` finished by the worker's path; its delivery, once the finish committed."""
    pet = store_photo(user)
    with django_capture_on_commit_callbacks(execute=True):
        finish(pet, model_version, failed=failed)
    return Delivery.objects.get(image=pet)


def due_now(delivery: Delivery) -> None:
    """As if its next try's time had come."""
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


def verified(endpoint, request) -> dict:
    """The body of a received request, after checking its signature as a receiver would."""
    return Webhook(endpoint.secret).verify(request.body, request.headers)


def test_a_finished_image_is_posted_signed_with_the_image_as_the_api_shows_it(
    owner, user, model_version, endpoint, receiver, sent, django_capture_on_commit_callbacks
):
    delivery = finished_delivery(user, model_version, django_capture_on_commit_callbacks)
    assert sent == [(delivery.pk, None)]  # sent once the finish committed
    tasks.deliver.apply((delivery.pk,))

    (request,) = receiver.requests
    body = verified(endpoint, request)
    assert request.headers["webhook-id"] == delivery.message_id
    assert request.headers["content-type"] == "application/json"
    assert body["type"] == "image.finished"
    api_view = owner.get(reverse("api:image-detail", args=[delivery.image_id])).json()
    assert body["data"] == api_view
    assert body["data"]["status"] == "done"
    assert body["data"]["url"].startswith("http://testserver/")
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.next_attempt_at is None


def test_a_failed_image_is_delivered_too(user, model_version, endpoint, receiver, sent,
                                         django_capture_on_commit_callbacks):
    delivery = finished_delivery(user, model_version, django_capture_on_commit_callbacks, failed=True)
    tasks.deliver.apply((delivery.pk,))
    assert verified(endpoint, receiver.requests[0])["data"]["status"] == "failed"


def test_no_endpoint_no_delivery(user, model_version, sent, django_capture_on_commit_callbacks):
    pet = store_photo(user)
    with django_capture_on_commit_callbacks(execute=True):
        finish(pet, model_version)
    assert (Delivery.objects.count(), sent) == (0, [])


def test_a_webhook_that_cannot_be_recorded_never_undoes_the_classification(
    user, model_version, endpoint, monkeypatch, django_capture_on_commit_callbacks
):
    def broken(pk):  # a database error: on PostgreSQL it spoils the transaction, but for the savepoint
        Delivery.objects.create(endpoint_id=None, event="image.finished", payload={})

    monkeypatch.setattr(services, "record_image_finished", broken)
    pet = store_photo(user)
    finish(pet, model_version)
    pet.refresh_from_db()
    assert pet.status == PetImage.Status.DONE
    assert Delivery.objects.count() == 0


def _delay_after_try(delivery: Delivery) -> float:
    delivery.refresh_from_db()
    return (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()


def test_a_failure_is_retried_with_the_recorded_back_off_then_delivered(
    user, model_version, endpoint, receiver, sent, django_capture_on_commit_callbacks
):
    receiver.statuses = [500, 503]
    delivery = finished_delivery(user, model_version, django_capture_on_commit_callbacks)
    sent.clear()

    tasks.deliver.apply((delivery.pk,))
    assert 9 <= _delay_after_try(delivery) <= 11  # 10 s, with up to 10 % jitter
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert delivery.last_error == "Answered 500 Internal Server Error"
    ((pk, countdown),) = sent  # a short delay: sent with a countdown
    assert pk == delivery.pk
    assert 9 <= countdown <= 11
    tasks.deliver.apply((delivery.pk,))  # the countdown's message, were it early: not due, nothing sent
    assert len(receiver.requests) == 1

    due_now(delivery)
    sent.clear()
    tasks.deliver.apply((delivery.pk,))
    assert 54 <= _delay_after_try(delivery) <= 66  # 1 min
    assert (delivery.attempts, delivery.last_status_code) == (2, 503)
    assert sent == []  # longer than a countdown may be: the beat sends it when due
    assert tasks.send_due.apply().get() == 0
    due_now(delivery)
    assert tasks.send_due.apply().get() == 1
    assert sent == [(delivery.pk, None)]

    tasks.deliver.apply((delivery.pk,))
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "delivered", 3, 200, "")
    assert [verified(endpoint, r)["type"] for r in receiver.requests] == ["image.finished"] * 3
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.message_id}  # one id for every try


def test_a_receiver_that_never_answers_2xx_ends_failed_after_the_last_try(
    user, model_version, endpoint, receiver, sent, django_capture_on_commit_callbacks
):
    receiver.final = 500
    delivery = finished_delivery(user, model_version, django_capture_on_commit_callbacks)
    delays = []
    for _ in services.RETRY_DELAYS:
        tasks.deliver.apply((delivery.pk,))
        delays.append(_delay_after_try(delivery))
        due_now(delivery)
    tasks.deliver.apply((delivery.pk,))  # the last try
    for delay, planned in zip(delays, services.RETRY_DELAYS, strict=True):
        assert planned * (1 - services.JITTER) <= delay <= planned * (1 + services.JITTER)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.next_attempt_at) == ("failed", 6, None)
    assert len(receiver.requests) == 6
    tasks.deliver.apply((delivery.pk,))  # over: nothing more is sent
    assert tasks.send_due.apply().get() == 0
    assert len(receiver.requests) == 6


def test_a_redirect_is_not_followed(user, model_version, endpoint, receiver, sent, django_capture_on_commit_callbacks):
    receiver.final, receiver.location = 307, receiver.url + "/elsewhere"
    delivery = finished_delivery(user, model_version, django_capture_on_commit_callbacks)
    tasks.deliver.apply((delivery.pk,))
    assert [r.path for r in receiver.requests] == ["/hook"]
    delivery.refresh_from_db()
    assert (delivery.state, delivery.last_status_code) == ("pending", 307)


def test_an_address_that_became_private_is_not_posted_to(user, model_version, endpoint, receiver, sent, settings,
                                                         django_capture_on_commit_callbacks):
    delivery = finished_delivery(user, model_version, django_capture_on_commit_callbacks)
    settings.PETSITE_WEBHOOKS_ALLOW_PRIVATE = False  # as if its name now resolved to a private address
    tasks.deliver.apply((delivery.pk,))
    assert receiver.requests == []
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.last_error.startswith("Not sent: 127.0.0.1 is a private, loopback")


def test_a_name_that_resolves_elsewhere_at_connection_time_reaches_nothing(
        user, model_version, endpoint, receiver, sent, settings, monkeypatch, django_capture_on_commit_callbacks):
    """DNS rebinding: the check sees a public address, the connection would go to loopback."""
    delivery = finished_delivery(user, model_version, django_capture_on_commit_callbacks)
    settings.PETSITE_WEBHOOKS_ALLOW_PRIVATE = False
    monkeypatch.setattr(services, "check_url", lambda url: [ipaddress.ip_address("93.184.216.34")])
    tasks.deliver.apply((delivery.pk,))
    assert receiver.requests == []
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.last_error.startswith("InvalidIPAddress")


def test_a_lost_message_is_sent_again_by_the_beat(user, model_version, endpoint, receiver, sent,
                                                  django_capture_on_commit_callbacks):
    delivery = finished_delivery(user, model_version, django_capture_on_commit_callbacks)
    sent.clear()  # the first message is lost
    assert tasks.send_due.apply().get() == 1
    assert sent == [(delivery.pk, None)]
    tasks.deliver.apply((delivery.pk,))
    tasks.deliver.apply((delivery.pk,))  # a second message for it: the claim makes it harmless
    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("delivered", 1)


def test_a_timestamp_and_a_signature_per_try_with_the_current_secret(user, model_version, endpoint, receiver, sent,
                                                                    django_capture_on_commit_callbacks):
    receiver.statuses = [500]
    delivery = finished_delivery(user, model_version, django_capture_on_commit_callbacks)
    tasks.deliver.apply((delivery.pk,))
    services.rotate_secret(endpoint)
    due_now(delivery)
    tasks.deliver.apply((delivery.pk,))
    first, second = receiver.requests
    assert verified(endpoint, second)["data"]["id"] == delivery.image_id  # signed with the new secret
    with pytest.raises(Exception, match="No matching signature"):
        verified(endpoint, first)
    assert abs(int(second.headers["webhook-timestamp"]) - timezone.now().timestamp()) < 60


def test_retry_delays_are_what_the_docs_say():
    assert services.RETRY_DELAYS == (10, 60, 300, 1800, 7200)
    assert services.retry_delay(len(services.RETRY_DELAYS) + 1) is None
    assert timedelta(seconds=services.retry_delay(5)) >= timedelta(hours=1.8)
