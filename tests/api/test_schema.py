"""The OpenAPI schema is valid and names every endpoint of the API (its docs page: test_docs_page.py)."""
import copy
import re
import threading
import time

import jsonschema
import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, get_resolver, reverse

# The API's URLs that are not endpoints: the schema, its docs page, the token page of the
# site, and the 404 answer to every other address.
NOT_ENDPOINTS = {"schema", "docs", "token", "not-found"}
SAMPLE_KWARGS = {"pk": 1, "name": "some-model"}


def api_endpoints() -> dict[str, set[str]]:
    """Each endpoint's path (with sample values) and the HTTP methods its view answers."""
    (api,) = [pattern for pattern in get_resolver().url_patterns if getattr(pattern, "namespace", None) == "api"]
    endpoints = {}
    for pattern in api.url_patterns:
        if getattr(pattern, "namespace", None) == "unversioned":
            continue  # /api/images/…: the alias of /api/v1/images/…, the same views (api/urls.py)
        assert isinstance(pattern, URLPattern)
        if pattern.name in NOT_ENDPOINTS:
            continue
        view = pattern.callback.cls
        url = reverse(f"api:{pattern.name}", kwargs={k: SAMPLE_KWARGS[k] for k in pattern.pattern.regex.groupindex})
        endpoints[url] = {method for method in view.http_method_names if hasattr(view, method)} - {"options"}
    return endpoints


@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> dict:
    """The schema as `manage.py spectacular` writes it, validated against the OpenAPI 3 spec,
    any warning of the generator failing the test."""
    path = tmp_path_factory.mktemp("schema") / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return yaml.safe_load(path.read_text())


def test_the_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])


