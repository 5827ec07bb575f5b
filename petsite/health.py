"""Probes for load balancers and container runtimes.

``/healthz`` (liveness): the process answers; it touches nothing else, so a database
outage never gets every web process restarted. ``/readyz`` (readiness): 200 when the
database, the broker and the media storage answer, 503 otherwise, with a JSON body
that says which check failed (the exception's type only: the body is public; the log
has the details). It also says whether a model is active, and which Celery workers have
been seen lately (``workers``: per queue, how many are live and when one was last seen),
without failing on either: a site without a model or without workers still takes
uploads, which are stored and wait for them. Taking the web tier out of the load balancer
because workers died would refuse those uploads too, and turn a worker fault into an
outage of the whole site; a monitor should alert on ``workers`` instead.

Both are answered by ``ProbeMiddleware`` before the rest of the stack: a load balancer
asks by the machine's address over plain HTTP, which ALLOWED_HOSTS and the HTTPS
redirect would otherwise refuse. Workers have their own probe: ``celery inspect ping``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from django.core.files.storage import storages
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

log = logging.getLogger(__name__)

BROKER_TIMEOUT = 3  # seconds: a probe answers well within a load balancer's timeout


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_broker() -> None:
    from petsite.celery import app

    with app.connection_for_write(connect_timeout=BROKER_TIMEOUT) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT)


def check_storage() -> None:
    """The bucket exists and the credentials may use it; on local disk, the folder is writable."""
    storage = storages["default"]
    if hasattr(storage, "bucket_name"):
        storage.connection.meta.client.head_bucket(Bucket=storage.bucket_name)
        return
    folder = Path(storage.location)
    while not folder.exists():  # made by the first upload: the folder it will be made in must be writable
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is in the way of {storage.location}")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"{folder} is not writable")


CHECKS: dict[str, Callable[[], None]] = {"database": check_database, "broker": check_broker, "storage": check_storage}


def run_checks() -> dict[str, dict]:
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as error:  # any failure of a dependency makes this process not ready
            log.warning("Readiness check %s failed: %r", name, error)
            results[name] = {"ok": False, "error": type(error).__name__}
        else:
            results[name] = {"ok": True}
    return results


def model_status() -> dict:
    from registry.services import active_version

    try:
        version = active_version()
    except Exception as error:  # the database check already says why
        return {"active": False, "error": type(error).__name__}
    return {"active": version is not None}


def worker_status() -> dict:
    """Per queue (classification, training): live workers and when one was last seen."""
    from classifier import workers

    try:
        queues = {"classification": workers.classification_queue(), "training": workers.TRAINING_QUEUE}
        return {role: workers.queue_workers(queue).as_json() for role, queue in queues.items()}
    except Exception as error:  # the database check already says why
        return {"error": type(error).__name__}


@never_cache
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> HttpResponse:
    checks = run_checks()
    failing = [name for name, result in checks.items() if not result["ok"]]
    body = {"status": "unavailable" if failing else "ok", "failing": failing, "checks": checks,
            "model": model_status(), "workers": worker_status()}
    response = JsonResponse(body, status=503 if failing else 200)
    # Django would log each 503 as an error (and Sentry would report it at every probe);
    # the failing check is logged above as a warning instead.
    response._has_been_logged = True
    return response


PROBES = {"healthz": healthz, "readyz": readyz}


class ProbeMiddleware:
    """Answers ``/healthz`` and ``/readyz`` before host validation and the HTTPS redirect."""

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.paths = {f"/{name}": view for name, view in PROBES.items()}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = self.paths.get(request.path_info)
        return view(request) if view else self.get_response(request)

