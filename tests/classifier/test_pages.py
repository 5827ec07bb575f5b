"""The pages a person expects: a landing page, deleting a photo, previous and next, the
feedback form once there is a result, filters by the best answer, the no-model warning,
alt text, and the admin's readable columns."""
import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.db import models
from django.urls import reverse

from classifier.models import NOT_A_PET, Classification, PetImage
from tests.helpers import image_bytes

# --- Landing page -------------------------------------------------------------------------


def test_visitors_get_the_landing_page(client, db):
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Which breed is your cat or dog?" in page
    assert "37 cat and dog breeds" in page
    assert f'href="{reverse("signup")}"' in page
    assert f'href="{reverse("login")}"' in page
    assert "My pets" not in page


def test_logged_in_users_get_their_gallery_at_the_root(client, user):
    client.force_login(user)
    page = client.get("/").content.decode()
    assert "<h1>My pets</h1>" in page
    assert "Which breed is your cat or dog?" not in page


# --- Deleting a photo -----------------------------------------------------------------------


def _with_every_file(pet: PetImage) -> list[str]:
    """Give ``pet`` a file in every file field the model has (a heatmap too, once there is one);
    returns the stored names."""
    for field in pet._meta.fields:
        if isinstance(field, models.FileField) and not getattr(pet, field.name):
            getattr(pet, field.name).save(f"{field.name}.png", ContentFile(image_bytes(fmt="PNG")), save=True)
    return [getattr(pet, f.name).name for f in pet._meta.fields if isinstance(f, models.FileField)]


def test_the_owner_deletes_a_photo_and_its_files_leave_storage(
    client, user, make_image, django_capture_on_commit_callbacks
):
    pet = make_image("pug")
    Classification.objects.create(image=pet, model_version=pet.model_version, predicted_breed="pug", confidence=0.9)
    names = _with_every_file(pet)
    storage = pet.image.storage
    assert len(names) >= 2
    assert all(storage.exists(name) for name in names)
    client.force_login(user)

    page = client.get(reverse("classifier:delete", args=[pet.pk])).content.decode()
    assert "Delete this photo?" in page
    assert 'method="post"' in page
    assert PetImage.objects.filter(pk=pet.pk).exists()  # asking deletes nothing

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("classifier:delete", args=[pet.pk]), follow=True)
    assert response.redirect_chain == [(reverse("classifier:gallery"), 302)]
    assert "The photo is deleted." in response.content.decode()
    assert not PetImage.objects.filter(pk=pet.pk).exists()
    assert not Classification.objects.filter(image_id=pet.pk)
    assert not any(storage.exists(name) for name in names)
    assert client.get(pet.get_absolute_url()).status_code == 404


def test_files_stay_until_the_deletion_is_committed(user, make_image, django_capture_on_commit_callbacks):
    from classifier import uploads

    pet = make_image("pug")
    storage, name = pet.image.storage, pet.image.name
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        uploads.delete_pet_image(pet)
    assert storage.exists(name)
    assert len(callbacks) == 1
    callbacks[0]()
    assert not storage.exists(name)


