"""``GET /api/images/<id>/?wait=N``: answer as soon as the image is finished, or after N seconds.

How a request waits without busy-waiting: the worker that finishes an image publishes
its id on a Redis pub/sub channel after the commit (:func:`publish_finished`, a receiver
of ``classifier.signals.image_finished``); the waiting request subscribes to that channel
and sleeps in ``select()`` on the subscription's socket until a message comes or the time
is up. No wake-up is lost: the row is read after subscribing (a finish published before
the subscription is found there), after each message, and every ``RECHECK_SECONDS``
anyway (a publish that failed costs at most that). The broker is Redis in every
deployment (``petsite/broker.py``); where it cannot be reached, the request reads the row
with a back-off instead (50 ms doubling to 500 ms).

A waiting request holds its web thread (asleep, not on a CPU) and its database connection
(idle). So waits are bounded per process: at most ``PETSITE_WAIT_MAX_WAITERS`` at once
(503 beyond, ``Retry-After: 1``), at most ``PETSITE_WAIT_MAX_PER_USER`` of one user's
(429 beyond): with gunicorn's gthread workers (docker/gunicorn.conf.py) the other threads
keep serving everything else.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from django.conf import settings
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from drf_spectacular.utils import OpenApiParameter

from classifier.models import PetImage
from petsite.problems import error_item, problem

log = logging.getLogger(__name__)

MAX_WAIT = 30  # seconds, the most a request may ask for
RECHECK_SECONDS = 5.0  # the row is read at least this often while subscribed
SUBSCRIBE_TIMEOUT = 1.0  # seconds Redis has to confirm a subscription
POLL_FIRST, POLL_MAX = 0.05, 0.5  # the fallback's back-off, in seconds


# --- Waking up: Redis pub/sub on the broker -------------------------------------------------


def redis_url() -> str | None:
    """The Redis to publish and subscribe on: the broker's (``redis+socket://path``, the
    embedded broker's form, in redis-py's ``unix://path``);
    None for a broker that is not Redis (then waits read the database)."""
    url = settings.CELERY_BROKER_URL
    if url.startswith("redis+socket://"):
        return "unix://" + url.removeprefix("redis+socket://")
    return url if url.startswith(("redis://", "rediss://", "unix://")) else None


def channel(pk: int) -> str:
    """The channel of one image; named with the database, so that sites (or test runs)
    sharing one Redis server never wake each other."""
    return f"petsite:{settings.DATABASES['default']['NAME']}:image-finished:{pk}"


_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def _client():
    """One Redis client (and connection pool) per process and URL; None without Redis."""
    url = redis_url()
    if url is None:
        return None
    with _clients_lock:
        if url not in _clients:
            import redis

            _clients[url] = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        return _clients[url]


def publish_finished(sender, pk: int, **kwargs) -> None:
    """Receiver of ``image_finished``: wake the requests waiting for ``pk`` once the row is committed."""
    transaction.on_commit(partial(_publish, pk))


def _publish(pk: int) -> None:
    client = _client()
    if client is None:
        return
    try:
        client.publish(channel(pk), "finished")
    except Exception as error:  # a hint only: waiters re-read the row every RECHECK_SECONDS
        log.warning("Could not publish that image %s finished (%s); waiting requests see it later", pk, error)


# --- Waiting --------------------------------------------------------------------------------


def _read(pk: int) -> PetImage:
    pet = PetImage.objects.select_related("model_version").filter(pk=pk).first()
    if pet is None:  # deleted meanwhile
        raise Http404
    return pet


def _subscribe(client, pk: int):
    """A subscription to the image's channel once Redis has confirmed it: from then on no
    publish is missed, so the row is read after this. None when Redis cannot be reached."""
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(channel(pk))
        reply = pubsub.get_message(timeout=SUBSCRIBE_TIMEOUT)
        if reply and reply["type"] == "subscribe":
            return pubsub
        error = "no confirmation"
    except Exception as exc:
        error = exc
    _close(pubsub)
    log.warning("Waiting for image %s without Redis (%s): reading the database with a back-off", pk, error)
    return None


def _close(pubsub) -> None:
    try:
        pubsub.close()
    except Exception:  # noqa: S110 - closing a broken connection: nothing to do
        pass


def _wait_subscribed(pk: int, deadline: float, client) -> PetImage | None:
    """Wait on the image's channel until it is finished or ``deadline``; None when Redis
    cannot be reached (the caller then polls)."""
    pubsub = _subscribe(client, pk)
    if pubsub is None:
        return None
    try:
        pet = _read(pk)  # after the subscription: a finish published before it is seen here
        while not pet.is_finished and (left := deadline - time.monotonic()) > 0:
            try:
                pubsub.get_message(timeout=min(left, RECHECK_SECONDS))  # sleeps in select()
            except Exception as error:
                log.warning("Redis went away while waiting for image %s (%s)", pk, error)
                return _poll(pk, deadline)
            pet = _read(pk)
        return pet
    finally:
        _close(pubsub)


def _poll(pk: int, deadline: float) -> PetImage:
    """Read the row with a back-off (50 ms doubling to 500 ms) until finished or ``deadline``."""
    pause = POLL_FIRST
    pet = _read(pk)
    while not pet.is_finished and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(pause, left))
        pause = min(pause * 2, POLL_MAX)
        pet = _read(pk)
    return pet


def wait_until_finished(pet: PetImage, seconds: float) -> PetImage:
    """``pet`` as it is once finished, or after ``seconds`` (its state then)."""
    if pet.is_finished or seconds <= 0:
        return pet
    deadline = time.monotonic() + seconds
    client = _client()
    waited = _wait_subscribed(pet.pk, deadline, client) if client is not None else None
    return waited if waited is not None else _poll(pet.pk, deadline)


# --- Bounds ---------------------------------------------------------------------------------


class WaitRefused(Exception):
    def __init__(self, status: int, detail: str, code: str):
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code


_waiting: Counter = Counter()  # user id -> waits running in this process
_waiting_lock = threading.Lock()


@contextmanager
def waiter_slot(user_id: int) -> Iterator[None]:
    """Hold one of this process's wait slots for ``user_id``, or raise :class:`WaitRefused`."""
    with _waiting_lock:
        if sum(_waiting.values()) >= settings.PETSITE_WAIT_MAX_WAITERS:
            raise WaitRefused(503, "Too many requests are waiting for results right now: ask again in a "
                              "second, or without `wait`.", "too_many_waiting")
        if _waiting[user_id] >= settings.PETSITE_WAIT_MAX_PER_USER:
            raise WaitRefused(429, f"You have {_waiting[user_id]} requests waiting already: wait for one "
                              "of them at a time, or ask without `wait`.", "too_many_waits")
        _waiting[user_id] += 1
    try:
        yield
    finally:
        with _waiting_lock:
            _waiting[user_id] -= 1
            if not _waiting[user_id]:
                del _waiting[user_id]


