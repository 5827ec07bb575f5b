"""One verdict display for every page (classifier/verdicts.py): the gallery's caption, the
photo page, the status JSON and the API say the same thing, the filters agree with it, and a
photo that does not look like a cat or dog never reads as a confident breed, however high
its first breed's probability (the softmax over 37 breeds always sums to one)."""
import re
from datetime import UTC, datetime

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from classifier.models import NOT_A_PET, PetImage, Verdict

RAGDOLL_95 = [{"breed": "Ragdoll", "probability": 0.95}, {"breed": "Persian", "probability": 0.03},
              {"breed": "Birman", "probability": 0.01}]


@pytest.fixture
def not_a_pet(make_image):
    """A coffee cup: 95 % Ragdoll among the breeds, and far from every breed's photos."""
    return make_image("Ragdoll", 0.95, top_k=RAGDOLL_95, verdict=Verdict.NOT_A_PET, original_name="cup.jpg")


def test_a_95_percent_not_a_pet_photo_reads_as_closest_breeds_all_unlikely(client, user, not_a_pet):
    client.force_login(user)
    page = client.get(not_a_pet.get_absolute_url()).content.decode()
    result = page[page.index('<h1 id="breed"'):page.index("</ol>")]
    assert ">Does not look like a cat or dog</h1>" in result
    assert "it looks most like a Ragdoll, but only next to the other breeds, all of them unlikely" in result
    assert ">Closest breeds, all unlikely</h2>" in result
    # The breeds as names, in order, without a bar or a percentage anywhere in the result.
    assert re.findall(r'<span class="name">([^<]+)</span>', result) == ["Ragdoll", "Persian", "Birman"]
    assert "<svg" not in result
    assert "%" not in result
    tile = client.get(reverse("classifier:gallery")).content.decode()
    caption = tile[tile.index('<div class="caption">'):]
    caption = caption[:caption.index("</div>")]
    assert "Does not look like a cat or dog" in caption
    assert "95%" not in caption
    assert 'class="confidence"' not in caption

    status = client.get(reverse("classifier:status", args=[not_a_pet.pk])).json()
    assert (status["headline"], status["confident"]) == ("Does not look like a cat or dog", False)
    assert status["display"]["top_k_bars"] is False
    assert status["display"]["top_k_title"] == "Closest breeds, all unlikely"
    assert {key: status["display"][key] for key in ("note", "correct_choice", "heatmap_alt")} == {
        "note": not_a_pet.display.note, "correct_choice": "Correct, it is not a cat or dog",
        "heatmap_alt": not_a_pet.display.heatmap_alt,
    }
    assert "its closest breed, Ragdoll" in status["display"]["heatmap_alt"]


@pytest.mark.parametrize(("verdict", "headline", "bars", "title"), [
    (Verdict.CONFIDENT, "Great Pyrenees", True, "The likeliest breeds"),
    ("", "Great Pyrenees", True, "The likeliest breeds"),  # from before verdicts: shown as it was, confident
    (Verdict.UNSURE, "Not sure. Closest breed: Great Pyrenees", True, "Closest breeds, none of them sure"),
    (Verdict.NOT_A_PET, "Does not look like a cat or dog", False, "Closest breeds, all unlikely"),
])
def test_the_page_the_json_and_the_api_say_the_same(client, user, make_image, verdict, headline, bars, title):
    top_k = [{"breed": "great_pyrenees", "probability": 0.42}, {"breed": "samoyed", "probability": 0.3}]
    pet = make_image("great_pyrenees", 0.42, top_k=top_k, verdict=verdict)
    client.force_login(user)
    page = client.get(pet.get_absolute_url()).content.decode()
    status = client.get(reverse("classifier:status", args=[pet.pk])).json()
    api = APIClient()
    api.force_authenticate(user)
    image = api.get(reverse("api:image-detail", args=[pet.pk])).json()
    for answer in (status, image):
        assert (answer["headline"], answer["display"]["top_k_bars"], answer["display"]["top_k_title"]) == (
            headline, bars, title)
        assert answer["display"]["note"] == pet.display.note
    assert f">{headline}</h1>" in page
    assert f">{title}</h2>" in page
    assert ('class="bar"' in page) == bars
    assert ("42%" in page) == bars
    if pet.display.note:
        assert pet.display.note in page


def test_unsure_words_claim_no_breed(make_image):
    """A rocket the model is unsure of: its closest breed, with how little it has, never "maybe"."""
    rocket = make_image("miniature_pinscher", 0.23, verdict=Verdict.UNSURE)
    words = rocket.display
    assert words.headline == "Not sure. Closest breed: Miniature Pinscher"
    assert "has only 23%" in words.note
    assert "or not a cat or dog at all" in words.note
    assert "maybe" not in words.headline + words.note


