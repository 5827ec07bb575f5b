"""Images through the API: upload, list, read, delete and answer, for each kind of caller."""

import pytest
from django.urls import reverse
from rest_framework.settings import api_settings

from classifier.models import PetImage
from classifier.serializers import image_status
from tests.classifier.test_upload_corpus import CORPUS, PILLOW_WORDS
from tests.helpers import assert_problem, stored_files, upload

IMAGES = reverse("api:image-list")
NOT_AN_IMAGE = b"shopping list: milk, eggs\n" * 10


def detail(pet) -> str:
    return reverse("api:image-detail", args=[pet.pk])


def feedback(pet) -> str:
    return reverse("api:image-feedback", args=[pet.pk])


# --- upload -----------------------------------------------------------------------------


def test_an_upload_is_accepted_with_the_image_and_where_to_poll_it(owner, user, settings):
    response = owner.post(IMAGES, {"image": upload("rex.jpg")}, format="multipart")
    assert response.status_code == 202, response.json()
    (outcome,) = response.json()["files"]
    pet = PetImage.objects.get(owner=user)
    assert outcome["ok"]
    assert outcome["created"]
    assert outcome["name"] == "rex.jpg"
    assert outcome["image"]["id"] == pet.pk
    assert outcome["image"]["status"] == "pending"
    assert outcome["image"]["url"] == f"http://testserver{detail(pet)}"
    assert response.json()["summary"] == "1 photo uploaded."

    polled = owner.get(outcome["image"]["url"])
    assert polled.status_code == 200
    assert polled.json()["id"] == pet.pk
    assert not polled.json()["finished"]


def test_several_files_each_with_its_outcome(owner, user, settings):
    files = [upload("a.jpg"), upload("notes.txt", NOT_AN_IMAGE, "text/plain"), upload("b.png"), upload("e.jpg", b"")]
    before = stored_files(settings.MEDIA_ROOT)
    response = owner.post(IMAGES, {"image": files}, format="multipart")

    assert response.status_code == 202
    a, notes, b, empty = response.json()["files"]
    assert [a["ok"], notes["ok"], b["ok"], empty["ok"]] == [True, False, True, False]
    assert notes["error"] == (
        "This file is not an image we can read; upload a JPEG, PNG, WebP, GIF, BMP, HEIC or AVIF photo."
    )
    assert (empty["error"], empty["code"], empty["image"]) == ("The file is empty.", "empty", None)
    stored = PetImage.objects.filter(owner=user)
    assert sorted(stored.values_list("pk", flat=True)) == sorted([a["image"]["id"], b["image"]["id"]])
    assert len(stored_files(settings.MEDIA_ROOT)) - len(before) == 2 * 2  # each photo and its thumbnail


def test_the_same_photo_again_is_the_image_already_stored(owner):
    photo = upload("rex.jpg")
    first = owner.post(IMAGES, {"image": photo}, format="multipart").json()["files"][0]
    photo.seek(0)
    again = owner.post(IMAGES, {"image": photo}, format="multipart")
    assert again.status_code == 202
    (outcome,) = again.json()["files"]
    assert outcome["ok"]
    assert not outcome["created"]
    assert outcome["image"]["id"] == first["image"]["id"]


def test_when_every_file_is_refused_the_answer_is_400_with_each_reason(owner, settings):
    before = stored_files(settings.MEDIA_ROOT)
    files = [upload("notes.txt", NOT_AN_IMAGE, "text/plain"), upload("empty.jpg", b"")]
    response = owner.post(IMAGES, {"image": files}, format="multipart")
    assert response.status_code == 400
    assert [(f["name"], f["ok"], f["code"]) for f in response.json()["files"]] == [
        ("notes.txt", False, "not_an_image"), ("empty.jpg", False, "empty")
    ]
    assert PetImage.objects.count() == 0
    assert stored_files(settings.MEDIA_ROOT) == before


@pytest.mark.parametrize("kind", [kind for kind, case in CORPUS.items() if case.refused])
def test_bad_files_are_refused_with_their_reason_never_a_500(owner, settings, kind):
    case = CORPUS[kind]
    before = stored_files(settings.MEDIA_ROOT)
    response = owner.post(IMAGES, {"image": upload(case.name, case.body(), case.content_type)}, format="multipart")
    assert response.status_code == 400
    (outcome,) = response.json()["files"]
    assert not outcome["ok"]
    assert case.refused in outcome["error"]
    assert not any(word in outcome["error"] for word in PILLOW_WORDS), outcome["error"]
    assert PetImage.objects.count() == 0
    assert stored_files(settings.MEDIA_ROOT) == before


