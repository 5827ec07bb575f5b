"""The API's documentation page (``/api/docs/``): the OpenAPI schema, rendered on the server.

Swagger UI, served here before, failed the accessibility checks the site's pages pass
(axe-core: contrast on 13 to 53 elements, buttons inside buttons, unlabelled inputs and
selects, no ``lang``) and drew everything with scripts. This page is the site's own
layout with no script: every endpoint with its parameters, body, answers and a curl
example, and every schema with its fields, from the same schema ``/api/schema/`` serves
(which tools such as code generators read). It works offline, like every page.

The functions turn the schema (a dict) into plain records the template lays out; HTML is
made only for types (links between schemas) and descriptions (``code`` and lists).
"""
from __future__ import annotations

import functools
import json
import re
import threading
from dataclasses import dataclass, field
from http import HTTPStatus

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from drf_spectacular.views import SpectacularAPIView

METHODS = ("get", "post", "put", "patch", "delete")
LONG_LIST = 8  # a description's list longer than this is folded (<details>)
# Words for a security scheme the schema leaves undescribed, by where it is sent.
SCHEME_WORDS = {"cookie": "The browser's session on the site, after logging in (the site's own pages)."}
REF_PREFIX = "#/components/schemas/"


# drf-spectacular loads its extensions during the first generation, not thread-safely: two
# first requests at once in one gunicorn process met a half-loaded extension and answered
# 500 (found by schemathesis's runs side by side). One generation at a time per process.
GENERATING = threading.Lock()


class SchemaView(SpectacularAPIView):
    """``/api/schema/``: drf-spectacular's view, generating under :data:`GENERATING`."""

    def get(self, request, *args, **kwargs):
        with GENERATING:
            return super().get(request, *args, **kwargs)


@functools.cache
def openapi_schema() -> dict:
    """The schema as ``/api/schema/`` serves it (drf-spectacular's generator, public), made
    once per process: it depends on the code only, and takes a quarter of a second."""
    from drf_spectacular.settings import spectacular_settings

    with GENERATING:
        generator = spectacular_settings.DEFAULT_GENERATOR_CLASS()
        return generator.get_schema(request=None, public=True)


# --- words and types ---------------------------------------------------------------------

_CODE = re.compile(r"``(.+?)``|`(.+?)`")


def _inline(text: str) -> str:
    """Escaped text with ``code`` and `code` as <code>."""
    out, last = [], 0
    for match in _CODE.finditer(text):
        out.append(escape(text[last:match.start()]))
        out.append(format_html("<code>{}</code>", match.group(1) or match.group(2)))
        last = match.end()
    out.append(escape(text[last:]))
    return "".join(out)


def prose(text: str | None) -> SafeString:
    """A schema description as HTML: paragraphs, "* item" lists, code spans; nothing else."""
    blocks = []
    for block in re.split(r"\n\s*\n", (text or "").strip()):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        if all(line.startswith(("* ", "- ")) for line in lines):
            items = "".join(f"<li>{_inline(line[2:])}</li>" for line in lines)
            listed = f"<ul>{items}</ul>"
            # A long list of values (the 37 breeds) folds away, opened on demand.
            blocks.append(f"<details><summary>{len(lines)} values</summary>{listed}</details>"
                          if len(lines) > LONG_LIST else listed)
        else:
            blocks.append(f"<p>{_inline(' '.join(lines))}</p>")
    return mark_safe("".join(blocks))  # noqa: S308 - every piece of text went through escape() (_inline)


def schema_name(ref: str) -> str:
    return ref.removeprefix(REF_PREFIX)


def anchor(kind: str, name: str) -> str:
    return f"{kind}-{re.sub(r'[^A-Za-z0-9_-]', '-', name)}"


def type_html(schema: dict) -> SafeString:
    """A schema's type in a few words, linking the named schemas: "array of <Image>",
    "string (date-time), or null", "one of 3 values"."""
    if "$ref" in schema:
        name = schema_name(schema["$ref"])
        words = format_html('<a href="#{}">{}</a>', anchor("schema", name), name)
    elif "allOf" in schema or "oneOf" in schema or "anyOf" in schema:
        parts = schema.get("allOf") or schema.get("oneOf") or schema.get("anyOf")
        words = mark_safe(" or ".join(type_html(part) for part in parts))  # noqa: S308 - joins SafeStrings
    elif schema.get("type") == "array":
        words = format_html("array of {}", type_html(schema.get("items", {})))
    elif schema.get("format") == "binary":
        words = mark_safe("file")
    elif "enum" in schema:
        values = [value for value in schema["enum"] if value not in ("", None)]
        words = format_html("{} (one of {} values)", schema.get("type", "string"), len(values))
    else:
        kind = schema.get("type", "object")
        words = format_html("{} ({})", kind, schema["format"]) if schema.get("format") else escape(kind)
    if schema.get("nullable"):
        words = format_html("{}, or null", words)
    return mark_safe(words)  # noqa: S308 - every branch made it with format_html() or escape()


