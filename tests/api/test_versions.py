"""The API under /api/v1/, with /api/ as an alias of the same views; the pages for people stay put."""
import pytest
from django.core.management import call_command
from django.test import RequestFactory
from django.urls import resolve, reverse

from petsite.problems import wants_problem
from tests.helpers import upload

PROBLEM = "application/problem+json"


def test_names_resolve_to_v1_and_the_pages_stay_where_they_were():
    assert reverse("api:image-list") == "/api/v1/images/"
    assert reverse("api:image-detail", args=[7]) == "/api/v1/images/7/"
    assert reverse("api:model-detail", args=["m1"]) == "/api/v1/models/m1/"
    assert reverse("api:unversioned:image-list") == "/api/images/"
    assert (reverse("api:docs"), reverse("api:schema"), reverse("api:token")) == (
        "/api/docs/", "/api/schema/", "/api/token/")
    assert resolve("/api/images/3/").func.view_class is resolve("/api/v1/images/3/").func.view_class


def test_both_addresses_answer_the_same_with_v1_urls(owner, make_image):
    pet = make_image()
    v1, alias = owner.get(f"/api/v1/images/{pet.pk}/"), owner.get(f"/api/images/{pet.pk}/")
    assert v1.status_code == alias.status_code == 200
    assert v1.json() == alias.json()
    assert alias.json()["url"] == f"http://testserver/api/v1/images/{pet.pk}/"
    assert alias.json()["files"]["file"] == f"http://testserver/api/v1/images/{pet.pk}/file/"
    assert owner.get("/api/images/").json()["results"][0]["id"] == pet.pk


def test_an_upload_to_the_alias_is_located_under_v1(owner):
    response = owner.post("/api/images/", {"image": upload()}, format="multipart")
    assert response.status_code == 202
    assert response["Location"].startswith("http://testserver/api/v1/images/")


@pytest.mark.parametrize("path", ["/api/v1/no-such-thing/", "/api/v2/images/", "/api/no-such-thing/"])
def test_unknown_addresses_under_either_prefix_are_problems(owner, path):
    response = owner.get(path)
    assert (response.status_code, response["Content-Type"]) == (404, PROBLEM)


@pytest.mark.parametrize(("path", "problem"), [
    ("/api/v1/images/", True), ("/api/images/", True), ("/api/v1/images/1/file/", True),
    ("/api/docs/", False), ("/api/token/", False), ("/api/v1/docs/", True),
])
def test_wants_problem_for_both_prefixes_but_the_pages(path, problem):
    assert wants_problem(RequestFactory().get(path, HTTP_ACCEPT="text/html")) is problem


@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> dict:
    import yaml

    path = tmp_path_factory.mktemp("schema") / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return yaml.safe_load(path.read_text())


def test_the_schema_lists_each_endpoint_once_under_v1(schema):
    paths = list(schema["paths"])
    assert len(paths) == 9
    assert all(path.startswith("/api/v1/") for path in paths), paths
    assert "/api/v1/images/{id}/" in paths


def test_the_schema_documents_the_headers(schema):
    paths = schema["paths"]
    upload, listing = paths["/api/v1/images/"]["post"], paths["/api/v1/images/"]["get"]
    header_parameters = {p["name"] for p in upload["parameters"] if p["in"] == "header"}
    assert header_parameters == {"Idempotency-Key"}
    assert {"Location", "Retry-After", "Idempotent-Replayed", "RateLimit", "RateLimit-Policy"} <= set(
        upload["responses"]["202"]["headers"])
    assert {"409", "422"} <= set(upload["responses"])
    assert {"ETag", "Link", "RateLimit"} <= set(listing["responses"]["200"]["headers"])
    assert "304" in listing["responses"]
    assert {"If-None-Match"} == {p["name"] for p in listing["parameters"] if p["in"] == "header"}
    page_size = next(p for p in listing["parameters"] if p["name"] == "page_size")
    assert (page_size["schema"]["minimum"], page_size["schema"]["maximum"]) == (1, 100)
    file = paths["/api/v1/images/{id}/file/"]["get"]
    assert {"ETag", "Last-Modified"} <= set(file["responses"]["200"]["headers"])
    assert {"If-None-Match", "If-Modified-Since"} <= {p["name"] for p in file["parameters"]}
    for operations in paths.values():
        for operation in operations.values():
            for response in operation["responses"].values():
                assert "RateLimit-Policy" in response.get("headers", {})
    assert set(schema["components"]["headers"]) >= {"RateLimit", "RateLimit-Policy", "ETag", "Link"}