def test_only_the_owner_may_delete(client, user, other_user, make_image, django_capture_on_commit_callbacks):
    pet = make_image("pug")
    client.force_login(other_user)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.get(reverse("classifier:delete", args=[pet.pk])).status_code == 404
        assert client.post(reverse("classifier:delete", args=[pet.pk])).status_code == 404
    assert PetImage.objects.filter(pk=pet.pk).exists()
    assert pet.image.storage.exists(pet.image.name)
    client.logout()
    response = client.post(reverse("classifier:delete", args=[pet.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert PetImage.objects.filter(pk=pet.pk).exists()


def test_delete_needs_csrf(user, make_image):
    from django.test import Client

    pet = make_image("pug")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(reverse("classifier:delete", args=[pet.pk])).status_code == 403
    assert PetImage.objects.filter(pk=pet.pk).exists()


# --- Previous, next, back to the gallery ----------------------------------------------------


def _links(page: str) -> dict:
    return {rel: int(pk) for pk, rel in re.findall(r'href="/images/(\d+)/" rel="(prev|next)"', page)}


def test_previous_and_next_follow_the_gallery_newest_first(client, user, other_user, make_image):
    oldest, middle, newest = make_image("pug"), make_image("beagle"), make_image("boxer")
    same_time = make_image("Persian")  # uploaded at the same instant as the newest: the id decides
    PetImage.objects.filter(pk=same_time.pk).update(uploaded_at=newest.uploaded_at)
    make_image("Bengal", owner=other_user)  # someone else's: never a neighbour
    client.force_login(user)
    gallery = [p.pk for p in client.get(reverse("classifier:gallery")).context["page"]]
    assert gallery == [same_time.pk, newest.pk, middle.pk, oldest.pk]

    for index, pk in enumerate(gallery):
        page = client.get(reverse("classifier:detail", args=[pk])).content.decode()
        expected = {}
        if index > 0:
            expected["prev"] = gallery[index - 1]
        if index < len(gallery) - 1:
            expected["next"] = gallery[index + 1]
        assert _links(page) == expected, pk
        assert f'href="{reverse("classifier:gallery")}">&larr; Back to the gallery' in page


# --- The feedback form waits for a result -----------------------------------------------------


def _form_outside_templates(page: str) -> bool:
    return 'id="feedback"' in re.sub(r"<template.*?</template>", "", page, flags=re.S)


@pytest.mark.parametrize("status", ["pending", "processing"])
def test_no_feedback_form_before_a_result(client, user, make_image, status):
    pet = make_image("", None, status=status, predicted_breed="", top_k=[], model_version=None)
    client.force_login(user)
    page = client.get(pet.get_absolute_url()).content.decode()
    assert not _form_outside_templates(page)
    assert '<template id="feedback-later">' in page  # status.js puts it in place when the result arrives


def test_feedback_form_once_there_is_a_result(client, user, make_image):
    pet = make_image("pug")
    client.force_login(user)
    page = client.get(pet.get_absolute_url()).content.decode()
    assert _form_outside_templates(page)
    assert "<template" not in page


def test_no_feedback_form_for_a_failed_photo(client, user, make_image):
    pet = make_image("", None, status="failed", predicted_breed="", top_k=[], error_code=PetImage.Error.UNREADABLE)
    client.force_login(user)
    page = client.get(pet.get_absolute_url()).content.decode()
    assert 'id="feedback"' not in page


@pytest.mark.parametrize(("label", "sentence"), [
    (NOT_A_PET, "You said:\n        \n        <strong>“Wrong, it is not a cat or dog.”</strong>"),
    ("Abyssinian", "<strong>“Wrong, it is an Abyssinian.”</strong>"),
    ("beagle", "<strong>“Wrong, it is a Beagle.”</strong>"),
])
def test_the_owners_answer_reads_as_a_sentence(client, user, make_image, label, sentence):
    pet = make_image("pug")
    client.force_login(user)
    client.post(reverse("classifier:feedback", args=[pet.pk]), {"answer": "wrong", "label": label})
    page = client.get(pet.get_absolute_url()).content.decode()
    assert re.sub(r"\s+", " ", sentence) in re.sub(r"\s+", " ", page)
    assert "it is Not a cat or dog" not in page


# --- Filters by the best answer ---------------------------------------------------------------


@pytest.fixture
def answered(make_image):
    return {
        "pug, owner says Persian": make_image("pug", is_correct=False, true_breed="Persian"),
        "pug, owner says beagle, reviewer Bengal": make_image(
            "pug", is_correct=False, true_breed="beagle", reviewed_label="Bengal"
        ),
        "Persian, not a pet": make_image("Persian", is_correct=False, true_breed=NOT_A_PET),
        "pug, unanswered": make_image("pug"),
        "Siamese, reviewer says Siamese": make_image("Siamese", reviewed_label="Siamese"),
    }


@pytest.mark.parametrize(("params", "expected"), [
    ({"species": "cat"}, ["pug, owner says Persian", "pug, owner says beagle, reviewer Bengal",
                          "Siamese, reviewer says Siamese"]),
    ({"species": "dog"}, ["pug, unanswered"]),
    ({"breed": "Persian"}, ["pug, owner says Persian"]),
    ({"breed": "beagle"}, []),  # the reviewer's label wins over the owner's answer
    ({"breed": "pug"}, ["pug, unanswered"]),
])
def test_species_and_breed_go_by_the_answer_when_there_is_one(client, user, answered, params, expected):
    client.force_login(user)
    names = {pet.pk: name for name, pet in answered.items()}
    got = [names[pet.pk] for pet in client.get(reverse("classifier:gallery"), params).context["page"]]
    assert sorted(got) == sorted(expected)


def test_breed_filter_groups_cats_and_dogs(client, user, make_image):
    make_image("pug")
    client.force_login(user)
    page = client.get(reverse("classifier:gallery")).content.decode()
    select = re.search(r'<select name="breed".*?</select>', page, flags=re.S).group(0)
    assert '<optgroup label="Cats">' in select
    assert '<optgroup label="Dogs">' in select
    assert select.index("Abyssinian") < select.index('label="Dogs"') < select.index("Beagle")


# --- No model yet -----------------------------------------------------------------------------


WARNING = "Your photo will be saved and classified as soon as the classifier is set up."


def test_the_upload_page_warns_when_no_model_is_active(client, user, django_user_model):
    client.force_login(user)
    page = client.get(reverse("classifier:upload")).content.decode()
    assert WARNING in page
    assert reverse("registry:model_list") not in page
    assert "manage" not in page

    reviewer = django_user_model.objects.create_user("rita", password="pw", is_staff=True)
    reviewer.groups.add(Group.objects.get(name="Reviewers"))
    client.force_login(reviewer)
    page = client.get(reverse("classifier:upload")).content.decode()
    assert WARNING in page
    assert f'href="{reverse("registry:model_list")}"' in page
    assert "manage" not in page
    models = client.get(reverse("registry:model_list")).content.decode()
    assert "No model yet" in models
    assert "manage" not in models


def test_no_warning_with_an_active_model(client, user, model_version):
    client.force_login(user)
    assert WARNING not in client.get(reverse("classifier:upload")).content.decode()


# --- Alt text and labels ------------------------------------------------------------------------


def test_images_are_described_by_breed_and_date_not_file_name(client, user, make_image):
    uploaded_at = datetime(2026, 12, 3, 16, 37, tzinfo=UTC)
    pet = make_image("pug", uploaded_at=uploaded_at)
    waiting = make_image("", None, status="pending", predicted_breed="", top_k=[], model_version=None,
                         uploaded_at=uploaded_at)
    date = "3 Dec 2026, 16:37"  # the site's one date style (petsite.dates), as the gallery's captions show it
    client.force_login(user)
    gallery = client.get(reverse("classifier:gallery")).content.decode()
    detail = client.get(pet.get_absolute_url()).content.decode()
    assert f'alt="Pug, uploaded {date}"' in gallery
    assert f'alt="Pug, uploaded {date}"' in detail
    assert f'alt="Photo uploaded {date}, not classified yet"' in gallery
    assert f'alt="{pet.original_name}"' not in gallery + detail
    assert waiting.original_name not in re.findall(r'alt="([^"]*)"', gallery)


def test_every_form_control_has_a_label(client, user, make_image):
    """Each input, select and textarea is named by a <label for>, aria-label, or a wrapping label."""
    pet = make_image("pug")
    client.force_login(user)
    for url in [reverse("classifier:gallery"), reverse("classifier:upload"), pet.get_absolute_url()]:
        page = client.get(url).content.decode()
        labelled = set(re.findall(r'<label[^>]* for="([^"]+)"', page))
        for tag in re.findall(r"<(?:input|select|textarea)\b[^>]*>", page):
            if 'type="hidden"' in tag or 'type="submit"' in tag:
                continue
            control_id = re.search(r'id="([^"]+)"', tag)
            wrapped = re.search(r"<label[^>]*>\s*" + re.escape(tag), page)
            assert "aria-label=" in tag or wrapped or (control_id and control_id.group(1) in labelled), (url, tag)


def test_log_in_and_sign_up_forms_stack_labels_over_inputs(client, db):
    for url in [reverse("login"), reverse("signup")]:
        page = client.get(url).content.decode()
        assert '<form method="post"' in page
        assert 'class="stacked"' in page
        assert re.search(r'<div class="field">\s*<label for="id_username">', page), url


# --- Admin -----------------------------------------------------------------------------------------


def test_admin_shows_confidence_in_percent_and_the_top_five_as_a_list(client, make_image, django_user_model):
    top = [{"breed": "pug", "probability": 0.873}, {"breed": "boxer", "probability": 0.1},
           {"breed": "beagle", "probability": 0.027}]
    pet = make_image("pug", 0.873, top_k=top, is_correct=False, true_breed=NOT_A_PET)
    client.force_login(django_user_model.objects.create_superuser("root", password="pw"))
    listing = client.get(reverse("admin:classifier_petimage_changelist")).content.decode()
    assert '<td class="field-confidence_percent">87%</td>' in listing
    assert "wrong: not a cat or dog" in listing
    for column in ["Owner said", "Reviewed label", "Needs review"]:
        assert column in listing
    change = client.get(reverse("admin:classifier_petimage_change", args=[pet.pk])).content.decode()
    assert "<li>Pug (87.3%)</li><li>Boxer (10.0%)</li><li>Beagle (2.7%)</li>" in change