# --- filters ---------------------------------------------------------------------------------------


@pytest.fixture
def mixed(make_image, not_a_pet):
    return {
        "cup": not_a_pet,
        "persian": make_image("Persian", 0.91, verdict=Verdict.CONFIDENT),
        "old persian": make_image("Persian", 0.88, verdict=""),  # classified before verdicts existed
        "unsure pug": make_image("pug", 0.3, verdict=Verdict.UNSURE),
        # Sent to a new model: waits again, with the old model's verdict still in its row.
        "waiting": make_image("Persian", 0.4, verdict=Verdict.NOT_A_PET, status=PetImage.Status.PENDING),
        "cup, owner says Bengal": make_image("Ragdoll", 0.97, verdict=Verdict.NOT_A_PET, is_correct=False,
                                             true_breed="Bengal"),
    }


@pytest.mark.parametrize(("params", "expected"), [
    ({"species": "cat"}, {"persian", "old persian", "cup, owner says Bengal"}),
    ({"breed": "Ragdoll"}, set()),  # the cup's first breed is only the closest
    ({"verdict": "confident"}, {"persian", "old persian"}),
    ({"verdict": "unsure"}, {"unsure pug"}),
    ({"verdict": "not_a_pet"}, {"cup", "cup, owner says Bengal"}),
    ({"min_confidence": "90"}, {"persian"}),  # the cup's 95 % and 97 % are no confidence in a breed
    ({"max_confidence": "10"}, {"cup", "cup, owner says Bengal"}),
    ({"species": "cat", "verdict": "confident"}, {"persian", "old persian"}),
])
def test_gallery_and_api_filters_agree_with_the_verdict(client, user, mixed, params, expected):
    names = {pet.pk: name for name, pet in mixed.items()}
    client.force_login(user)
    gallery = {names[pet.pk] for pet in client.get(reverse("classifier:gallery"), params).context["page"]}
    api = APIClient()
    api.force_authenticate(user)
    # The gallery's form asks confidence in percent, the API in fractions, as its `confidence`.
    api_params = {key: str(int(value) / 100) if key.endswith("_confidence") else value for key, value in params.items()}
    listed = {names[image["id"]] for image in api.get(reverse("api:image-list"), api_params).json()["results"]}
    assert gallery == listed == expected


def test_most_confident_first_puts_not_a_pet_photos_after_the_breeds(client, user, mixed):
    client.force_login(user)
    names = {pet.pk: name for name, pet in mixed.items()}
    order = [names[pet.pk] for pet in client.get(reverse("classifier:gallery"), {"sort": "confident"}).context["page"]]
    assert order.index("persian") < order.index("cup")
    assert order.index("unsure pug") < order.index("cup")


def test_the_gallery_offers_the_verdict_filter(client, user, mixed):
    client.force_login(user)
    page = client.get(reverse("classifier:gallery"), {"verdict": "not_a_pet"}).content.decode()
    select = re.search(r'<select name="verdict".*?</select>', page, flags=re.S).group(0)
    options = re.findall(r'<option value="([^"]*)"[^>]*>([^<]+)</option>', select)
    assert options == [("", "Any verdict"), ("confident", "Confident"), ("unsure", "Not sure"),
                       ("not_a_pet", "Not a cat or dog")]
    assert '<option value="not_a_pet" selected>' in select
    api = APIClient()
    api.force_authenticate(user)
    response = api.get(reverse("api:image-list"), {"verdict": "sure"})
    assert response.status_code == 400
    assert [error["parameter"] for error in response.json()["errors"]] == ["verdict"]


def test_the_api_schema_lists_the_verdict_filter(client, db):
    schema = client.get(reverse("api:schema"), {"format": "json"}).json()
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/images/"]["get"]["parameters"]}
    assert parameters["verdict"]["schema"]["enum"] == ["confident", "not_a_pet", "unsure"]


# --- the owner's answer --------------------------------------------------------------------------


def _answer(client, pet, **data):
    return client.post(reverse("classifier:feedback", args=[pet.pk]), data)


def test_wrong_it_is_the_first_breed_shows_what_the_owner_said(client, user, make_image):
    """The walk's finding: "Wrong, it is a Persian" with Persian first showed "You said: Correct."."""
    pet = make_image("Persian", 0.93, verdict=Verdict.CONFIDENT)
    client.force_login(user)
    _answer(client, pet, answer="wrong", label="Persian")
    pet.refresh_from_db()
    assert (pet.is_correct, pet.true_breed) == (True, "Persian")  # the model's answer: not a "wrong" for the queue
    page = re.sub(r"\s+", " ", client.get(pet.get_absolute_url()).content.decode())
    assert "You said: <strong>“It is a Persian.”</strong>" in page
    assert "Correct.”" not in page