@pytest.mark.parametrize("body", [{}, {"image": ""}, {"photo": "not a file"}])
def test_a_request_without_files_is_a_400_that_says_so(owner, body):
    response = owner.post(IMAGES, body, format="multipart")
    problem = assert_problem(response, 400, "invalid")
    assert problem["errors"] == [{"pointer": "#/image", "code": "required", "detail": "This field is required."}]
    assert problem["detail"] == "This field is required."


def test_files_past_the_limit_are_named_as_not_sent(owner, settings):
    settings.PETSITE_MAX_FILES_PER_UPLOAD = 2
    response = owner.post(IMAGES, {"image": [upload("a.jpg"), upload("b.jpg"), upload("c.jpg")]}, format="multipart")
    assert response.status_code == 202
    a, b, c = response.json()["files"]
    assert a["ok"]
    assert b["ok"]
    assert (c["ok"], c["name"], c["code"], c["image"]) == (False, "c.jpg", "too_many_files", None)
    assert c["error"] == "Not sent: 2 photos go at a time. Choose this one again to upload it."
    assert response.json()["summary"] == (
        "2 photos uploaded, 1 not sent (2 go at a time): c.jpg. Choose it again to upload it."
    )
    assert PetImage.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"image": "rex.jpg"}', "application/json"),
        (b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\nunterminated",
         "multipart/form-data; boundary=x"),
        (b"anything", "multipart/form-data"),  # no boundary
    ],
)
def test_a_malformed_body_is_a_4xx_never_a_500(owner, body, content_type):
    response = owner.generic("POST", IMAGES, body, content_type=content_type)
    assert response.status_code in (400, 415), response.content
    assert PetImage.objects.count() == 0


def test_anonymous_callers_may_not_upload(anonymous, db, settings):
    before = stored_files(settings.MEDIA_ROOT)
    response = anonymous.post(IMAGES, {"image": upload()}, format="multipart")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert PetImage.objects.count() == 0
    assert stored_files(settings.MEDIA_ROOT) == before


# --- the upload rate: one allowance for the site and the API ---------------------------------


def test_uploads_beyond_the_rate_get_429_with_retry_after(owner, other, user, settings):
    settings.PETSITE_UPLOAD_RATE = "2/d"  # a day: the counting window never ends during the test
    assert [owner.post(IMAGES, {"image": upload()}, format="multipart").status_code for _ in range(2)] == [202, 202]
    assert owner.get(IMAGES).status_code == 200  # reading does not count

    response = owner.post(IMAGES, {"image": upload()}, format="multipart")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 24 * 3600
    assert response.json()["detail"].startswith("You have sent as many photos as we accept for now.")
    assert PetImage.objects.filter(owner=user).count() == 2
    assert other.post(IMAGES, {"image": upload()}, format="multipart").status_code == 202  # an allowance each


def test_the_site_and_the_api_share_one_allowance(client, owner, user, settings):
    settings.PETSITE_UPLOAD_RATE = "2/d"
    client.force_login(user)
    assert client.post(reverse("classifier:upload"), {"image": upload()}).status_code == 302
    assert owner.post(IMAGES, {"image": upload()}, format="multipart").status_code == 202
    assert owner.post(IMAGES, {"image": upload()}, format="multipart").status_code == 429
    assert client.post(reverse("classifier:upload"), {"image": upload()}).status_code == 429


def test_the_rate_counts_photos_the_files_past_it_are_refused(owner, user, settings):
    settings.PETSITE_UPLOAD_RATE = "3/d"
    response = owner.post(IMAGES, {"image": [upload(f"{n}.jpg") for n in range(5)]}, format="multipart")
    assert response.status_code == 202
    files = response.json()["files"]
    assert [f["ok"] for f in files] == [True, True, True, False, False]
    assert {f["code"] for f in files[3:]} == {"rate_limited"}
    assert "Please wait" in files[3]["error"]
    assert PetImage.objects.filter(owner=user).count() == 3


# --- list --------------------------------------------------------------------------------


def test_the_list_is_the_callers_own_images_newest_first(owner, other, superuser, make_image, other_user):
    mine = [make_image("pug"), make_image("beagle"), make_image("Persian")]
    theirs = make_image("boxer", owner=other_user)
    response = owner.get(IMAGES)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [image["id"] for image in body["results"]] == [pet.pk for pet in reversed(mine)]
    assert [image["id"] for image in other.get(IMAGES).json()["results"]] == [theirs.pk]
    assert superuser.get(IMAGES).json()["count"] == 0  # the gallery's rule: everyone sees their own