def wait_seconds(request: HttpRequest) -> int | None:
    """The request's ``wait`` (None without one); ValueError when it is not 0 to 30."""
    raw = request.GET.get("wait")
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) > MAX_WAIT:
        raise ValueError(raw)
    return int(raw)


def wait_for(request: HttpRequest, pet: PetImage) -> PetImage | HttpResponse:
    """The API's image read with ``?wait=N``: the image once finished or after N seconds,
    or a problem+json answer (400 for a bad ``wait``, 429/503 over the bounds)."""
    try:
        seconds = wait_seconds(request)
    except ValueError:
        return problem(400, f"`wait` is a whole number of seconds from 0 to {MAX_WAIT}.", request=request,
                       code="invalid", errors=[error_item(f"0 to {MAX_WAIT} seconds", "invalid", parameter="wait")])
    if not seconds or pet.is_finished:
        return pet
    try:
        with waiter_slot(request.user.pk):
            return wait_until_finished(pet, seconds)
    except WaitRefused as refused:
        return problem(refused.status, refused.detail, request=request, code=refused.code, headers={"Retry-After": "1"})


WAIT_PARAMETER = OpenApiParameter(
    "wait", {"type": "integer", "minimum": 0, "maximum": MAX_WAIT},
    description=f"Seconds to wait for the image to finish, 0 to {MAX_WAIT}: the answer comes as soon as it is "
    "finished, or after that long with its state then (`finished` false). 429 when you have too many waits "
    "running, 503 when the server has; both with `Retry-After`.",
)
