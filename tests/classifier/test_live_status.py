"""The live gallery's one request: GET /images/status.json?ids=1,2,3 answers the status of
each of those photos that is the requester's, in one query however many ids it names."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from classifier import views

URL = reverse("classifier:statuses")


def _ids(*pets) -> dict:
    return {"ids": ",".join(str(pet.pk) for pet in pets)}


@pytest.fixture
def pets(make_image):
    return {
        "done": make_image("pug", 0.9),
        "waiting": make_image("", None, status="pending", predicted_breed="", top_k=[], model_version=None),
        "classifying": make_image("", None, status="processing", predicted_breed="", top_k=[], model_version=None),
    }


def test_answers_the_requested_photos_of_the_owner(client, user, pets):
    client.force_login(user)
    response = client.get(URL, _ids(pets["waiting"], pets["classifying"]))
    assert response.status_code == 200
    images = response.json()["images"]
    assert {image["id"]: image["status"] for image in images} == {
        pets["waiting"].pk: "pending", pets["classifying"].pk: "processing"
    }
    assert not any(image["finished"] for image in images)


def test_single_and_bulk_status_are_the_same_serialisation(client, user, pets):
    client.force_login(user)
    for pet in pets.values():
        single = client.get(reverse("classifier:status", args=[pet.pk])).json()
        (bulk,) = client.get(URL, _ids(pet)).json()["images"]
        assert single == bulk == views.image_status(pet)
    done = views.image_status(pets["done"])
    assert (done["breed_name"], done["confidence"], done["finished"]) == ("Pug", 0.9, True)


def test_other_users_ids_are_simply_absent(client, other_user, make_image, pets):
    theirs = make_image("beagle", owner=other_user, status="pending")
    client.force_login(other_user)
    response = client.get(URL, _ids(pets["waiting"], pets["done"], theirs))
    assert response.status_code == 200
    assert [image["id"] for image in response.json()["images"]] == [theirs.pk]


def test_junk_and_unknown_ids_are_ignored(client, user, pets):
    client.force_login(user)
    waiting = pets["waiting"].pk
    query = f"{waiting}, ,abc,-3,²,99999999999999999999999,{waiting},424242"
    response = client.get(URL, {"ids": query})
    assert response.status_code == 200
    assert [image["id"] for image in response.json()["images"]] == [waiting]
    assert client.get(URL).json() == {"images": []}
    assert client.post(URL, _ids(pets["waiting"])).status_code == 405


def test_anonymous_users_are_sent_to_log_in(client, pets):
    response = client.get(URL, _ids(pets["waiting"]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_one_query_for_any_number_of_ids(client, user, make_image):
    waiting = [make_image("", None, status="pending", predicted_breed="", top_k=[]) for _ in range(30)]
    client.force_login(user)

    def queries(pets) -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(URL, _ids(*pets))
        assert len(response.json()["images"]) == len(pets)
        return len(captured)

    assert queries(waiting[:2]) == queries(waiting)


def test_a_long_list_is_cut_not_refused(client, user, pets, settings):
    client.force_login(user)
    many = ",".join(str(n) for n in range(100_000, 100_000 + views.MAX_STATUS_IDS))
    response = client.get(URL, {"ids": f"{many},{pets['waiting'].pk}"})
    assert response.status_code == 200
    assert response.json() == {"images": []}


def test_the_gallery_marks_unfinished_tiles_for_the_one_request(client, user, pets):
    client.force_login(user)
    page = client.get(reverse("classifier:gallery")).content.decode()
    assert f'data-statuses-url="{URL}"' in page
    for name, pet in pets.items():
        finished = "true" if name == "done" else "false"
        assert f'data-id="{pet.pk}" data-finished="{finished}"' in page
    assert 'src="/static/js/live-status.js"' in page
    assert 'src="/static/js/gallery.js"' in page
    # The tile says the status in words until the result is there.
    assert '<span class="status status-pending">Waiting</span>' in page
    assert '<span class="status status-processing">Classifying</span>' in page
