"""RFC 9457 problem details (``application/problem+json``): how the JSON API, and any
client that asked for JSON, is told that a request failed.

One body for every error, documented once (``api.schema``, docs/api.md)::

    {"type": "about:blank", "title": "Bad Request", "status": 400,
     "detail": "Check the fields below.", "instance": "/api/v1/images/7/feedback/",
     "code": "invalid", "request_id": "3f2a…",
     "errors": [{"pointer": "#/label", "code": "required", "detail": "Choose the right breed."}]}

- ``type`` is ``about:blank``: the status and ``code`` say what happened; there is no
  page per problem type to point at (RFC 9457 section 4.2.1).
- ``title`` is the status's phrase, ``detail`` says it in words for people, ``code`` for
  programs (snake_case, stable), ``instance`` is the path that was asked for, and
  ``request_id`` the id in the site's logs (django-guid), to quote when asking for help.
- ``errors`` (with 400s) names each thing that was wrong, where it was: ``pointer`` is a
  JSON Pointer into the request body in its URI-fragment form (``#/label``; ``#/image/2``
  for the third file of an upload; ``#`` for the body as a whole), ``parameter`` a query
  parameter, ``header`` a request header (as JSON:API's ``source`` names them).

The site's error handlers (``petsite.errors``) answer with it under ``/api/``, the API's
views through DRF's exception handler (``api.exceptions``).
"""
from __future__ import annotations

from http import HTTPStatus

from django.http import HttpRequest, JsonResponse
from django.urls import Resolver404, resolve
from django_guid import get_guid

CONTENT_TYPE = "application/problem+json"
API_PREFIX = "/api/"
# Pages for people that live under /api/: their errors are pages too.
PAGES_UNDER_API = {"api:token", "api:docs"}
NOT_FOUND = "There is nothing at this address."  # a 404's detail, from the site and DRF alike


def problem(status: int, detail: str, *, request: HttpRequest, code: str, errors: list[dict] | None = None,
            headers: dict | None = None, **members) -> JsonResponse:
    """A problem-details response for ``request`` (its path is ``instance``); ``members``
    are further extension members (an upload's ``files`` and ``summary``)."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail,
            "instance": request.path, "code": code}
    if get_guid():
        body["request_id"] = get_guid()
    if errors:
        body["errors"] = errors
    body.update(members)
    return JsonResponse(body, status=status, content_type=CONTENT_TYPE, headers=headers)


def error_item(detail: str, code: str, *, pointer: str = "", parameter: str = "", header: str = "") -> dict:
    """One item of ``errors``, with where it was: a body ``pointer``, a query ``parameter``
    or a request ``header`` (one of them)."""
    where = {"pointer": pointer} if pointer else {"parameter": parameter} if parameter else {"header": header}
    return {**where, "code": code, "detail": detail}


def body_pointer(*path: str | int) -> str:
    """A JSON Pointer into the request body, URI-fragment form: ``body_pointer("image", 2)``
    is ``#/image/2``; no path is the body as a whole, ``#``."""
    escaped = (str(part).replace("~", "~0").replace("/", "~1") for part in path)
    return "#" + "".join(f"/{part}" for part in escaped)


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
