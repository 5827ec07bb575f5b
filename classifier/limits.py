"""Abuse limits: login lockout (django-axes) and the per-user upload rate (django-ratelimit),
and the multipart limit that lets long file names through (:func:`accept_long_file_names`).

Both answer with the same 429 page, in the site's layout, with a Retry-After header (the
JSON API answers its own 429 from the same count, ``api.throttles``).

The upload rate counts in the shared cache (Redis in a deployment). When the cache
cannot be reached, uploads are let through uncounted rather than refused: the photos
matter more than the limit for the minute or so a restart takes. The log says so once
per outage (``petsite.outages``), not at every upload.
"""
import math
from collections.abc import Callable, Sequence
from functools import wraps

from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django_ratelimit.core import get_usage

from petsite.outages import CACHE, outages, unreachable_service

from . import uploads


def duration(seconds: int) -> str:
    """How long to wait, in words ("45 seconds", "15 minutes"), rounded up so that nobody comes back too early."""
    count, unit = seconds, "second"
    for size, name in [(3600, "hour"), (60, "minute")]:
        if seconds >= size:
            count, unit = math.ceil(seconds / size), name
            break
    return f"{count} {unit}{'s' if count != 1 else ''}"


def too_many_requests(request: HttpRequest, retry_after: int, context: dict) -> HttpResponse:
    """The 429 page, in the site's layout, with the Retry-After header (seconds)."""
    retry_after = max(1, math.ceil(retry_after))
    response = render(request, "429.html", {"wait": duration(retry_after), **context}, status=429)
    response["Retry-After"] = str(retry_after)
    return response


def locked_out(request: HttpRequest, original_response=None, credentials: dict | None = None) -> HttpResponse:
    """django-axes' answer (AXES_LOCKOUT_CALLABLE) to a login from a username and address that failed too often."""
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    context = {
        "login": True, "username": username, "failure_limit": settings.AXES_FAILURE_LIMIT,
        "password_reset": settings.PETSITE_PASSWORD_RESET,
    }
    return too_many_requests(request, lockout_left(request, username), context)


def lockout_left(request: HttpRequest, username: str) -> float:
    """Seconds until the lock-out of ``username`` from this address ends: the cool-off
    counts from the failure that locked it (tries refused since do not restart it)."""
    cool_off = get_cool_off(request)
    last = (
        AccessAttempt.objects.filter(username=username, ip_address=getattr(request, "axes_ip_address", None))
        .order_by("-attempt_time").values_list("attempt_time", flat=True).first()
    )
    if last is None:
        return cool_off.total_seconds()
    return (last + cool_off - timezone.now()).total_seconds()


def upload_usage(request: HttpRequest, increment: bool = False) -> dict | None:
    """The user's upload count in the shared cache (django-ratelimit), counting one more
    photo with ``increment``; None when rate limiting is switched off, or while the cache
    cannot be reached (uploads then go through uncounted)."""
    if not settings.PETSITE_UPLOAD_RATE:  # empty: no rate limit
        return None
    try:
        usage = get_usage(
            request, group="classifier.upload", key="user", rate=settings.PETSITE_UPLOAD_RATE, method="POST",
            increment=increment,
        )
    except Exception as error:
        if unreachable_service(error) != CACHE:
            raise
        outages.down(CACHE, error, "uploads are not rate-limited until it answers again")
        return None
    outages.up(CACHE)
    return usage


def limit_uploads(view: Callable) -> Callable:
    """Refuse a user's uploads beyond PETSITE_UPLOAD_RATE with the 429 page.

    django-ratelimit counts each user's upload requests in the shared cache (CACHES), so
    every web process counts the same uploads. Only POSTs count: opening the form is free.
    """

    @wraps(view)
    def limited(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        usage = upload_usage(request, increment=True)
        if usage is not None and usage["should_limit"]:
            return too_many_requests(request, usage["time_left"], {"uploads": True, "limit": usage["limit"]})
        return view(request, *args, **kwargs)

    return limited


def store_uploads_within_rate(request: HttpRequest, files: Sequence[File]) -> list[uploads.UploadOutcome]:
    """Store a request's files for its user as far as the upload rate allows: one outcome per file.

    The first ``PETSITE_MAX_FILES_PER_UPLOAD`` are taken (the page's script keeps as many on
    their way at once); the ones past them are not sent, each named (:func:`uploads.not_sent`).
    The request itself was counted as one upload (``limit_uploads``, or the API's
    throttle); the files before the limit are stored, the ones past it refused with the wait.
    """
    files, later = uploads.split_at_file_limit(files)
    within_rate = uploads_within_rate(request, len(files))
    outcomes = uploads.store_uploads(request.user, files[:within_rate])
    if within_rate < len(files):
        over = over_rate_error(request)
        outcomes += [uploads.UploadOutcome(uploads.display_name(f.name), error=over) for f in files[within_rate:]]
    return outcomes + uploads.not_sent(later)


def uploads_within_rate(request: HttpRequest, count: int) -> int:
    """How many of a request's ``count`` files are within the user's upload rate.

    The request was counted as one upload already; the rate counts photos, so each
    further file counts too: a form with twenty photos uses twenty of the allowance, as
    twenty one-photo requests from the page's script do.
    """
    allowed = 1
    for _ in range(count - 1):
        usage = upload_usage(request, increment=True)
        if usage is None:  # rate limiting is switched off
            return count
        if usage["should_limit"]:
            break
        allowed += 1
    return allowed


def over_rate_error(request: HttpRequest) -> ValidationError:
    """The refusal of a file past the user's upload rate, with how long to wait."""
    usage = upload_usage(request)
    wait = duration(max(1, usage["time_left"])) if usage else "a while"
    return ValidationError(
        f"Not uploaded: you have sent as many photos as we accept for now. Please wait {wait}, then send it again.",
        code="rate_limited",
    )


# Headers of one part of a multipart body that Django reads (its own limit is 1 KiB): a
# part's Content-Disposition carries the file name, and a name of 1,000 characters
# (4,000 bytes in UTF-8 at most) must not get the whole request refused.
MULTIPART_PART_HEADER_BYTES = 16 * 1024


def accept_long_file_names() -> None:
    """Let Django read multipart parts whose headers hold long file names (called once,
    at start-up, by the app's ``ready``). Django reads the module's limit at each part."""
    from django.http import multipartparser

    multipartparser.MAX_TOTAL_HEADER_SIZE = max(multipartparser.MAX_TOTAL_HEADER_SIZE, MULTIPART_PART_HEADER_BYTES)
