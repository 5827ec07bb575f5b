"""Site-wide middleware."""
from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .problems import problem, wants_problem

log = logging.getLogger(__name__)


class RequestSizeLimitMiddleware:
    """Answer 413 to a request whose body is larger than ``PETSITE_MAX_REQUEST_BYTES``,
    before anything reads the body.

    Django limits form fields (``DATA_UPLOAD_MAX_MEMORY_SIZE``) but not uploaded files:
    without this, a 5 GB POST is streamed to a temporary file before the form finds the
    file too large. Django never reads more than the declared Content-Length, so that
    header is all there is to check. The check runs in ``__call__``, before any view
    middleware (the CSRF check reads the POST body in ``process_view``).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.PETSITE_MAX_REQUEST_BYTES
        size = content_length(request)
        if limit and size > limit:
            log.info("Refused a %d-byte request body to %s (limit %d)", size, request.path, limit)
            if wants_problem(request):  # programs get problem details, as from the rest of the API
                return problem(413, f"The request is {size} bytes; at most {limit} bytes are accepted, and "
                                    f"{settings.PETSITE_MAX_UPLOAD_BYTES} bytes per photo.",
                           request=request, code="too_large")
            context = {"size": size, "max_upload": settings.PETSITE_MAX_UPLOAD_BYTES}
            return render(request, "413.html", context, status=413)
        return self.get_response(request)


def content_length(request: HttpRequest) -> int:
    """The declared body size; 0 when missing or not a number (Django then reads nothing)."""
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0