def test_the_list_takes_the_gallerys_filters(owner, make_image):
    pug = make_image("pug", 0.9)
    unsure_cat = make_image("Persian", 0.3)
    waiting = make_image("", None, status="pending", predicted_breed="", top_k=[])

    def ids(**query) -> list[int]:
        response = owner.get(IMAGES, query)
        assert response.status_code == 200, response.json()
        return [image["id"] for image in response.json()["results"]]

    assert ids(breed="pug") == [pug.pk]
    assert ids(species="cat") == [unsure_cat.pk]
    assert ids(status="pending") == [waiting.pk]
    assert ids(min_confidence=0.5) == [pug.pk]  # fractions, as `confidence` is
    assert ids(max_confidence=0.5) == [unsure_cat.pk]
    assert ids(min_confidence=0, max_confidence=1) == [unsure_cat.pk, pug.pk]  # newest first
    assert ids(sort="confident") == [pug.pk, unsure_cat.pk, waiting.pk]
    assert ids(sort="oldest") == [pug.pk, unsure_cat.pk, waiting.pk]


def test_a_bad_filter_value_is_a_400_that_names_it(owner, make_image):
    make_image("pug")
    problem = assert_problem(owner.get(IMAGES, {"breed": "dragon", "min_confidence": "lots"}), 400, "invalid")
    assert {(item["parameter"], item["code"]) for item in problem["errors"]} == {
        ("breed", "invalid_choice"), ("min_confidence", "invalid")
    }


@pytest.mark.parametrize(
    ("query", "parameter", "code"),
    [
        ({"min_confidence": "1.5"}, "min_confidence", "max_value"),  # a fraction, as `confidence`: not percent
        ({"max_confidence": "-0.1"}, "max_confidence", "min_value"),
        ({"min_confidence": "1e51"}, "min_confidence", "max_value"),
        ({"min_confidence": "nan"}, "min_confidence", "invalid"),
        ({"status": ""}, "status", "blank"),  # the enums have no empty value
        ({"feedback": ""}, "feedback", "blank"),
        ({"sort": ""}, "sort", "blank"),
        ({"status": "AAA"}, "status", "invalid_choice"),
        ({"verdict": "maybe"}, "verdict", "invalid_choice"),
    ],
)
def test_filters_are_strict(owner, make_image, query, parameter, code):
    make_image("pug", 0.9)
    problem = assert_problem(owner.get(IMAGES, query), 400, "invalid")
    assert {(item["parameter"], item["code"]) for item in problem["errors"]} == {(parameter, code)}


def test_the_list_is_paginated(owner, make_image, settings):
    pets = [make_image("pug") for _ in range(3)]
    size = api_settings.PAGE_SIZE
    assert size == settings.PETSITE_GALLERY_PAGE_SIZE
    for _ in range(size - 1):
        make_image("pug")
    first = owner.get(IMAGES).json()
    assert first["count"] == size + 2
    assert len(first["results"]) == size
    assert first["previous"] is None
    second = owner.get(first["next"]).json()
    assert [image["id"] for image in second["results"]] == [pets[1].pk, pets[0].pk]
    assert owner.get(IMAGES, {"page": 99}).status_code == 404


def test_anonymous_callers_get_401(anonymous, make_image):
    pet = make_image("pug")
    assert anonymous.get(IMAGES).status_code == 401
    assert anonymous.get(detail(pet)).status_code == 401
    assert anonymous.delete(detail(pet)).status_code == 401
    assert anonymous.post(feedback(pet), {"answer": "correct"}, format="json").status_code == 401
    assert PetImage.objects.filter(pk=pet.pk, is_correct=None).exists()


# --- one image ------------------------------------------------------------------------------


def test_an_image_is_the_sites_status_plus_the_apis_fields(owner, make_image):
    pet = make_image("pug", 0.9)
    body = owner.get(detail(pet)).json()
    site = image_status(pet)  # one serialisation, not two; the API's URLs are absolute, the site's paths
    urls = {key for key in site if key.endswith("_url") and site[key]}
    assert urls == {"detail_url", "thumbnail_url"}
    assert {key: body[key] for key in site if key not in urls} == {key: site[key] for key in site if key not in urls}
    assert all(body[key] == f"http://testserver{site[key]}" for key in urls)
    assert body["url"].endswith(detail(pet))
    assert body["original_name"] == "rex.jpg"
    assert (body["headline"], body["confidence"], body["finished"]) == ("Pug", 0.9, True)
    assert body["top_k"] == [{"breed": "pug", "name": "Pug", "probability": 0.9}]
    assert (body["width"], body["height"], body["is_correct"]) == (pet.width, pet.height, None)


