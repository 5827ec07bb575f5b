"""Lists a page at a time: page_size with a bound, Link headers, refusals of pages that cannot be."""
import re

import pytest
from django.conf import settings
from django.urls import reverse

from api.pagination import MAX_PAGE_SIZE

IMAGES = reverse("api:image-list")
LINK = re.compile(r'<([^>]+)>; rel="(\w+)"')
BASE = "http://testserver/api/v1/images/"


def links(response) -> dict[str, str]:
    return {rel: url for url, rel in LINK.findall(response["Link"])}


@pytest.fixture
def five(make_image) -> list:
    return [make_image() for _ in range(5)]


def test_pages_with_links_to_first_prev_next_and_last(owner, five):
    first = owner.get(IMAGES, {"page_size": 2})
    assert first.status_code == 200
    body = first.json()
    assert (body["count"], len(body["results"])) == (5, 2)
    assert [image["id"] for image in body["results"]] == [five[4].pk, five[3].pk]
    assert links(first) == {"first": f"{BASE}?page_size=2", "next": f"{BASE}?page=2&page_size=2",
                            "last": f"{BASE}?page=3&page_size=2"}
    assert body["next"] == links(first)["next"]
    assert body["previous"] is None

    middle = owner.get(links(first)["next"])
    assert set(links(middle)) == {"first", "prev", "next", "last"}
    assert middle.json()["previous"] == links(middle)["prev"] == f"{BASE}?page_size=2"

    last = owner.get(links(first)["last"])
    assert [image["id"] for image in last.json()["results"]] == [five[0].pk]
    assert set(links(last)) == {"first", "prev", "last"}
    assert last.json()["next"] is None


def test_links_keep_the_filters_and_the_sort(owner, make_image):
    for _ in range(3):
        make_image("pug")
    make_image("beagle")
    response = owner.get(IMAGES, {"breed": "pug", "sort": "confident", "page_size": 1})
    assert response.json()["count"] == 3
    for url in links(response).values():
        assert {"breed=pug", "sort=confident", "page_size=1"} <= set(url.split("?")[1].split("&"))


def test_the_unversioned_address_links_to_v1(owner, five):
    response = owner.get("/api/images/", {"page_size": 2})
    assert response.status_code == 200
    assert all(url.startswith(BASE) for url in links(response).values())
    assert response.json()["next"].startswith(BASE)


def test_the_default_page_is_the_gallerys_and_the_largest_is_bounded(owner, make_image):
    for _ in range(3):
        make_image()
    assert len(owner.get(IMAGES).json()["results"]) == min(3, settings.PETSITE_GALLERY_PAGE_SIZE)
    assert owner.get(IMAGES, {"page_size": MAX_PAGE_SIZE}).status_code == 200
    empty = owner.get(reverse("api:model-list"))  # other lists page the same way
    assert "Link" in empty or empty.status_code == 403


@pytest.mark.parametrize(("query", "field"), [
    ({"page_size": MAX_PAGE_SIZE + 1}, "page_size"), ({"page_size": 0}, "page_size"),
    ({"page_size": "ten"}, "page_size"), ({"page_size": ""}, "page_size"), ({"page_size": "-1"}, "page_size"),
    ({"page": 0}, "page"), ({"page": "two"}, "page"), ({"page": "-1"}, "page"), ({"page": ""}, "page"),
])
def test_a_page_or_size_that_cannot_be_is_a_400(owner, five, query, field):
    response = owner.get(IMAGES, query)
    assert response.status_code == 400, response.content
    assert field in response.content.decode()


def test_a_page_past_the_last_is_a_404_and_last_names_the_last(owner, five):
    assert owner.get(IMAGES, {"page_size": 2, "page": 4}).status_code == 404
    last = owner.get(IMAGES, {"page_size": 2, "page": "last"})
    assert (last.status_code, len(last.json()["results"])) == (200, 1)


def test_an_empty_list_is_one_empty_page(owner, db):
    response = owner.get(IMAGES)
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}
    assert links(response) == {"first": BASE, "last": BASE}
