"""Webhooks: endpoints, the deliveries written when images finish, and each try to send one.

Standard Webhooks (https://www.standardwebhooks.com/): a POST of JSON
``{"type", "timestamp", "data"}`` with the headers ``webhook-id`` (the delivery's, the
same at every try, so a receiver can drop repeats), ``webhook-timestamp`` (the try's) and
``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body`` with the
endpoint's secret), signed by the ``standardwebhooks`` package, which receivers use to
verify too.

A try is claimed first (one conditional UPDATE, like a classification's claim: two
messages for one delivery send it once) and counted then, so a worker that dies mid-try
still uses one up; the claim lasts ``LEASE``, after which the beat task tries again.
2xx is delivered; anything else (another status, a redirect, which is never followed, a
timeout, an address that became private) is tried again after ``RETRY_DELAYS`` (with
jitter) and ends failed after the last. This module sends no task: ``tasks.py`` does.

The address is checked before each try (``addresses.check_url``, whose words the token
page shows) and again as the connection is made: requests-hardened (Saleor's) resolves
the name once, refuses a private or loopback address and connects to the address it
checked, so a name that resolves to a public address for the check and to a private one
for the connection (DNS rebinding) reaches nothing. The answer's body is never read.
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from requests_hardened import Config, Manager
from standardwebhooks.webhooks import Webhook

from api.serializers import ImageSerializer
from classifier.models import PetImage

from .addresses import UnsafeURL, check_url
from .models import Delivery, Endpoint, new_secret

log = logging.getLogger(__name__)

TIMEOUT = 5.0  # seconds a receiver has to answer (connect and read each)
RETRY_DELAYS = (10, 60, 300, 1800, 7200)  # seconds after the 1st, 2nd, ... failed try: 6 tries in all
JITTER = 0.1  # each delay is stretched or shrunk by up to 10 %: failed receivers are not hit in lockstep
LEASE = timedelta(seconds=60)  # a claimed try not recorded by then is tried again (its worker died)
USER_AGENT = "Petsite-Webhooks/1"
State = Delivery.State


# --- Endpoints ------------------------------------------------------------------------------


def endpoint_of(user) -> Endpoint | None:
    return Endpoint.objects.filter(user_id=user.pk).first()


def register(user, url: str, base_url: str) -> tuple[Endpoint, str | None]:
    """Set ``user``'s endpoint to ``url`` (checked by the form); returns it and its secret when
    it is new (shown once), None when only the URL changed (the secret stays)."""
    endpoint, created = Endpoint.objects.update_or_create(user=user, defaults={"url": url, "base_url": base_url})
    return endpoint, endpoint.secret if created else None


def rotate_secret(endpoint: Endpoint) -> str:
    """A new secret; the old one stops signing at once (tries from now on use the new one)."""
    endpoint.secret = new_secret()
    endpoint.secret_rotated_at = timezone.now()
    endpoint.save(update_fields=["secret", "secret_rotated_at"])
    return endpoint.secret


def remove(user) -> bool:
    """Delete ``user``'s endpoint and its deliveries; False when there was none."""
    deleted, _ = Endpoint.objects.filter(user_id=user.pk).delete()
    return bool(deleted)


def recent_deliveries(endpoint: Endpoint, count: int = 20) -> QuerySet[Delivery]:
    return endpoint.deliveries.select_related("image")[:count]


# --- Events: one delivery row each ----------------------------------------------------------


class _SiteRequest(HttpRequest):
    """A request for the site's address ``base_url``: what the API's serializers build
    absolute URLs from, in a worker, which has no request of its own."""

    def __init__(self, base_url: str):
        super().__init__()
        parts = urlsplit(base_url)
        self._base_scheme, self._base_host = parts.scheme, parts.netloc
        self.path = self.path_info = "/"

    def _get_scheme(self) -> str:
        return self._base_scheme

    def get_host(self) -> str:
        return self._base_host


def image_data(pet: PetImage, base_url: str) -> dict:
    """The image as the API shows it (``GET /api/images/<id>/``), URLs absolute on ``base_url``."""
    return dict(ImageSerializer(pet, context={"request": _SiteRequest(base_url)}).data)


def _create(endpoint: Endpoint, event: str, data: dict, image: PetImage | None = None) -> Delivery:
    now = timezone.now()
    payload = {"type": event, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data}
    return Delivery.objects.create(endpoint=endpoint, event=event, image=image, payload=payload, next_attempt_at=now)


