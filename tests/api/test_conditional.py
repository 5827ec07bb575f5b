"""Conditional requests: strong ETags on image reads and lists, validators on files, 304 answers."""
import os

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils.http import http_date

from classifier.models import PetImage
from tests.helpers import image_bytes, upload

IMAGES = reverse("api:image-list")


def detail(pet) -> str:
    return reverse("api:image-detail", args=[pet.pk])


def etag_of(client, url) -> str:
    response = client.get(url)
    assert response.status_code == 200
    etag = response["ETag"]
    assert etag.startswith('"')  # strong: no W/
    assert etag.endswith('"')
    return etag


def assert_not_modified(response, etag: str) -> None:
    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag
    assert "RateLimit-Policy" in response  # the 304 carries the allowance too


def test_a_read_answers_304_while_the_image_is_unchanged(owner, make_image):
    url = detail(make_image())
    etag = etag_of(owner, url)
    assert etag_of(owner, url) == etag  # the same answer, the same tag
    assert_not_modified(owner.get(url, HTTP_IF_NONE_MATCH=etag), etag)
    assert_not_modified(owner.get(url, HTTP_IF_NONE_MATCH="*"), etag)
    assert_not_modified(owner.get(url, HTTP_IF_NONE_MATCH=f'"other", W/{etag}'), etag)  # lists; weak comparison
    fresh = owner.get(url, HTTP_IF_NONE_MATCH='"other"')
    assert fresh.status_code == 200
    assert fresh.content


def test_the_etag_changes_with_feedback(owner, make_image):
    pet = make_image("pug")
    etag = etag_of(owner, detail(pet))
    list_etag = etag_of(owner, IMAGES)
    answered = owner.post(reverse("api:image-feedback", args=[pet.pk]), {"answer": "wrong", "label": "beagle"},
                          format="json")
    assert answered.status_code == 200
    assert owner.get(detail(pet), HTTP_IF_NONE_MATCH=etag).status_code == 200
    assert etag_of(owner, detail(pet)) != etag
    assert etag_of(owner, IMAGES) != list_etag


def test_the_etag_changes_when_the_image_is_classified(owner, user):
    response = owner.post(IMAGES, {"image": upload()}, format="multipart")
    pet = PetImage.objects.get(owner=user)
    etag, list_etag = etag_of(owner, detail(pet)), etag_of(owner, IMAGES)
    PetImage.objects.filter(pk=pet.pk).update(status=PetImage.Status.DONE, predicted_breed="pug", confidence=0.9,
                                              top_k=[{"breed": "pug", "probability": 0.9}])
    changed = owner.get(detail(pet), HTTP_IF_NONE_MATCH=etag)
    assert (changed.status_code, changed.json()["finished"]) == (200, True)
    assert changed["ETag"] != etag
    assert etag_of(owner, IMAGES) != list_etag
    assert response.status_code == 202


def test_a_list_answers_304_until_a_photo_is_added(owner, make_image):
    make_image()
    etag = etag_of(owner, IMAGES)
    assert_not_modified(owner.get(IMAGES, HTTP_IF_NONE_MATCH=etag), etag)
    make_image("beagle")
    assert owner.get(IMAGES, HTTP_IF_NONE_MATCH=etag).status_code == 200


def test_callers_never_share_a_tag(owner, other, make_image, other_user):
    make_image()
    make_image(owner=other_user)
    assert etag_of(owner, IMAGES) != etag_of(other, IMAGES)


# --- files: the API's and the site's -----------------------------------------------------


@pytest.fixture
def pet_with_heatmap(make_image):
    pet = make_image()
    pet.heatmap.save("heatmap.jpg", ContentFile(image_bytes()))
    return pet


FILE_URLS = [
    ("api:image-file", "image"), ("api:image-thumbnail", "thumbnail"), ("api:image-heatmap", "heatmap"),
    ("classifier:image_file", "image"), ("classifier:heatmap", "heatmap"),
]


@pytest.mark.parametrize(("name", "kind"), FILE_URLS)
def test_files_have_validators_and_answer_304(owner, client, user, pet_with_heatmap, name, kind):
    caller = owner if name.startswith("api:") else client
    client.force_login(user)
    url = reverse(name, args=[pet_with_heatmap.pk])
    response = caller.get(url)
    assert response.status_code == 200
    etag, modified = response["ETag"], response["Last-Modified"]
    assert etag.startswith('"')
    mtime = os.stat(getattr(pet_with_heatmap, kind).path).st_mtime
    assert modified == http_date(int(mtime))
    assert response["Cache-Control"].startswith("private")
    assert {"Authorization", "Cookie"} <= {v.strip() for v in response["Vary"].split(",")}
    b"".join(response.streaming_content)

    for headers in [{"HTTP_IF_NONE_MATCH": etag}, {"HTTP_IF_MODIFIED_SINCE": modified}]:
        again = caller.get(url, **headers)
        assert again.status_code == 304, headers
        assert (again["ETag"], again["Last-Modified"]) == (etag, modified)
        assert again.content == b""
    # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
    assert caller.get(url, HTTP_IF_NONE_MATCH='"old"', HTTP_IF_MODIFIED_SINCE=modified).status_code == 200
    assert caller.get(url, HTTP_IF_MODIFIED_SINCE=http_date(int(mtime) - 60)).status_code == 200


def test_a_heatmap_made_again_has_a_new_tag_and_is_checked_at_each_use(owner, pet_with_heatmap):
    url = reverse("api:image-heatmap", args=[pet_with_heatmap.pk])
    first = owner.get(url)
    assert first["Cache-Control"] == "private, no-cache"
    pet_with_heatmap.heatmap.save("heatmap.jpg", ContentFile(image_bytes(mark=7)))  # another model's heatmap
    second = owner.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert second.status_code == 200
    assert second["ETag"] != first["ETag"]
    assert owner.get(reverse("api:image-file", args=[pet_with_heatmap.pk]))["Cache-Control"] == \
        "private, max-age=3600"  # the photo never changes


def test_another_users_tag_reveals_nothing(other, owner, pet_with_heatmap):
    url = reverse("api:image-file", args=[pet_with_heatmap.pk])
    etag = owner.get(url)["ETag"]
    assert other.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 404
