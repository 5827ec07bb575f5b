"""The schema's answers: every status each operation can give, with a schema and an
example (a drf-spectacular postprocessing hook, ``SPECTACULAR_SETTINGS``).

Errors are RFC 9457 problems (``petsite.problems``), so every error status shares one
``Problem`` component, under ``application/problem+json``. Which statuses an operation
can answer is a table here (:data:`ERRORS_OF`), beside those every operation can answer
(:data:`EVERY`): a client author reads one list, and schemathesis
(``tests/api/test_schemathesis.py``) fails the suite when the server answers a status the
table does not name. The views declare their successes; this hook owns the errors, the
examples, and the request rules a serializer cannot say (at least one photo; ``label``
required with ``wrong``; confidence from 0 to 1).
"""
from __future__ import annotations

import copy
from http import HTTPStatus

from django.conf import settings

from classifier.filters import ApiImageFilter
from petsite.problems import NOT_FOUND

from . import examples
from .pagination import MAX_PAGE_NUMBER

PROBLEM = "application/problem+json"
BINARY = {"type": "string", "format": "binary"}

# status: (what it means, an example's code and detail)
ERRORS = {
    "400": ("The request is not valid: `errors` says what and where (`pointer` into the body, `parameter`, "
            "`header`).", "invalid", "Some of what was sent is not valid: see `errors`."),
    "401": ("No token, or a wrong or revoked one (`WWW-Authenticate: Token`).", "not_authenticated",
            "Authentication credentials were not provided."),
    "403": ("Not allowed: model versions without the permission; a session request without its CSRF token.",
            "permission_denied", "You do not have permission to perform this action."),
    "404": ("No such image among yours, no such model version, page or address.", "not_found", NOT_FOUND),
    "406": ("`Accept` names no type this answers.", "not_acceptable",
            "Could not satisfy the request Accept header."),
    "409": ("Not now: no result to explain or confirm yet, or the first request with this `Idempotency-Key` is "
            "still being answered.", "no_result",
            "The image has no result to explain yet: ask again once it is finished and done."),
    "412": ("`If-Match` names another version of this answer.", "precondition_failed",
            "The image is not the version named in If-Match."),
    "413": ("The body is over `PETSITE_MAX_REQUEST_BYTES`.", "too_large",
            "The request is 231000000 bytes; at most 220200960 bytes are accepted, and 10485760 bytes per photo."),
    "415": ("A body type this does not read.", "unsupported_media_type",
            'Unsupported media type "text/plain" in request.'),
    "422": ("This `Idempotency-Key` was used before with other files.", "idempotency_key_reused",
            "This Idempotency-Key was sent before with other files. Use a new key for a new upload."),
    "429": ("Too many for now: the upload rate, or too many `?wait` requests of yours; `Retry-After` says when "
            "to ask again.", "rate_limited", "You have sent as many photos as we accept for now."),
    "500": ("A fault of ours, logged with `request_id`.", "server_error",
            "Something went wrong on our side. Try again in a moment."),
    "503": ("A service is briefly down, or the server holds as many `?wait` requests as it allows; "
            "`Retry-After` says when to ask again.", "database_unavailable",
            "The service is briefly unavailable. Try again in a moment."),
}
# Where an operation's usual problem is another than the status's first: (code, detail) of its example.
EXAMPLE_OF = {
    ("images_create", "400"): ("no_photo_stored", "The file is empty."),
    ("images_create", "409"): ("idempotency_key_in_use", "The first request with this Idempotency-Key is still being "
                               "answered. Send it again in a moment."),
    ("images_feedback_create", "409"): ("no_prediction", "There is no prediction to confirm yet: answer \"wrong\" "
                                        "with a label, or wait for the result."),
    ("images_retrieve", "429"): ("too_many_waits", "You have 2 requests waiting already: wait for one of them at a "
                                 "time, or ask without `wait`."),
    **{(name, "403"): ("csrf_failed", "The request's CSRF token is missing or out of date: reload the page and try "
                       "again.") for name in ("images_create", "images_destroy", "images_feedback_create",
                                              "images_explain_create")},
}
EVERY = ["401", "406", "500", "503"]  # any operation, whatever it is
SENT = ["403", "413"]  # any request that sends something: CSRF for sessions, the body's size
ERRORS_OF = {
    "images_list": ["400", "404", "412"],
    "images_create": [*SENT, "400", "409", "415", "422", "429"],
    "images_retrieve": ["400", "404", "412", "429"],
    "images_destroy": [*SENT, "404"],
    "images_feedback_create": [*SENT, "400", "404", "409", "415"],
    "images_explain_create": [*SENT, "404", "409"],
    "images_file_retrieve": ["404"],
    "images_thumbnail_retrieve": ["404"],
    "images_heatmap_retrieve": ["404"],
    "models_list": ["400", "403", "404", "412"],
    "models_retrieve": ["403", "404", "412"],
}
# What a stored photo is (classifier/formats.py: GIF and BMP become PNG, HEIC and AVIF JPEG);
# thumbnails and heatmaps are JPEG.
FILE_TYPES = {"images_file_retrieve": ["image/jpeg", "image/png", "image/webp"]}
# OpenAPI links: where an answer's ids lead (clients, and schemathesis's stateful phase, follow them).
ONE_IMAGE = ["images_retrieve", "images_feedback_create", "images_explain_create", "images_file_retrieve",
             "images_thumbnail_retrieve", "images_heatmap_retrieve", "images_destroy"]
