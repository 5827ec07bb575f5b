"""The schema's view of versions and headers (drf-spectacular hooks, ``SPECTACULAR_SETTINGS``).

- :func:`only_v1` (preprocessing): each endpoint once, at its v1 address; the
  unversioned alias (``api.urls``) answers the same and is left out.
- :func:`document_headers` (postprocessing): the headers the API adds around its views
  (``api.headers``, ``api.pagination``, ``api.idempotency``, ``classifier.serving``), on
  the operations and answers that carry them, as reusable ``components.headers``; the
  request headers as parameters; the 304 of each read, and the idempotency refusals.
"""
from __future__ import annotations

from .idempotency import HEADER as IDEMPOTENCY_KEY
from .idempotency import MAX_KEY_LENGTH, REPLAYED
from .pagination import MAX_PAGE_SIZE

V1_PREFIX = "/api/v1/"
UPLOAD_PATH = f"{V1_PREFIX}images/"
FILE_SUFFIXES = ("/file/", "/thumbnail/", "/heatmap/")

SECONDS = {"type": "string", "pattern": "^[0-9]+$"}
HEADERS = {
    "RateLimit-Policy": ("The upload allowance (IETF draft-ietf-httpapi-ratelimit-headers): `q` photos per `w` "
                         "seconds, each file of an upload one; the site and the API share it. Absent when rate "
                         "limiting is off.", {"type": "string", "example": '"upload";q=30;w=60'}),
    "RateLimit": ("What is left of it for you: `r` photos, `t` seconds until the count starts again. Absent when the "
                  "caller is not known, or while the count cannot be read (uploads are then not counted).",
                  {"type": "string", "example": '"upload";r=28;t=41'}),
    "ETag": ("A strong validator of this answer: send it back in `If-None-Match` to get 304 while it is unchanged.",
             {"type": "string", "example": '"9b2cf535f27731c974343645a3985328"'}),
    "Last-Modified": ("When the file was stored (HTTP-date); `If-Modified-Since` compares with it.",
                      {"type": "string", "example": "Tue, 02 Dec 2025 10:15:00 GMT"}),
    "Location": ("The first stored image (its `url`); the others are in `files`.",
                 {"type": "string", "format": "uri"}),
    "Link": (f"RFC 8288 links to the `first`, `prev`, `next` and `last` pages (`page_size` up to {MAX_PAGE_SIZE}).",
             {"type": "string", "example": '<https://example.org/api/v1/images/?page=2>; rel="next"'}),
    "Retry-After": ("Seconds until asking again makes sense: with a 429 or 503, with an upload's answer that "
                    "refused any file for the rate (code `rate_limited`), and with its 409 while the first request "
                    "with the same `Idempotency-Key` runs.", SECONDS),
    "WWW-Authenticate": ("How to authenticate: with a token.", {"type": "string", "enum": ["Token"]}),
    REPLAYED: (f"`true` on an answer replayed for a repeated `{IDEMPOTENCY_KEY}`.",
               {"type": "string", "enum": ["true"]}),
}

PARAMETERS = {
    "If-None-Match": "ETags of copies you hold (or `*`): 304 without a body when the answer's ETag is among them.",
    "If-Modified-Since": "An HTTP-date: 304 when the file was not stored after it (ignored with `If-None-Match`).",
    IDEMPOTENCY_KEY: "A key of yours for this upload, such as a UUID: the same key with the same files within 24 "
                     "hours replays the first answer and uploads nothing again; with other files it is a 422; while "
                     "the first is still being answered, a 409.",
}


def only_v1(endpoints: list, **kwargs) -> list:
    """The endpoints at their v1 addresses only."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith(V1_PREFIX)]


def document_headers(result: dict, generator=None, request=None, public=None) -> dict:
    """Add the headers (see the module's docstring) to the generated schema ``result``."""
    components = result.setdefault("components", {})
    components["headers"] = {
        **components.get("headers", {}),
        **{name: {"description": words, "schema": schema} for name, (words, schema) in HEADERS.items()},
    }
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                _document_operation(path, method, operation)
    return result


def _document_operation(path: str, method: str, operation: dict) -> None:
    responses = operation.setdefault("responses", {})
    is_file = path.endswith(FILE_SUFFIXES)
    if method == "get":
        _parameter(operation, "If-None-Match")
        if is_file:
            _parameter(operation, "If-Modified-Since")
        responses.setdefault("304", {"description": "Not Modified: your copy is current (no body)."})
        _headers(responses, ["200", "304"], ["ETag", *(["Last-Modified"] if is_file else [])])
        if any(parameter.get("name") == "page" for parameter in operation.get("parameters", [])):
            _headers(responses, ["200"], ["Link"])
    if method == "post" and path == UPLOAD_PATH:
        _parameter(operation, IDEMPOTENCY_KEY, {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH,
                                                "pattern": "^[ -~]*[!-~][ -~]*$"})
        responses.setdefault("409", {"description": f"The first request with this `{IDEMPOTENCY_KEY}` is still "
                                                    "being answered (problem `idempotency_key_in_use`)."})
        responses.setdefault("422", {"description": f"This `{IDEMPOTENCY_KEY}` was sent before with other files "
                                                    "(problem `idempotency_key_reused`)."})
        _headers(responses, ["202"], ["Location"])
        _headers(responses, ["202", "400", "409", "429"], ["Retry-After"])
        _headers(responses, [code for code in responses if code not in {"409", "422", "429"}], [REPLAYED])
    _headers(responses, ["429", "503"], ["Retry-After"])
    _headers(responses, ["401"], ["WWW-Authenticate"])
    _headers(responses, list(responses), ["RateLimit-Policy", "RateLimit"])


def _parameter(operation: dict, name: str, schema: dict | None = None) -> None:
    parameters = operation.setdefault("parameters", [])
    if not any(parameter.get("in") == "header" and parameter.get("name") == name for parameter in parameters):
        parameters.append({"in": "header", "name": name, "required": False, "description": PARAMETERS[name],
                           "schema": schema or {"type": "string"}})


def _headers(responses: dict, codes: list[str], names: list[str]) -> None:
    for code in codes:
        if code in responses and "$ref" not in responses[code]:
            headers = responses[code].setdefault("headers", {})
            for name in names:
                headers.setdefault(name, {"$ref": f"#/components/headers/{name}"})
