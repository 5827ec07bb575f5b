"""The API's errors as RFC 9457 problem details (``petsite.problems``): DRF's
``EXCEPTION_HANDLER``.

DRF answers its exceptions in four shapes (``{"detail"}``, ``{field: [...]}``,
``{"non_field_errors"}``, a list); this handler gives each the one problem+json body,
with DRF's headers (``WWW-Authenticate`` on a 401, ``Retry-After`` on a 429). A
validation error's fields become ``errors`` items that say where each was: a query
parameter for a read (a GET has no body), a JSON Pointer into the body otherwise.

drf-standardized-errors was considered: its body (``type``, ``errors`` with ``attr``) is
not RFC 9457's, and the site's own handlers (``petsite.errors``: 404, 413, 500, 503 and
CSRF, which DRF never sees) answer with ``petsite.problems`` anyway; one small handler
keeps one format for both.
"""
from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from rest_framework import exceptions
from rest_framework.views import set_rollback

from petsite.problems import NOT_FOUND, body_pointer, error_item, problem

# Machine-readable codes where DRF's differ from the site's (``petsite.errors``) or the
# per-file codes of an upload (``rate_limited``).
CODES = {"throttled": "rate_limited", "parse_error": "unreadable_body"}
INVALID = "Some of what was sent is not valid: see `errors`."
NOT_FIELDS = {"non_field_errors", "__all__"}  # errors of the request as a whole


def exception_handler(exc: Exception, context: dict) -> HttpResponse | None:
    """A problem+json answer for DRF's exceptions and Django's ``Http404`` and
    ``PermissionDenied``; None for anything else (Django's handler500 answers it)."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    if not isinstance(exc, exceptions.APIException):
        return None
    request = context["request"]
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    set_rollback()
    code = exc.default_code
    if isinstance(exc.detail, dict | list):
        errors = error_items(exc.detail, query=request.method in ("GET", "HEAD"))
        detail = errors[0]["detail"] if len(errors) == 1 else INVALID
    else:
        errors, code = [], getattr(exc.detail, "code", None) or code
        detail = NOT_FOUND if code == "not_found" and str(exc.detail) == exceptions.NotFound.default_detail \
            else str(exc.detail)
    return problem(exc.status_code, detail, request=request, code=CODES.get(code, code), errors=errors,
                   headers=headers)


def error_items(detail: dict | list, *, query: bool) -> list[dict]:
    """DRF's nested error details as ``errors`` items, each with its code and where it was:
    ``{"label": ["Choose…"]}`` is ``{"pointer": "#/label", …}`` (or ``{"parameter":
    "label"}`` with ``query``); form-wide errors point at the whole body, ``#``."""
    items = []
    for path, error in _flatten(detail, ()):
        code = getattr(error, "code", None) or "invalid"
        if query and path and path[0] not in NOT_FIELDS:
            items.append(error_item(str(error), code, parameter=str(path[0])))
        else:
            fields = path[1:] if path and path[0] in NOT_FIELDS else path
            items.append(error_item(str(error), code, pointer=body_pointer(*fields)))
    return items


def _flatten(detail, path: tuple) -> list[tuple[tuple, object]]:
    if isinstance(detail, dict):
        return [item for key, value in detail.items() for item in _flatten(value, (*path, key))]
    if isinstance(detail, list):
        # A field's list of messages keeps the field's path; a list of objects numbers them.
        return [item for index, value in enumerate(detail)
                for item in _flatten(value, (*path, index) if isinstance(value, dict | list) else path)]
    return [(path, detail)]


def form_errors(form) -> dict:
    """A Django form's errors as DRF error details, keeping each error's code (the form's
    ``code=`` or Django's own, such as ``required`` and ``invalid_choice``)."""
    return {
        field: [exceptions.ErrorDetail(" ".join(error.messages), code=error.code or "invalid") for error in errors]
        for field, errors in form.errors.as_data().items()
    }
