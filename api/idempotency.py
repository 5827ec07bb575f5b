"""``Idempotency-Key`` on uploads (IETF httpapi draft "The Idempotency-Key HTTP Header
Field", and Stripe's behaviour): a client that lost an answer sends the request again with
the same key and gets the first answer again, and nothing is done twice.

- The first request with a key (per user) is carried out and its answer kept 24 hours:
  status, body, ``Content-Type`` and ``Location`` (:class:`api.models.IdempotentRequest`).
- The same key with the same request (the files' names and bytes, in order) replays that
  answer, with ``Idempotent-Replayed: true`` (Stripe's name), and spends none of the upload
  allowance: it is answered before the rate is counted.
- The same key with another request: 422 problem (``idempotency_key_reused``).
- The same key while the first request is still being answered: 409 problem
  (``idempotency_key_in_use``); a request still marked running after
  :data:`RUNNING_AT_MOST` died with its process, and the key is free again.
- Answers that did nothing are not kept, so the key can be sent again: a 429 (the rate),
  a 5xx (an outage, a crash), a request that raised.

Without the key, an upload sent twice still keeps each photo once (its sha256): the key
adds the exact same answer (``created`` stays true, the same ``Location``), the allowance
not spent twice, and a refusal of a key reused by mistake for another request.
Keys past their 24 hours are deleted whenever a key is used (one indexed delete).
"""
from __future__ import annotations

import hashlib
from datetime import timedelta

from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.request import Request

from petsite.problems import error_item, problem

from .models import IdempotentRequest

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
LIFETIME = timedelta(hours=24)
RUNNING_AT_MOST = timedelta(minutes=10)  # far past any upload's answer (the web server's timeout)
MAX_KEY_LENGTH = 255


class Answered(Exception):
    """Answered before the view: a replay or a refusal (``response``)."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


class IdempotentUploads:
    """A view mixin: POSTs with an ``Idempotency-Key`` are answered once. The key is looked
    at after authentication and permissions and before the throttles, so that a replay
    spends nothing; the answer is kept as the view finishes it."""

    idempotent_request: IdempotentRequest | None = None

    def check_throttles(self, request: Request) -> None:
        self.idempotent_request = begin(request)
        try:
            super().check_throttles(request)
        except exceptions.Throttled:
            self._forget()
            raise

    def handle_exception(self, exc: Exception):
        if isinstance(exc, Answered):
            return exc.response
        try:
            return super().handle_exception(exc)
        except Exception:
            self._forget()
            raise

    def finalize_response(self, request: Request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if self.idempotent_request is not None:
            if response.status_code >= 500 or response.status_code == 429:
                self._forget()
            else:
                keep(self.idempotent_request, response)
        return response

    def _forget(self) -> None:
        if self.idempotent_request is not None:
            self.idempotent_request.delete()
            self.idempotent_request = None


def begin(request: Request) -> IdempotentRequest | None:
    """The record of a POST with a key, new and running; None without a key. A key seen
    before raises :class:`Answered` with the replay or the refusal."""
    key = request_key(request)
    if key is None:
        return None
    fingerprint = request_fingerprint(request)
    now = timezone.now()
    with transaction.atomic():
        IdempotentRequest.objects.filter(created_at__lt=now - LIFETIME).delete()
        record, created = IdempotentRequest.objects.select_for_update().get_or_create(
            user=request.user, key=key, defaults={"fingerprint": fingerprint, "created_at": now}
        )
        if created:
            return record
        if record.fingerprint != fingerprint:
            raise Answered(problem(
                422, f"This {HEADER} was sent before with other files. Use a new key for a new upload.",
                request=request, code="idempotency_key_reused",
                errors=[error_item("Used before with other files.", "reused", header=HEADER)],
            ))
        if record.status is None:
            if record.created_at > now - RUNNING_AT_MOST:
                raise Answered(problem(
                    409, f"The first request with this {HEADER} is still being answered. Send it again in a moment.",
                    request=request, code="idempotency_key_in_use", headers={"Retry-After": "1"},
                ))
            record.created_at = now  # its request died: this one takes the key over
            record.save(update_fields=["created_at"])
            return record
    raise Answered(replay(record))


def request_key(request: Request) -> str | None:
    """The request's key (a structured-field string, quoted, or bare as Stripe's clients
    send it); None for a request without one or other than a POST. A malformed key is a 400."""
    value = request.headers.get(HEADER)
    if request.method != "POST" or value is None:
        return None
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise Answered(problem(
            400, f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters, such as a UUID.",
            request=request, code="invalid_idempotency_key",
            errors=[error_item("Not a key this API accepts.", "invalid", header=HEADER)],
        ))
    return key


def request_fingerprint(request: Request) -> str:
    """What makes two uploads the same request: each file's name and bytes, in order."""
    digest = hashlib.sha256()
    for name, parts in request.FILES.lists():
        for part in parts:
            content = hashlib.sha256()
            for chunk in part.chunks():
                content.update(chunk)
            part.seek(0)
            digest.update(f"{name}\0{part.name}\0{content.hexdigest()}\n".encode())
    return digest.hexdigest()


def keep(record: IdempotentRequest, response: HttpResponse) -> None:
    """Store the first answer for replays (rendering it now: it is rendered only once)."""
    if hasattr(response, "render") and not response.is_rendered:
        response.render()
    record.status = response.status_code
    record.content_type = response.get("Content-Type", "")
    record.body = response.content.decode()
    record.location = response.get("Location", "")
    record.save(update_fields=["status", "content_type", "body", "location"])


def replay(record: IdempotentRequest) -> HttpResponse:
    """The stored answer, as it was first given."""
    response = HttpResponse(record.body, status=record.status, content_type=record.content_type or None)
    if record.location:
        response["Location"] = record.location
    response[REPLAYED] = "true"
    return response