def enum_values(schema: dict, described: str | None = "") -> list[str]:
    """The values an inline enum allows, unless its description lists them all already
    (drf-spectacular writes "* `key` - Name" lines); a named enum lists them on its own."""
    values = [json.dumps(value) if not isinstance(value, str) else value for value in schema.get("enum", [])
              if value not in ("", None)]
    return [] if all(f"`{value}`" in (described or "") for value in values) else values


# --- the records the template lays out ------------------------------------------------------


@dataclass
class Field:
    name: str
    type: SafeString
    description: SafeString
    required: bool = False
    read_only: bool = False
    location: str = ""  # parameters: path, query, header
    values: list[str] = field(default_factory=list)


@dataclass
class Answer:
    status: str
    meaning: SafeString
    body: list[tuple[str, SafeString]]  # (media type, type)


@dataclass
class Operation:
    anchor: str
    method: str
    path: str
    summary: str
    description: SafeString
    parameters: list[Field]
    body: list[tuple[str, SafeString]]
    body_required: bool
    answers: list[Answer]
    example: str


@dataclass
class Section:
    name: str
    anchor: str
    operations: list[Operation]


@dataclass
class SchemaDoc:
    name: str
    anchor: str
    description: SafeString
    fields: list[Field]
    values: list[str]


def _fields(schema: dict, prefix: str = "") -> list[Field]:
    """An object schema's fields; an inline object's own fields follow it as ``name.field``."""
    schema = one_object(schema)
    required = set(schema.get("required", []))
    fields = []
    for name, spec in schema.get("properties", {}).items():
        inline_object = spec.get("type") == "object" and "properties" in spec
        fields.append(Field(
            name=prefix + name, type=type_html(spec), description=prose(spec.get("description")),
            required=name in required, read_only=bool(spec.get("readOnly")),
            values=enum_values(spec, spec.get("description")),
        ))
        if inline_object:
            fields += _fields(spec, prefix=f"{prefix}{name}.")
    return fields


def one_object(schema: dict) -> dict:
    """A ``oneOf`` of objects as one: every branch's fields (the first's spec of each), required
    where every branch requires it (``FeedbackRequest``: ``label`` is required with "wrong" only)."""
    branches = schema.get("oneOf")
    if not branches or not all("properties" in branch for branch in branches):
        return schema
    properties = {}
    for branch in branches:
        for name, spec in branch["properties"].items():
            known = properties.get(name)
            if known is None:
                properties[name] = spec
            elif "enum" in known and "enum" in spec:  # every branch's values, in order
                properties[name] = {**known, "enum": list(dict.fromkeys(known["enum"] + spec["enum"]))}
    required = set.intersection(*(set(branch.get("required", [])) for branch in branches))
    return {**schema, "properties": properties, "required": [name for name in properties if name in required]}


def _example_value(spec: dict, components: dict):
    spec = components.get(schema_name(spec["$ref"]), {}) if "$ref" in spec else spec
    if spec.get("allOf"):
        return _example_value(spec["allOf"][0], components)
    if spec.get("enum"):
        return next(value for value in spec["enum"] if value not in ("", None))
    return {"integer": 1, "number": 0.5, "boolean": True, "array": []}.get(spec.get("type"), "text")


