"""The headers every API answer carries: the upload allowance (RateLimit), validators
and 304s (ETag, conditional GET), and who may cache it (Cache-Control, Vary).

**Rate limits** follow the IETF httpapi draft "RateLimit header fields for HTTP"
(draft-ietf-httpapi-ratelimit-headers-10, structured fields): the policy, and what is
left of it for the requester::

    RateLimit-Policy: "upload";q=30;w=60
    RateLimit: "upload";r=28;t=41

``q`` photos per ``w`` seconds (``PETSITE_UPLOAD_RATE``; the quota counts photos, each
file of an upload one, as the site's form does), ``r`` photos left and ``t`` seconds
until the count starts again. The numbers come from the one counter the site and the API
share (:func:`classifier.limits.upload_usage`), read without counting: a GET shows the
allowance without spending it. Every answer under ``/api/`` carries them, errors too,
but the pages for people. ``RateLimit`` needs the requester: it is left out where none is
known (no valid credentials, or an address no view answered), and while the cache that
holds the count cannot be reached (uploads then go through uncounted, as on the site).
With rate limiting off (``PETSITE_UPLOAD_RATE`` empty, or ``RATELIMIT_ENABLE`` false)
neither header is sent: there is no limit to tell.

**Conditional requests** (RFC 9110): a JSON answer's strong ETag is a digest of its
bytes, so it changes whenever the answer does (a result, an answer, a heatmap, a
paging link) and never otherwise; ``If-None-Match`` (``*``, lists, weak comparison)
answers 304 without a body. The answer is still made to be compared, so a 304 saves
the transfer, not the work: ``PetImage`` has no last-change time that would say more
cheaply that nothing changed. The files' validators are ``classifier.serving``'s.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.cache import get_conditional_response, patch_vary_headers, set_response_etag
from django.utils.functional import SimpleLazyObject, empty
from django_ratelimit.core import _split_rate  # the library's own reading of a rate ("30/m")

from classifier.limits import upload_usage
from classifier.uploads import UploadOutcome
from petsite.problems import API_PREFIX, PAGES_UNDER_API, problem

POLICY = "upload"
# JSON answers may be kept by the requester's own client only, and checked before each use
# (the ETag makes that a 304); answers differ by credentials, so caches key on them.
CACHE_CONTROL = "private, no-cache"
VARY = ("Authorization", "Cookie")


def upload_rate() -> tuple[int, int] | None:
    """The upload quota and its window in seconds; None when rate limiting is off."""
    rate = settings.PETSITE_UPLOAD_RATE
    if not rate or not getattr(settings, "RATELIMIT_ENABLE", True):
        return None
    return _split_rate(rate)


def allowance(request: HttpRequest) -> dict | None:
    """The requester's upload count as :func:`~classifier.limits.upload_usage` keeps it,
    without counting; None when it cannot be known. django-ratelimit reads the count only
    for the method it counts (POST), so any other request asks as a POST would."""
    if request.method != "POST":
        request = copy.copy(request)
        request.method = "POST"
    return upload_usage(request)


def rate_limit_headers(request: HttpRequest) -> dict[str, str]:
    """``RateLimit-Policy`` and, for a known requester, ``RateLimit`` (see the module's docstring)."""
    rate = upload_rate()
    if rate is None:
        return {}
    quota, window = rate
    headers = {"RateLimit-Policy": f'"{POLICY}";q={quota};w={window}'}
    usage = allowance(request) if _known_user(request) else None
    if usage is not None:
        remaining = max(0, usage["limit"] - usage["count"])
        headers["RateLimit"] = f'"{POLICY}";r={remaining};t={max(0, usage["time_left"])}'
    return headers


def _known_user(request: HttpRequest) -> bool:
    """Whether the request's user is known and signed in, without looking anyone up: a user
    nobody asked for yet (an address no view answered) stays unknown, so that these
    headers never query the database (which may be the service that is away)."""
    user = getattr(request, "user", None)
    if user is None or (isinstance(user, SimpleLazyObject) and user._wrapped is empty):
        return False
    return user.is_authenticated


def upload_headers(request: HttpRequest, outcomes: Sequence[UploadOutcome]) -> dict[str, str]:
    """The upload's own headers: ``Location``, the first stored image's v1 URL (with several
    files, the first; each file's ``image.url`` names the others), and ``Retry-After``
    when any file was refused for the rate, as the 429 carries it."""
    headers = {}
    stored = next((outcome.image for outcome in outcomes if outcome.saved), None)
    if stored is not None:
        headers["Location"] = request.build_absolute_uri(reverse("api:image-detail", args=[stored.pk]))
    if any(outcome.code == "rate_limited" for outcome in outcomes):
        usage = allowance(request)
        headers["Retry-After"] = str(max(1, math.ceil(usage["time_left"])) if usage else 60)
    return headers


def is_api_answer(request: HttpRequest) -> bool:
    """An answer of the API: anything under ``/api/`` but its pages for people."""
    if not request.path_info.startswith(API_PREFIX):
        return False
    match = getattr(request, "resolver_match", None)
    return match is None or match.view_name not in PAGES_UNDER_API


def conditional(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """A 200 to a GET with its strong ETag, or 304 when the client's copy is current."""
    if request.method not in ("GET", "HEAD") or response.status_code != 200 or response.streaming:
        return response
    if not response.has_header("ETag"):
        set_response_etag(response)
    if not response.has_header("ETag"):
        return response  # an empty body: nothing to compare
    answer = get_conditional_response(request, etag=response["ETag"], response=response)
    if answer.status_code == 412:  # If-Match on a GET that does not match
        return problem(412, "The image is not the version named in If-Match.", request=request,
                       code="precondition_failed")
    return answer


class ApiHeadersMiddleware:
    """Adds the headers of this module to the API's answers. Placed after the session and
    authentication middleware (it reads the user the view authenticated) and outside the
    views' error handling, so that errors carry the headers too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not is_api_answer(request):
            return response
        if not response.has_header("Cache-Control"):
            response["Cache-Control"] = CACHE_CONTROL
        patch_vary_headers(response, VARY)
        response = conditional(request, response)
        for name, value in rate_limit_headers(request).items():
            response[name] = value
        return response
