"""Gallery browsing: filters, sorting, pagination that keeps them, empty states, query count."""
import pytest
from django.urls import reverse


@pytest.fixture
def pets(make_image):
    return {
        "pug": make_image("pug", 0.95, is_correct=True, true_breed="pug"),
        "beagle": make_image("beagle", 0.40, is_correct=False, true_breed="boxer"),
        "persian": make_image("Persian", 0.70),
        "waiting": make_image("", None, status="pending", predicted_breed="", top_k=[], model_version=None),
    }


def _names(client, **params):
    response = client.get(reverse("classifier:gallery"), params)
    assert response.status_code == 200
    return [p.pk for p in response.context["page"]]


@pytest.mark.parametrize(("params", "expected"), [
    ({"breed": "pug"}, ["pug"]),
    ({"species": "cat"}, ["persian"]),
    ({"species": "dog"}, ["beagle", "pug"]),
    ({"status": "pending"}, ["waiting"]),
    ({"feedback": "none"}, ["waiting", "persian"]),
    ({"feedback": "correct"}, ["pug"]),
    ({"feedback": "wrong"}, ["beagle"]),
    ({"min_confidence": "50"}, ["persian", "pug"]),
    ({"max_confidence": "70"}, ["persian", "beagle"]),
    ({"min_confidence": "50", "max_confidence": "80"}, ["persian"]),
    ({"sort": "confident"}, ["pug", "persian", "beagle", "waiting"]),
    ({"sort": "unsure"}, ["beagle", "persian", "pug", "waiting"]),
    ({"sort": "oldest"}, ["pug", "beagle", "persian", "waiting"]),
])
def test_filters_and_sorts(client, user, pets, params, expected):
    client.force_login(user)
    got = _names(client, **params)
    by_pk = {pet.pk: name for name, pet in pets.items()}
    if "sort" in params:
        assert [by_pk[pk] for pk in got] == expected
    else:
        assert sorted(by_pk[pk] for pk in got) == sorted(expected)
        assert got == sorted(got, reverse=True)  # newest first by default


def test_pagination_keeps_filters(client, user, make_image, settings):
    settings.PETSITE_GALLERY_PAGE_SIZE = 2
    for _ in range(3):
        make_image("pug")
    make_image("Persian")
    client.force_login(user)
    page = client.get(reverse("classifier:gallery"), {"species": "dog"}).content.decode()
    assert "species=dog&amp;page=2" in page or "page=2&amp;species=dog" in page
    second = client.get(reverse("classifier:gallery"), {"species": "dog", "page": 2}).context["page"]
    assert [p.predicted_breed for p in second] == ["pug"]


def test_empty_states(client, user, make_image):
    client.force_login(user)
    assert "No photos yet" in client.get(reverse("classifier:gallery")).content.decode()
    make_image("pug")
    page = client.get(reverse("classifier:gallery"), {"breed": "beagle"}).content.decode()
    assert "No photos match these filters" in page
    assert "No photos yet" not in page


def test_bad_filter_values_are_ignored_not_errors(client, user, pets):
    client.force_login(user)
    response = client.get(reverse("classifier:gallery"), {"breed": "unicorn", "min_confidence": "lots", "page": "x"})
    assert response.status_code == 200


@pytest.mark.parametrize("page_size", [5, 40])
def test_queries_do_not_grow_with_page_size(
    client, user, make_image, settings, django_assert_max_num_queries, page_size
):
    settings.PETSITE_GALLERY_PAGE_SIZE = page_size
    for i in range(page_size):
        make_image("pug" if i % 2 else "Persian", is_correct=bool(i % 3), true_breed="pug")
    client.force_login(user)
    with django_assert_max_num_queries(6):
        response = client.get(reverse("classifier:gallery"), {"species": "dog", "sort": "confident"})
    assert response.status_code == 200


def test_the_filter_form_shows_the_chosen_values(client, user, pets):
    """The fields' HTML is kept per combination of values: each request still shows its own."""
    client.force_login(user)
    gallery = reverse("classifier:gallery")
    chosen = client.get(gallery, {"breed": "pug", "min_confidence": "50"}).content.decode()
    assert '<option value="pug" selected>' in chosen
    assert 'name="min_confidence" value="50"' in chosen
    other = client.get(gallery, {"breed": "beagle"}).content.decode()
    assert '<option value="beagle" selected>' in other
    assert '<option value="pug" selected>' not in other
    assert 'name="min_confidence" value="50"' not in other
    again = client.get(gallery, {"breed": "pug", "min_confidence": "50"}).content.decode()
    assert '<option value="pug" selected>' in again