def test_a_breed_for_a_not_a_pet_verdict_is_a_wrong_answer(client, user, not_a_pet):
    """The model said not a cat or dog; "it is a Ragdoll" (its closest breed) says it was wrong."""
    client.force_login(user)
    _answer(client, not_a_pet, answer="wrong", label="Ragdoll")
    not_a_pet.refresh_from_db()
    assert (not_a_pet.is_correct, not_a_pet.true_breed) == (False, "Ragdoll")
    assert PetImage.objects.needing_review().filter(pk=not_a_pet.pk, is_correct=False).exists()
    page = re.sub(r"\s+", " ", client.get(not_a_pet.get_absolute_url()).content.decode())
    assert "You said: <strong>“Wrong, it is a Ragdoll.”</strong>" in page
    assert set(client.get(reverse("classifier:gallery"), {"species": "cat"}).context["page"]) == {not_a_pet}


def test_correct_for_a_not_a_pet_verdict_means_not_a_pet(client, user, not_a_pet):
    client.force_login(user)
    page = client.get(not_a_pet.get_absolute_url()).content.decode()
    assert '<span class="choice-words" data-answer="correct">Correct, it is not a cat or dog</span>' in page
    _answer(client, not_a_pet, answer="correct")
    not_a_pet.refresh_from_db()
    assert (not_a_pet.is_correct, not_a_pet.true_breed) == (True, NOT_A_PET)  # not "Ragdoll"
    page = re.sub(r"\s+", " ", client.get(not_a_pet.get_absolute_url()).content.decode())
    assert "You said: <strong>“It is not a cat or dog.”</strong> (<time" in page


def test_the_correct_choice_names_what_it_agrees_with(make_image):
    assert make_image("pug", verdict=Verdict.CONFIDENT).display.correct_choice == "Correct, it is a Pug"
    assert make_image("Abyssinian", 0.3, verdict=Verdict.UNSURE).display.correct_choice == "It is an Abyssinian"


# --- "Show why" -----------------------------------------------------------------------------------


def test_no_heatmap_is_offered_while_the_photo_waits(client, user, make_image, model_version):
    """A photo sent to be classified again keeps its old heatmap file; it explains no answer shown now."""
    pet = make_image("pug", verdict=Verdict.CONFIDENT, status=PetImage.Status.PENDING, heatmap="heatmaps/old.jpg",
                     heatmap_version=model_version)
    client.force_login(user)
    page = client.get(pet.get_absolute_url()).content.decode()
    assert "data-heatmap-url" not in page
    assert 'data-answered="false"' in page
    assert "for its answer ()" not in page
    assert 'id="heatmap-img" alt=""' in page
    assert client.get(reverse("classifier:status", args=[pet.pk])).json()["heatmap_url"] is None
    PetImage.objects.filter(pk=pet.pk).update(status=PetImage.Status.DONE)
    status = client.get(reverse("classifier:status", args=[pet.pk])).json()
    assert status["heatmap_url"] == reverse("classifier:heatmap", args=[pet.pk])
    assert status["display"]["heatmap_alt"].startswith("Heatmap of where the model found the most evidence for Pug")


# --- dates -----------------------------------------------------------------------------------------


def test_one_date_style_on_the_gallery_the_photo_page_and_the_admin(client, user, make_image, django_user_model):
    pet = make_image("pug", uploaded_at=datetime(2026, 12, 3, 16, 37, tzinfo=UTC), feedback_at=None)
    client.force_login(user)
    gallery = client.get(reverse("classifier:gallery")).content.decode()
    detail = client.get(pet.get_absolute_url()).content.decode()
    stamp = '<time datetime="2026-12-03T16:37:00+00:00">3 Dec 2026, 16:37</time>'
    assert stamp in gallery
    assert stamp in detail
    client.force_login(django_user_model.objects.create_superuser("root", password="pw"))
    listing = client.get(reverse("admin:classifier_petimage_changelist")).content.decode()
    assert '<td class="field-uploaded">3 Dec 2026, 16:37</td>' in listing
    change = client.get(reverse("admin:classifier_petimage_change", args=[pet.pk])).content.decode()
    assert '<div class="readonly">3 Dec 2026, 16:37</div>' in change  # the admin's own date fields
    for other_style in ("Dec. 3, 2026", "4:37 p.m.", "12/03/2026", "3 December 2026"):
        assert other_style not in gallery + detail + listing + change


def test_an_answer_given_a_moment_ago_says_just_now(client, user, make_image):
    pet = make_image("pug")
    client.force_login(user)
    _answer(client, pet, answer="correct")
    page = client.get(pet.get_absolute_url()).content.decode()
    feedback = page[page.index('id="feedback-state"'):]
    feedback = feedback[:feedback.index("</p>")]
    assert re.search(r">(just now|1 minute ago)</time>\)", feedback), feedback
    assert "0 minutes" not in page
