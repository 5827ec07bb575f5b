"""Every error under /api/ is one RFC 9457 problem (petsite/problems.py, api/exceptions.py):
a walk over every endpoint's error cases, each checked by ``assert_problem`` (type,
title, status, detail, instance, code, and where each error was)."""
from django.urls import reverse
from rest_framework.test import APIClient

from api import tokens, views
from tests.api.test_schema import api_endpoints
from tests.helpers import assert_problem, upload

IMAGES = reverse("api:image-list")
ALL_METHODS = {"get", "post", "put", "patch", "delete"}


def endpoint_urls(pet_pk: int) -> dict[str, set[str]]:
    """Every endpoint with its methods, at an image of ``pet_pk`` and the model "random-v1"."""
    return {url.replace("/1/", f"/{pet_pk}/").replace("some-model", "random-v1"): methods
            for url, methods in api_endpoints().items()}


def test_every_endpoint_refuses_a_missing_or_unknown_token_with_a_401_problem(anonymous, make_image):
    pet = make_image("pug")
    for url, methods in endpoint_urls(pet.pk).items():
        for method in methods:
            problem = assert_problem(getattr(anonymous, method)(url), 401, "not_authenticated")
            assert "credentials were not provided" in problem["detail"]
        anonymous.credentials(HTTP_AUTHORIZATION="Token not-a-key")
        response = anonymous.get(url)
        assert_problem(response, 401, "authentication_failed")
        assert response["WWW-Authenticate"] == "Token"
        anonymous.credentials()


def test_every_endpoint_answers_a_method_it_lacks_with_a_405_problem(superuser, make_image):
    pet = make_image("pug")
    for url, methods in endpoint_urls(pet.pk).items():
        for method in sorted(ALL_METHODS - methods):
            response = getattr(superuser, method)(url)
            assert_problem(response, 405, "method_not_allowed")
            assert set(response["Allow"].replace(" ", "").lower().split(",")) >= methods


def test_another_users_image_is_a_404_problem_at_every_image_endpoint(other, make_image):
    pet = make_image("pug")
    for url, methods in endpoint_urls(pet.pk).items():
        if "/images/" not in url or url == IMAGES:
            continue
        for method in methods:
            assert_problem(getattr(other, method)(url), 404, "not_found")


def test_unknown_addresses_under_the_api_are_404_problems(owner):
    for path in ("/api/v1/nothing/", "/api/nothing/", "/api/v2/images/", "/api/v1/images/not-a-number/"):
        problem = assert_problem(owner.get(path), 404, "not_found")
        assert problem["detail"] == "There is nothing at this address."
    assert_problem(APIClient().get("/api/v1/nothing/"), 404, "not_found")


def test_a_send_to_an_unknown_address_is_a_404_not_a_csrf_refusal(user):
    client = APIClient(enforce_csrf_checks=True)  # as a real server checks it
    client.credentials(HTTP_AUTHORIZATION=f"Token {tokens.issue_token(user).key}")
    for method, path in (("post", "/api/v1/nothing/"), ("post", "/api/v1/images/AAA/feedback/"),
                         ("delete", "/api/v1/images/AAA/")):
        assert_problem(getattr(client, method)(path), 404, "not_found")


def test_models_are_a_403_problem_without_the_permission(owner, model_version):
    for url in (reverse("api:model-list"), reverse("api:model-detail", args=[model_version.name])):
        assert_problem(owner.get(url), 403, "permission_denied")


def test_the_wrong_body_type_is_a_415_problem_and_an_unwanted_answer_type_a_406(owner, make_image):
    pet = make_image("pug")
    response = owner.generic("POST", IMAGES, b"{}", content_type="application/json")
    assert "application/json" in assert_problem(response, 415, "unsupported_media_type")["detail"]
    response = owner.generic("POST", reverse("api:image-feedback", args=[pet.pk]), b"x", content_type="text/plain")
    assert_problem(response, 415, "unsupported_media_type")
    assert_problem(owner.get(IMAGES, HTTP_ACCEPT="application/xml"), 406, "not_acceptable")