def record_image_finished(pk: int) -> Delivery | None:
    """The delivery of "image ``pk`` finished" to its owner's endpoint; None without one.
    Called in the transaction that finishes the image (``classifier.signals``)."""
    pet = PetImage.objects.select_related("model_version").filter(pk=pk).first()
    endpoint = Endpoint.objects.filter(user_id=pet.owner_id).first() if pet else None
    if endpoint is None:
        return None
    return _create(endpoint, Delivery.Event.IMAGE_FINISHED, image_data(pet, endpoint.base_url), image=pet)


def record_test(endpoint: Endpoint) -> Delivery:
    """A test event, to check a receiver: sent and retried like any other."""
    data = {"message": "A test event from Petsite: your endpoint receives webhooks."}
    return _create(endpoint, Delivery.Event.TEST, data)


# --- Trying ---------------------------------------------------------------------------------


def due(now: datetime | None = None) -> QuerySet[Delivery]:
    """Deliveries to try now: retries that are due, and first tries whose message was lost."""
    return Delivery.objects.filter(state=State.PENDING, next_attempt_at__lte=now or timezone.now())


def claim(pk: int, now: datetime) -> Delivery | None:
    """Take the try of delivery ``pk`` if it is due, counting it; None if it is not (another
    message took it, it is over, or its next try is later)."""
    taken = due(now).filter(pk=pk).update(next_attempt_at=now + LEASE, last_attempt_at=now,
                                          attempts=F("attempts") + 1)
    return Delivery.objects.select_related("endpoint").filter(pk=pk).first() if taken else None


def body(delivery: Delivery) -> str:
    return json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)


def signed_headers(delivery: Delivery, text: str, at: datetime) -> dict[str, str]:
    signature = Webhook(delivery.endpoint.secret).sign(delivery.message_id, at, text)
    return {
        "webhook-id": delivery.message_id, "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature, "content-type": "application/json", "user-agent": USER_AGENT,
    }


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(delivery: Delivery, at: datetime) -> Outcome:
    """One POST of ``delivery``, after checking its address again; never follows a redirect."""
    url = delivery.endpoint.url
    try:
        check_url(url)
    except UnsafeURL as unsafe:
        return Outcome(None, f"Not sent: {unsafe}")
    text = body(delivery)
    try:
        response = http().send_request("POST", url, data=text.encode(), headers=signed_headers(delivery, text, at),
                                       stream=True)
    except requests.Timeout:
        return Outcome(None, f"No answer within {TIMEOUT:.0f} s.")
    except requests.RequestException as error:
        return Outcome(None, f"{type(error).__name__}: {error}"[:500])
    response.close()
    error = "" if 200 <= response.status_code < 300 else f"Answered {response.status_code} {response.reason}"
    return Outcome(response.status_code, error[:500])


def http() -> Manager:
    """The client of every try: no redirects, ``TIMEOUT``, and (unless
    ``PETSITE_WEBHOOKS_ALLOW_PRIVATE``) public addresses only, checked as it connects."""
    allow_private = settings.PETSITE_WEBHOOKS_ALLOW_PRIVATE
    return Manager(Config(ip_filter_enable=not allow_private, ip_filter_allow_loopback_ips=allow_private,
                          never_redirect=True, default_timeout=(TIMEOUT, TIMEOUT), user_agent_override=USER_AGENT))


def retry_delay(attempts: int) -> float | None:
    """Seconds until the next try after ``attempts`` failed ones (with jitter); None after the last."""
    if attempts > len(RETRY_DELAYS):
        return None
    return RETRY_DELAYS[attempts - 1] * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 - not security


def record(delivery: Delivery, outcome: Outcome, now: datetime) -> float | None:
    """Write a try's outcome on the row; returns the seconds until the next try, if any."""
    delay = None if outcome.delivered else retry_delay(delivery.attempts)
    if outcome.delivered:
        state, next_at = State.DELIVERED, None
    elif delay is None:
        state, next_at = State.FAILED, None
    else:
        state, next_at = State.PENDING, now + timedelta(seconds=delay)
    Delivery.objects.filter(pk=delivery.pk).update(
        state=state, last_status_code=outcome.status_code, last_error=outcome.error, next_attempt_at=next_at
    )
    return delay


def try_delivery(pk: int) -> float | None:
    """Try delivery ``pk`` once if it is due (the task); returns the seconds until its next try, if any."""
    now = timezone.now()
    delivery = claim(pk, now)
    if delivery is None:
        return None
    outcome = post(delivery, now)
    if not outcome.delivered:
        log.info("Webhook %s to %s, try %d: %s", delivery.message_id, delivery.endpoint.url, delivery.attempts,
                 outcome.error)
    return record(delivery, outcome, timezone.now())
