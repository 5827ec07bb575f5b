"""RFC 9457 problem details (``application/problem+json``): how the JSON API, and any
client that asked for JSON, is told that a request failed.

One body for every error: ``type``, ``title`` (the status's phrase), ``status``,
``detail`` (in words for people) and, where programs need to act on it, a ``code``.
The site's error handlers (``petsite.errors``) answer with it under ``/api/``; the API's
views can raise through DRF and convert here too.
"""
from __future__ import annotations

from http import HTTPStatus

from django.http import HttpRequest, JsonResponse
from django.urls import Resolver404, resolve

CONTENT_TYPE = "application/problem+json"
API_PREFIX = "/api/"
# Pages for people that live under /api/: their errors are pages too.
PAGES_UNDER_API = {"api:token", "api:docs"}


def problem(status: int, detail: str = "", *, code: str | None = None, headers: dict | None = None,
            **members) -> JsonResponse:
    """A problem-details response: ``type`` is ``about:blank`` (the status says it all),
    ``title`` the status's phrase; ``code`` and ``members`` are extension members."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    if detail:
        body["detail"] = detail
    if code:
        body["code"] = code
    body.update(members)
    return JsonResponse(body, status=status, content_type=CONTENT_TYPE, headers=headers)


def wants_problem(request: HttpRequest) -> bool:
    """Whether an error answer to ``request`` is problem+json rather than a page: anything
    under ``/api/`` (an unknown URL too) but the API's pages for people, and elsewhere a
    client that prefers JSON to HTML (the site's scripts: status polls, uploads)."""
    if request.path_info.startswith(API_PREFIX):
        try:
            name = resolve(request.path_info).view_name
        except Resolver404:
            return True
        return name not in PAGES_UNDER_API
    return request.get_preferred_type(["text/html", "application/json"]) == "application/json"