def curl_example(base_url: str, method: str, path: str, operation: dict, components: dict) -> str:
    """A command that calls the endpoint with a token: the path's ids filled in, a file for
    each file part, the required fields of a JSON body."""
    parameters = {p["name"]: p for p in operation.get("parameters", []) if p.get("in") == "path"}

    def fill(match: re.Match) -> str:
        kind = parameters.get(match.group(1), {}).get("schema", {}).get("type")
        return "1" if kind == "integer" else match.group(1).upper()

    lines = ["curl" + (f" -X {method.upper()}" if method not in ("get", "post") else ""),
             '-H "Authorization: Token $TOKEN"']
    content = operation.get("requestBody", {}).get("content", {})

    def body_schema(media: str) -> dict:
        spec = content[media]["schema"]
        spec = components.get(schema_name(spec["$ref"]), {}) if "$ref" in spec else spec
        return spec["oneOf"][0] if "oneOf" in spec else spec  # the first way of asking, as the example

    if "application/json" in content:  # the simplest for a program, where the endpoint takes it
        body = body_schema("application/json")
        example = {name: _example_value(spec, components) for name, spec in body.get("properties", {}).items()
                   if name in body.get("required", [])}
        lines += ['-H "Content-Type: application/json"', f"-d '{json.dumps(example)}'"]
    elif "multipart/form-data" in content:
        body = body_schema("multipart/form-data")
        for name, spec in body.get("properties", {}).items():
            if spec.get("format") == "binary" or spec.get("items", {}).get("format") == "binary":
                files = ["rex.jpg", "tom.jpg"] if spec.get("type") == "array" else ["rex.jpg"]
                lines += [f"-F {name}=@{file}" for file in files]
            elif name in body.get("required", []):
                lines.append(f"-F {name}={_example_value(spec, components)}")
    lines.append(base_url + re.sub(r"\{(\w+)\}", fill, path))
    return " \\\n  ".join(lines)


def _schema_words(spec: dict) -> str:
    if spec.get("enum") == [""]:  # drf-spectacular's BlankEnum, beside a field's other values
        return 'The empty string (""): no value yet.'
    return spec.get("description", "")


def _body(content: dict) -> list[tuple[str, SafeString]]:
    return [(media, type_html(spec.get("schema", {}))) for media, spec in content.items()]


def _operation(base_url: str, path: str, method: str, operation: dict, components: dict) -> Operation:
    parameters = [
        Field(name=p["name"], type=type_html(p.get("schema", {})), description=prose(p.get("description")),
              required=bool(p.get("required")), location=p.get("in", ""),
              values=enum_values(p.get("schema", {}), p.get("description")))
        for p in operation.get("parameters", [])
    ]
    answers = []
    for status, answer in operation.get("responses", {}).items():
        meaning = mark_safe(_inline(answer.get("description") or  # noqa: S308 - _inline escapes
                                    (HTTPStatus(int(status)).phrase if status.isdigit() else "")))
        answers.append(Answer(status=status, meaning=meaning, body=_body(answer.get("content", {}))))
    request_body = operation.get("requestBody", {})
    return Operation(
        anchor=anchor("op", operation.get("operationId") or f"{method}-{path}"), method=method.upper(), path=path,
        summary=operation.get("summary", ""), description=prose(operation.get("description")),
        parameters=parameters, body=_body(request_body.get("content", {})),
        body_required=bool(request_body.get("required")), answers=answers,
        example=curl_example(base_url, method, path, operation, components),
    )


def documentation(schema: dict, base_url: str) -> dict:
    """What the docs page shows: the API's title and words, how to authenticate, its
    endpoints by tag in the schema's order, and its schemas by name."""
    components = schema.get("components", {}).get("schemas", {})
    sections: dict[str, Section] = {}
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                operation = item[method]
                tag = (operation.get("tags") or ["other"])[0]
                section = sections.setdefault(tag, Section(tag.capitalize(), anchor("tag", tag), []))
                section.operations.append(_operation(base_url, path, method, operation, components))
    schemas = [
        SchemaDoc(name=name, anchor=anchor("schema", name), description=prose(_schema_words(spec)),
                  fields=_fields(spec), values=enum_values(spec, spec.get("description")))
        for name, spec in sorted(components.items(), key=lambda item: item[0].lower())
    ]
    schemes = [
        {"name": name, "where": f"{spec.get('in', '')} {spec.get('name', '')}".strip(),
         "description": prose(spec.get("description") or SCHEME_WORDS.get(spec.get("in"), ""))}
        for name, spec in schema.get("components", {}).get("securitySchemes", {}).items()
    ]
    info = schema.get("info", {})
    return {
        "title": info.get("title", "API"), "version": info.get("version", ""),
        "description": prose(info.get("description")), "sections": list(sections.values()),
        "schemas": schemas, "security_schemes": schemes, "base_url": base_url,
    }


def docs_page(request: HttpRequest) -> HttpResponse:
    """``/api/docs/``: for anyone, as the schema is."""
    context = documentation(openapi_schema(), request.build_absolute_uri("/").rstrip("/"))
    return render(request, "api/docs.html", context)