def test_bad_paging_is_a_400_naming_the_parameter_and_a_page_past_the_end_a_404(owner, make_image):
    make_image("pug")
    for query in ({"page": "0"}, {"page": "x"}, {"page": ""}, {"page_size": "0"}, {"page_size": "101"}):
        problem = assert_problem(owner.get(IMAGES, query), 400, "invalid")
        assert [item["parameter"] for item in problem["errors"]] == list(query)
    problem = assert_problem(owner.get(IMAGES, {"page": "2"}), 404, "not_found")
    assert problem["errors"] == [{"parameter": "page", "code": "not_found",
                                  "detail": "There is no page 2: the last is 1."}]


def test_an_upload_that_stores_nothing_is_a_400_problem_naming_each_file(owner, settings):
    settings.PETSITE_MAX_FILES_PER_UPLOAD = 3
    files = [upload("notes.jpg", b"not an image"), upload("empty.jpg", b"")]
    problem = assert_problem(owner.post(IMAGES, {"image": files}, format="multipart"), 400, "no_photo_stored")
    assert [(item["pointer"], item["code"]) for item in problem["errors"]] == [("#/image/0", "not_an_image"),
                                                                               ("#/image/1", "empty")]
    # The upload's own members, as in its 202: a client reads one shape either way.
    assert [file["name"] for file in problem["files"]] == ["notes.jpg", "empty.jpg"]
    assert problem["detail"] == "None of the 2 files was stored: `errors` gives each one's reason."
    assert problem["summary"].startswith("2 refused: notes.jpg")


def test_an_upload_refused_wholly_for_the_rate_is_a_429_problem_with_retry_after(owner, settings):
    settings.PETSITE_UPLOAD_RATE = "1/d"
    assert owner.post(IMAGES, {"image": upload("a.jpg")}, format="multipart").status_code == 202
    response = owner.post(IMAGES, {"image": upload("b.jpg")}, format="multipart")  # the throttle, before the view
    assert_problem(response, 429, "rate_limited")
    assert int(response["Retry-After"]) > 0


def test_an_upload_whose_every_file_is_past_the_rate_is_a_429_problem(owner, settings):
    settings.PETSITE_UPLOAD_RATE = "2/d"
    assert owner.post(IMAGES, {"image": upload("a.jpg")}, format="multipart").status_code == 202
    # One photo of the allowance is left: the throttle lets the request in, the first file takes it.
    response = owner.post(IMAGES, {"image": [upload("b.jpg"), upload("c.jpg")]}, format="multipart")
    assert response.status_code == 202
    response = owner.post(IMAGES, {"image": [upload("d.jpg")]}, format="multipart")
    assert_problem(response, 429, "rate_limited")
    assert int(response["Retry-After"]) > 0


def test_explaining_an_image_without_a_result_is_a_409_problem(owner, make_image):
    pet = make_image("", None, status="pending", predicted_breed="", top_k=[])
    assert_problem(owner.post(reverse("api:image-explain", args=[pet.pk])), 409, "no_result")


def test_a_server_error_is_a_500_problem(owner, make_image, monkeypatch):
    pet = make_image("pug")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(views.ImageDetail, "retrieve", broken)
    owner.raise_request_exception = False
    problem = assert_problem(owner.get(reverse("api:image-detail", args=[pet.pk])), 500, "server_error")
    assert "boom" not in problem["detail"]  # nothing of the server's insides


def test_the_unversioned_alias_answers_the_same_problems(owner, make_image):
    pet = make_image("pug")
    problem = assert_problem(owner.get(f"/api/images/{pet.pk}/", {"wait": "31"}), 400, "invalid")
    assert problem["instance"] == f"/api/images/{pet.pk}/"
    assert problem["errors"] == [{"parameter": "wait", "code": "invalid", "detail": "0 to 30 seconds"}]


def test_a_problem_names_the_request_id_of_the_logs(owner):
    problem = assert_problem(owner.get("/api/v1/nothing/", HTTP_X_REQUEST_ID="b0c1a3e4f5a6b7c8d9e0f1a2b3c4d5e6"),
                             404, "not_found")
    assert problem["request_id"]
