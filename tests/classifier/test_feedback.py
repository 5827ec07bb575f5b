"""The owner's answer on the detail page: correct, or wrong with the true breed."""
from django.test import Client
from django.urls import reverse

from classifier.models import NOT_A_PET


def _answer(client, pet, **data):
    return client.post(reverse("classifier:feedback", args=[pet.pk]), data)


def test_owner_says_correct_then_changes_mind(client, user, make_image):
    pet = make_image("pug")
    client.force_login(user)
    response = _answer(client, pet, answer="correct")
    assert response.status_code == 302
    assert response["Location"] == pet.get_absolute_url()
    pet.refresh_from_db()
    assert (pet.is_correct, pet.true_breed, pet.final_label) == (True, "pug", "pug")
    first_time = pet.feedback_at
    assert first_time is not None

    _answer(client, pet, answer="wrong", label="beagle")
    pet.refresh_from_db()
    assert (pet.is_correct, pet.true_breed) == (False, "beagle")
    assert pet.feedback_at > first_time
    page = client.get(pet.get_absolute_url()).content.decode()
    assert "“Wrong, it is a Beagle.”" in page


def test_not_a_pet_is_an_answer(client, user, make_image):
    pet = make_image("pug")
    client.force_login(user)
    _answer(client, pet, answer="wrong", label=NOT_A_PET)
    pet.refresh_from_db()
    assert (pet.is_correct, pet.true_breed) == (False, NOT_A_PET)


def test_wrong_needs_a_breed_and_a_known_one(client, user, make_image):
    pet = make_image("pug")
    client.force_login(user)
    response = _answer(client, pet, answer="wrong")
    assert response.status_code == 400
    assert "Choose the right breed" in response.content.decode()
    assert _answer(client, pet, answer="wrong", label="unicorn").status_code == 400
    assert _answer(client, pet, answer="maybe").status_code == 400
    pet.refresh_from_db()
    assert pet.feedback_at is None


def test_wrong_with_the_predicted_breed_means_correct(client, user, make_image):
    pet = make_image("pug")
    client.force_login(user)
    _answer(client, pet, answer="wrong", label="pug")
    pet.refresh_from_db()
    assert pet.is_correct is True


def test_correct_without_a_prediction_is_refused(client, user, make_image):
    pet = make_image("pug", status="pending", predicted_breed="", confidence=None)
    client.force_login(user)
    assert _answer(client, pet, answer="correct").status_code == 400


def test_only_the_owner_may_answer(client, other_user, make_image):
    pet = make_image("pug")
    client.force_login(other_user)
    assert _answer(client, pet, answer="correct").status_code == 404
    pet.refresh_from_db()
    assert pet.feedback_at is None


def test_anonymous_and_get_and_csrf(client, user, make_image):
    pet = make_image("pug")
    assert _answer(client, pet, answer="correct").status_code == 302  # to login
    client.force_login(user)
    assert client.get(reverse("classifier:feedback", args=[pet.pk])).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert _answer(strict, pet, answer="correct").status_code == 403
    pet.refresh_from_db()
    assert pet.feedback_at is None


def test_detail_offers_grouped_breeds(client, user, make_image):
    pet = make_image("pug")
    client.force_login(user)
    page = client.get(pet.get_absolute_url()).content.decode()
    assert '<optgroup label="Cats">' in page
    assert '<optgroup label="Dogs">' in page
    assert 'value="not_a_pet"' in page
    assert "Type to search the breeds" in page