@pytest.mark.parametrize("caller", ["other", "staff", "reviewer", "superuser"])
def test_another_callers_image_does_not_exist_for_them(request, make_image, caller):
    pet = make_image("pug")
    client = request.getfixturevalue(caller)
    assert client.get(detail(pet)).status_code == 404
    assert client.delete(detail(pet)).status_code == 404
    assert client.post(feedback(pet), {"answer": "correct"}, format="json").status_code == 404
    pet.refresh_from_db()
    assert pet.is_correct is None


def test_an_id_that_does_not_exist_is_a_404(owner):
    assert owner.get(reverse("api:image-detail", args=[424242])).status_code == 404


def test_the_owner_deletes_an_image_and_all_its_files(owner, make_image, settings, django_capture_on_commit_callbacks):
    keep = make_image("beagle")
    before = stored_files(settings.MEDIA_ROOT)
    pet = make_image("pug")
    files = set(stored_files(settings.MEDIA_ROOT)) - set(before)
    assert len(files) == 2
    with django_capture_on_commit_callbacks(execute=True):  # the files go once the deletion is committed
        response = owner.delete(detail(pet))
    assert response.status_code == 204
    assert not PetImage.objects.filter(pk=pet.pk).exists()
    assert PetImage.objects.filter(pk=keep.pk).exists()
    assert stored_files(settings.MEDIA_ROOT) == before
    assert owner.get(detail(pet)).status_code == 404


def test_the_api_does_not_take_other_methods(owner, make_image):
    pet = make_image("pug")
    assert owner.put(detail(pet), {"status": "done"}, format="json").status_code == 405
    assert owner.patch(detail(pet), {"status": "done"}, format="json").status_code == 405
    assert owner.get(feedback(pet)).status_code == 405


# --- feedback ------------------------------------------------------------------------------


def test_the_owner_says_wrong_with_the_right_breed(owner, make_image):
    pet = make_image("pug", 0.9)
    response = owner.post(feedback(pet), {"answer": "wrong", "label": "beagle"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["is_correct"], body["true_label"], body["true_label_name"]) == (False, "beagle", "Beagle")
    pet.refresh_from_db()
    assert (pet.is_correct, pet.true_breed) == (False, "beagle")
    assert pet.feedback_at is not None
    assert pet in PetImage.objects.needing_review()


def test_the_owner_confirms_and_a_form_body_works_too(owner, make_image):
    pet = make_image("pug", 0.9)
    response = owner.post(feedback(pet), {"answer": "correct"})  # multipart, as a form sends it
    assert response.status_code == 200
    assert response.json()["is_correct"] is True
    pet.refresh_from_db()
    assert (pet.is_correct, pet.true_breed) == (True, "pug")


def test_wrong_with_the_predicted_breed_means_correct(owner, make_image):
    pet = make_image("pug", 0.9)
    assert owner.post(feedback(pet), {"answer": "wrong", "label": "pug"}, format="json").json()["is_correct"] is True


@pytest.mark.parametrize(
    ("body", "pointer", "code", "words"),
    [
        ({}, "#/answer", "required", "This field is required."),
        ({"answer": "maybe"}, "#/answer", "invalid_choice", "Select a valid choice."),
        ({"answer": "wrong"}, "#/label", "required", "Choose the right breed"),
        ({"answer": "wrong", "label": "dragon"}, "#/label", "invalid_choice", "Select a valid choice."),
        ([1, 2], "#", "invalid", "Send an object"),
        ("correct", "#", "invalid", "Send an object"),
    ],
)
def test_a_bad_answer_is_a_400_with_the_forms_reason(owner, make_image, body, pointer, code, words):
    pet = make_image("pug", 0.9)
    problem = assert_problem(owner.post(feedback(pet), body, format="json"), 400, "invalid")
    [error] = problem["errors"]
    assert (error["pointer"], error["code"]) == (pointer, code)
    assert words in error["detail"]
    pet.refresh_from_db()
    assert pet.is_correct is None


def test_nothing_to_confirm_before_a_result_is_a_conflict(owner, make_image):
    pet = make_image("", None, status="pending", predicted_breed="", top_k=[])
    problem = assert_problem(owner.post(feedback(pet), {"answer": "correct"}, format="json"), 409, "no_prediction")
    assert "no prediction to confirm yet" in problem["detail"]
    # "wrong" with a label needs no prediction: the owner knows the breed.
    assert owner.post(feedback(pet), {"answer": "wrong", "label": "pug"}, format="json").status_code == 200


def test_invalid_json_is_a_400(owner, make_image):
    pet = make_image("pug")
    response = owner.generic("POST", feedback(pet), b'{"answer": ', content_type="application/json")
    assert "JSON parse error" in assert_problem(response, 400, "unreadable_body")["detail"]