def test_every_endpoint_and_method_is_in_the_schema(schema):
    patterns = {re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"): path for path in schema["paths"]}
    endpoints = api_endpoints()
    assert len(endpoints) == 9
    for url, methods in endpoints.items():
        documented = [path for pattern, path in patterns.items() if pattern.match(url)]
        assert len(documented) == 1, f"{url} is not in the schema"
        operations = {method.upper() for method in schema["paths"][documented[0]]}
        assert operations == {method.upper() for method in methods} - {"HEAD"}, url
    assert len(schema["paths"]) == len(endpoints)  # and nothing else


def test_the_schema_describes_uploads_and_the_gallerys_filters(schema):
    images = schema["paths"]["/api/v1/images/"]
    assert set(images["post"]["responses"]) == {"202", "400", "401", "403", "406", "409", "413", "415", "422", "429",
                                                "500", "503"}  # 409, 422: Idempotency-Key
    upload = images["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].split("/")[-1]
    assert schema["components"]["schemas"][upload]["properties"]["image"]["minItems"] == 1
    assert "multipart/form-data" in images["post"]["requestBody"]["content"]
    parameters = {parameter["name"]: parameter for parameter in images["get"]["parameters"]}
    assert {"breed", "species", "status", "feedback", "min_confidence", "max_confidence", "sort", "page"} <= set(
        parameters
    )
    assert "pug" in parameters["breed"]["schema"]["enum"]
    assert parameters["min_confidence"]["schema"] == {"type": "number", "minimum": 0, "maximum": 1}  # as `confidence`


def operations(schema) -> list[tuple[str, dict]]:
    return [(f"{method.upper()} {path}", operation) for path, methods in schema["paths"].items()
            for method, operation in methods.items()]


def test_every_operation_documents_its_errors_as_problems_with_examples(schema):
    for name, operation in operations(schema):
        responses = operation["responses"]
        assert {"401", "406", "500", "503"} <= set(responses), name
        errors = {status: response for status, response in responses.items() if int(status) >= 400}
        for status, response in errors.items():
            content = response["content"]["application/problem+json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Problem"}, (name, status)
            assert content["example"]["status"] == int(status)
        assert "WWW-Authenticate" in responses["401"]["headers"]
        assert "Retry-After" in responses["503"]["headers"]


def test_every_answer_with_a_json_body_has_an_example(schema):
    for name, operation in operations(schema):
        for status, response in operation["responses"].items():
            for media, content in response.get("content", {}).items():
                if "json" in media:
                    assert "example" in content, (name, status, media)


def test_the_rules_a_serializer_cannot_say_are_in_the_schema(schema):
    schemas = schema["components"]["schemas"]
    correct, wrong = schemas["FeedbackRequest"]["oneOf"]
    assert (correct["properties"]["answer"]["enum"], correct["required"]) == (["correct"], ["answer"])
    assert (wrong["properties"]["answer"]["enum"], wrong["required"]) == (["wrong"], ["answer", "label"])
    assert schemas["ModelVersionDetail"]["properties"]["metrics"]["properties"]["accuracy"]["maximum"] == 1
    file = schema["paths"]["/api/v1/images/{id}/file/"]["get"]["responses"]["200"]["content"]
    assert set(file) == {"image/jpeg", "image/png", "image/webp"}  # as stored (classifier/formats.py)
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail", "instance", "code"}


def openapi_to_json_schema(node):
    """OpenAPI 3.0's ``nullable`` as JSON Schema says it (a type, or null), everywhere in ``node``."""
    if isinstance(node, list):
        return [openapi_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: openapi_to_json_schema(value) for key, value in node.items()}
    if node.pop("nullable", False):
        node = {"anyOf": [node, {"type": "null"}]}
    return node


def validator(schema: dict, subschema: dict) -> jsonschema.Draft7Validator:
    """A validator of ``subschema`` whose ``$ref``s resolve in the whole schema."""
    root = openapi_to_json_schema({"components": copy.deepcopy(schema["components"]), "allOf": [subschema]})
    return jsonschema.Draft7Validator(root)


def test_every_example_is_valid_by_its_own_schema(schema):
    checked = 0
    for name, operation in operations(schema):
        for status, response in operation["responses"].items():
            for media, content in response.get("content", {}).items():
                if "example" in content:
                    errors = list(validator(schema, content["schema"]).iter_errors(content["example"]))
                    assert not errors, (name, status, media, [error.message for error in errors[:3]])
                    checked += 1
    assert checked >= 60  # every problem and success of the 11 operations


def test_the_requests_rules_are_the_servers(schema, settings):
    schemas = schema["components"]["schemas"]
    image = schemas["UploadRequest"]["properties"]["image"]
    assert (image["minItems"], "maxItems" in image) == (1, False)  # past the limit, files are refused one by one
    feedback = validator(schema, {"$ref": "#/components/schemas/FeedbackRequest"})
    assert feedback.is_valid({"answer": "correct"})
    assert feedback.is_valid({"answer": "correct", "label": ""})  # a form's "choose…": no label (FeedbackForm)
    assert feedback.is_valid({"answer": "wrong", "label": "not_a_pet"})
    for refused in [{"answer": "wrong"}, {"answer": "wrong", "label": ""}, {"answer": "correct", "label": "cat"},
                    {"answer": "maybe"}, {"answer": "wrong", "label": None}, {}]:
        assert not feedback.is_valid(refused), refused
    where = validator(schema, {"$ref": "#/components/schemas/ProblemError"})
    assert where.is_valid({"pointer": "#/image/2", "code": "empty", "detail": "The file is empty."})
    assert not where.is_valid({"code": "invalid", "detail": "Nowhere."})  # each error says where
    assert not where.is_valid({"pointer": "#/label", "parameter": "status", "code": "invalid", "detail": "Both."})


def test_each_problems_example_is_the_one_that_operation_gives(schema):
    def example(path, method, status):
        response = schema["paths"][path][method]["responses"][status]
        return response["content"]["application/problem+json"]["example"]["code"]

    assert example("/api/v1/images/", "post", "409") == "idempotency_key_in_use"
    assert "Retry-After" in schema["paths"]["/api/v1/images/"]["post"]["responses"]["409"]["headers"]
    assert example("/api/v1/images/{id}/feedback/", "post", "409") == "no_prediction"
    assert example("/api/v1/images/{id}/explain/", "post", "409") == "no_result"
    assert example("/api/v1/images/{id}/", "get", "429") == "too_many_waits"
    assert example("/api/v1/models/", "get", "403") == "permission_denied"


def test_the_schema_is_served(anonymous, db):
    response = anonymous.get(reverse("api:schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert "/api/v1/images/" in response.json()["paths"]


def test_the_schema_is_generated_one_request_at_a_time(db, monkeypatch):
    """drf-spectacular's first generation is not thread-safe (two at once answered 500)."""
    from drf_spectacular.generators import SchemaGenerator

    inside, most = [], []
    real = SchemaGenerator.get_schema

    def counted(self, *args, **kwargs):
        inside.append(1)
        most.append(len(inside))
        time.sleep(0.05)
        try:
            return real(self, *args, **kwargs)
        finally:
            inside.pop()

    monkeypatch.setattr(SchemaGenerator, "get_schema", counted)
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(Client().get(reverse("api:schema")).status_code))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 4
    assert max(most) == 1