LINKS = {
    ("images_list", "200"): ("id", "$response.body#/results/0/id", ONE_IMAGE),
    ("images_retrieve", "200"): ("id", "$response.body#/id", ONE_IMAGE[1:]),
    ("models_list", "200"): ("name", "$response.body#/results/0/name", ["models_retrieve"]),
}


def document_answers(result: dict, generator=None, request=None, public=None) -> dict:
    """Add the problems, examples and request rules (see the module's docstring)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(problem_schemas())
    _request_rules(schemas)
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                _document_operation(operation)
    return result


def problem_schemas() -> dict:
    """The ``Problem`` component (RFC 9457 with this API's members) and its ``errors`` items."""
    text = {"type": "string"}
    return {
        "Problem": {
            "type": "object",
            "description": "An error, as RFC 9457 problem details (`application/problem+json`). An upload's "
                           "problems also carry its `files` and `summary`, as its 202 does.",
            "required": ["type", "title", "status", "detail", "instance", "code"],
            "properties": {
                "type": {"type": "string", "enum": ["about:blank"], "description": "the status and `code` say it all"},
                "title": {**text, "description": "the status's phrase"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {**text, "description": "the problem in words for people"},
                "instance": {**text, "description": "the path asked for"},
                "code": {**text, "description": "the problem for programs: `invalid`, `not_found`, `rate_limited`, …"},
                "request_id": {**text, "description": "the request's id in the site's logs (`X-Request-ID`)"},
                "errors": {"type": "array", "items": {"$ref": "#/components/schemas/ProblemError"}},
                "files": {"type": "array", "items": {"$ref": "#/components/schemas/UploadOutcome"}},
                "summary": text,
            },
        },
        "ProblemError": {
            "type": "object",
            "description": "One thing that was wrong, and where: a JSON Pointer into the body (`#/label`, "
                           "`#/image/2` for the third file, `#` for the whole body), a query `parameter` or a "
                           "request `header`.",
            "required": ["code", "detail"],
            "properties": {"pointer": {"type": "string", "pattern": "^#(/.*)?$"}, "parameter": text, "header": text,
                           "code": text, "detail": text},
            # Exactly one place (petsite.problems.error_item).
            "oneOf": [{"required": ["pointer"]}, {"required": ["parameter"]}, {"required": ["header"]}],
        },
    }


def _request_rules(schemas: dict) -> None:
    """The rules the request serializers cannot state."""
    image = schemas["UploadRequest"]["properties"]["image"]
    # No maxItems: a request with more files is not refused; the files past the limit are, each
    # in `files` (the ones before it are stored), so more files are not an invalid request.
    image["minItems"] = 1
    image["description"] += (f" (send at most {settings.PETSITE_MAX_FILES_PER_UPLOAD} a request, "
                             "`PETSITE_MAX_FILES_PER_UPLOAD`: any further file is not read, and is refused in "
                             "`files` with code `too_many_files`)")
    detail = schemas["ModelVersionDetail"]["properties"]
    detail.update(metrics=metrics_schema(), **version_schemas())
    feedback = schemas["FeedbackRequest"]
    answer, label = feedback["properties"]["answer"], feedback["properties"]["label"]
    # With "correct" the label is not needed (an empty one, as a form's "choose…" sends it, is none).
    optional_label = {"description": label.get("description", ""),
                      "anyOf": [*label.get("allOf", [{"$ref": label.get("$ref")}]), {"type": "string", "enum": [""]}]}
    schemas["FeedbackRequest"] = {
        "description": feedback.get("description", ""),
        "oneOf": [
            {"type": "object", "title": "correct", "required": ["answer"],
             "properties": {"answer": _one_answer(answer, "correct"), "label": optional_label}},
            {"type": "object", "title": "wrong, with the right label", "required": ["answer", "label"],
             "properties": {"answer": _one_answer(answer, "wrong"), "label": label}},
        ],
    }


def _one_answer(answer: dict, value: str) -> dict:
    """``answer``'s schema (its description) allowing ``value`` only."""
    return {**{key: item for key, item in copy.deepcopy(answer).items() if key != "$ref"}, "type": "string",
            "enum": [value]}


def metrics_schema() -> dict:
    """A model version's ``metrics`` as training writes them (``ml.evaluation.Evaluation.to_metrics``,
    ``ml.outputs``); every member optional: an imported model may carry fewer."""
    number, count = {"type": "number"}, {"type": "integer", "minimum": 0}
    fraction = {"type": "number", "minimum": 0, "maximum": 1}
    headline = {"type": "object", "properties": {"num_images": count, "loss": number, "accuracy": fraction,
                                                 "error_rate": fraction, "top5_accuracy": fraction}}
    return {
        "type": "object",
        "description": "How the version did on its test split, as training wrote it.",
        "properties": {
            "split": {"type": "string"}, **headline["properties"],
            "classes": {"type": "array", "items": {"type": "string"}},
            "per_class": {"type": "array", "items": {"type": "object", "properties": {
                "class": {"type": "string"}, "name": {"type": "string"}, "precision": fraction, "recall": fraction,
                "f1": fraction, "support": count}}},
            "most_confused": {"type": "array", "items": {"type": "object", "properties": {
                "actual": {"type": "string"}, "predicted": {"type": "string"}, "count": count}}},
            "confusion_matrix": {"type": "array", "items": {"type": "array", "items": count}},
            "verdicts": {"type": "object", "additionalProperties": count,
                         "description": "how many test images get each verdict"},
            "calibration": {"type": "object", "description": "the verdicts' thresholds and how validation fared",
                            "properties": {"ood_score": {"type": "string"}, "ood_threshold": number,
                                           "ood_thresholds": {"type": "object", "additionalProperties": number},
                                           "probability_threshold": fraction,
                                           "accuracy_by_verdict": {"type": "object", "additionalProperties":
                                                                   {**fraction, "nullable": True}}}},
            "valid": {**headline, "description": "the same headline numbers on the validation split"},
            "evaluations": {"type": "object", "description": "later evaluations by split (`evaluate`): each as "
                            "these metrics", "additionalProperties": {"type": "object"}},
        },
    }


def version_schemas() -> dict:
    """The other JSON members of a model version (``registry.models.ModelVersion``), as
    training writes them (``ml.training.History``, ``ml.recipes``)."""
    return {
        "classes": {"type": "array", "items": {"type": "string"}, "description": "the breed keys it predicts, in "
                    "the order of its outputs"},
        "training_args": {"type": "object", "description": "the recipe and its settings"},
        "history": {"type": "object", "description": "the training run, epoch by epoch", "properties": {
            "precision": {"type": "string"}, "epochs": {"type": "array", "items": {"type": "object"}},
            "steps": {"type": "array", "items": {"type": "object"}}}},
    }


def _document_operation(operation: dict) -> None:
    name = operation.get("operationId", "")
    responses = operation.setdefault("responses", {})
    for status in [*EVERY, *ERRORS_OF.get(name, [])]:
        words, code, detail = ERRORS[status]
        code, detail = EXAMPLE_OF.get((name, status), (code, detail))
        example = {"type": "about:blank", "title": HTTPStatus(int(status)).phrase, "status": int(status),
                   "detail": detail, "instance": examples.INSTANCE, "code": code}
        responses[status] = {"description": words, "content": {PROBLEM: {
            "schema": {"$ref": "#/components/schemas/Problem"}, "example": example}}}
    for status, response in responses.items():
        for media, content in response.get("content", {}).items():
            if "example" not in content and "examples" not in content:
                example = examples.SUCCESS.get((name, status))
                if example is not None and media == "application/json":
                    content["example"] = example
    for (source, status), (parameter, value, targets) in LINKS.items():
        if source == name:
            responses[status]["links"] = {target: {"operationId": target, "parameters": {parameter: value}}
                                          for target in targets}
    if name in FILE_TYPES:
        responses["200"]["content"] = {media: {"schema": BINARY} for media in FILE_TYPES[name]}
    if "302" in responses:
        responses["302"]["headers"] = {"Location": {"schema": {"type": "string", "format": "uri"},
                                                    "description": "a signed URL of the file, for a while"}}
    for parameter in operation.get("parameters", []):
        _parameter_rules(name, parameter)


def _parameter_rules(operation: str, parameter: dict) -> None:
    if parameter.get("in") != "query":
        return
    if parameter["name"] == "page":
        parameter["schema"] = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_PAGE_NUMBER},
                                         {"type": "string", "enum": ["last"]}]}
    field = ApiImageFilter.base_filters.get(parameter["name"]) if operation == "images_list" else None
    if field is not None and "min_value" in field.extra:
        parameter["schema"].update(minimum=field.extra["min_value"], maximum=field.extra["max_value"])
