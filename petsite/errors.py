"""How the site answers when something fails: pages for people, problem details for programs.

- **Outages** (the database, the cache or the broker unreachable): 503 with
  ``Retry-After``, never 500. Pages get ``503.html``, the site's layout rendered without
  the request (no user menu, no session: nothing that needs the service that is away),
  and say that what was sent may not have been saved: no page may call an upload safe
  unless its row and file were stored. Programs get problem+json.
- **Error handlers** (``handler400`` … ``handler500`` in ``petsite.urls``): problem+json
  under ``/api/`` (an unknown URL, too many files, an unreadable body, a refusal), the
  site's pages elsewhere; the site's 404 page with DEBUG too (:class:`NotFoundPageMiddleware`).
- **Expected refusals** (403) are logged in one line, without a traceback.

Where an outage error can surface, and who turns it into the 503:

- in a view, a DRF view or a template: :meth:`OutageMiddleware.process_exception`,
  before Django logs (or Sentry reports) an error, with or without DEBUG;
- in a middleware (the session saved after the view, …): Django turns it into a
  response through ``handler500`` (:func:`server_error`), which answers the 503; with
  DEBUG, Django shows its technical 500 page instead of calling ``handler500``, so
  :func:`_note_outage` marks the request and :class:`OutageMiddleware` replaces that page.
"""
from __future__ import annotations

import logging
import sys

from django.conf import settings
from django.core.exceptions import TooManyFilesSent
from django.core.signals import got_request_exception
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.template import loader
from django.urls import Resolver404, resolve
from django.views import defaults
from django.views.decorators.csrf import requires_csrf_token

from .outages import outages, unreachable_service, watch_database
from .problems import NOT_FOUND, problem, wants_problem

log = logging.getLogger(__name__)

RETRY_AFTER = 30  # seconds: most outages seen (a restart, a failover) last about that long
SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
OUTAGE_ATTRIBUTE = "_petsite_outage"


def unavailable(request: HttpRequest, service: str, error: BaseException) -> HttpResponse:
    """503 with Retry-After for a request that met ``service`` unreachable."""
    outages.down(service, error, f"requests that need it are answered 503, Retry-After {RETRY_AFTER} s")
    sent = request.method not in SAFE_METHODS
    if wants_problem(request):
        detail = "The service is briefly unavailable. Try again in a moment."
        if sent:
            detail += " The request may not have been carried out: send it again (a photo sent twice is kept once)."
        response = problem(503, detail, request=request, code=f"{service}_unavailable",
                           headers={"Retry-After": str(RETRY_AFTER)})
    else:
        # Without the request: no context processor may look up the user or the messages.
        page = loader.render_to_string("503.html", {"sent": sent, "retry_after": RETRY_AFTER})
        response = HttpResponse(page, status=503, headers={"Retry-After": str(RETRY_AFTER)})
    response._has_been_logged = True  # the outage is logged once (outages.down), each request by petsite.request
    return response


class OutageMiddleware:
    """Answers 503 instead of 500 to a request that met the database, the cache or the
    broker unreachable (see the module's docstring for where each case is caught)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        watch_database()  # a new connection says the database is back

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        error = getattr(request, OUTAGE_ATTRIBUTE, None)
        if error is not None and response.status_code == 500:  # DEBUG's technical page
            return unavailable(request, unreachable_service(error), error)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        service = unreachable_service(exception)
        return unavailable(request, service, exception) if service else None


def _note_outage(sender, request: HttpRequest | None = None, **kwargs) -> None:
    """Django is about to answer an exception it did not expect with a 500: remember an outage."""
    error = sys.exception()
    if request is not None and unreachable_service(error):
        setattr(request, OUTAGE_ATTRIBUTE, error)


got_request_exception.connect(_note_outage, dispatch_uid="petsite.errors.note_outage")


# --- Error handlers (petsite.urls) ----------------------------------------------------------


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if wants_problem(request):
        if isinstance(exception, TooManyFilesSent):
            return problem(400, "The request carries too many files. Send fewer photos at a time.",
                           request=request, code="too_many_files")
        if isinstance(exception, MultiPartParserError):
            return problem(400, "The request's body could not be read as multipart/form-data.",
                           request=request, code="unreadable_body")
        return problem(400, "The request could not be read.", request=request, code="bad_request")
    # Without the request, as Django's own handler: its body may be what could not be read.
    return HttpResponse(loader.render_to_string("400.html"), status=400)


@requires_csrf_token
def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if wants_problem(request):
        response = problem(403, "You do not have permission to do this.", request=request,
                           code="permission_denied")
    else:
        response = defaults.permission_denied(request, exception)
    _log_refusal(request, response, "permission denied")
    return response


@requires_csrf_token
def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: most often a form from a page left open past its session."""
    if wants_problem(request):
        return problem(403, "The request's CSRF token is missing or out of date: reload the page and try again.",
                       request=request, code="csrf_failed")
    # Django logs the refusal in one line itself (with the reason) after this view.
    return HttpResponse(loader.render_to_string("403_csrf.html", request=request), status=403)


def _log_refusal(request: HttpRequest, response: HttpResponse, why: str) -> None:
    """An expected refusal in one line, instead of Django's warning with a traceback."""
    log.warning("Forbidden (%s): %s %s", why, request.method, request.path)
    response._has_been_logged = True


@requires_csrf_token
def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if wants_problem(request):
        return problem(404, NOT_FOUND, request=request, code="not_found")
    return defaults.page_not_found(request, exception)


class NotFoundPageMiddleware:
    """The site's own 404 page with DEBUG too (``bin/run``), where Django would show its
    technical page: every URL pattern of the site, wider than a phone, for anyone who
    mistypes an address. ``PETSITE_TECHNICAL_404=1`` brings Django's page back for
    developers who want it. Without DEBUG Django calls ``handler404`` itself, and this
    does nothing.

    Django answers an address that matches no URL pattern before any view or
    ``process_exception`` runs, so this resolves the address first; placed after
    ``CommonMiddleware``, whose slash-adding redirect still applies to the 404 it returns.
    A view's ``Http404`` is caught in ``process_exception``.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _site_404_with_debug():
            try:
                resolve(request.path_info, getattr(request, "urlconf", None))
            except Resolver404 as exc:
                return page_not_found(request, exc)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, Http404) and _site_404_with_debug():
            return page_not_found(request, exception)
        return None


def _site_404_with_debug() -> bool:
    return settings.DEBUG and not settings.PETSITE_TECHNICAL_404


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: 503 for an outage (raised in a middleware, or anywhere without DEBUG),
    else 500. Rendered without the request: nothing that could fail again."""
    error = sys.exception()
    service = unreachable_service(error)
    if service:
        return unavailable(request, service, error)
    if wants_problem(request):
        return problem(500, "Something went wrong on our side. Try again in a moment.",
                       request=request, code="server_error")
    return HttpResponse(loader.render_to_string("500.html"), status=500)
