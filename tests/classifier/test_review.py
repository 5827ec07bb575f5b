"""The admin review queue, its actions, the review dashboard, and who may use them."""
import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from classifier.models import NOT_A_PET, PetImage

CHANGELIST = reverse("admin:classifier_petimage_changelist")


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("rita", password="pw", is_staff=True, is_superuser=True)


@pytest.fixture
def queue(make_image):
    return {
        "sure": make_image("pug", 0.97),
        "owner_wrong": make_image("beagle", 0.93, is_correct=False, true_breed="boxer"),
        "unsure": make_image("Persian", 0.30),
        "reviewed_unsure": make_image("Bengal", 0.20, reviewed_label="Bengal"),
        "owner_right": make_image("samoyed", 0.99, is_correct=True, true_breed="samoyed"),
    }


def _act(client, action, pets, **extra):
    data = {"action": action, helpers.ACTION_CHECKBOX_NAME: [p.pk for p in pets], **extra}
    return client.post(CHANGELIST, data, follow=True)


def test_needs_review_comes_first(client, staff, queue):
    PetImage.objects.filter(pk=queue["reviewed_unsure"].pk).update(reviewed_at="2026-01-01T00:00Z")
    client.force_login(staff)
    listed = [p.pk for p in client.get(CHANGELIST).context["cl"].result_list]
    needing = {queue["owner_wrong"].pk, queue["unsure"].pk}
    assert set(listed[:2]) == needing
    assert set(listed[2:]) == {p.pk for p in queue.values()} - needing
    filtered = client.get(CHANGELIST, {"review": "needed"}).context["cl"].result_list
    assert {p.pk for p in filtered} == needing


def test_threshold_is_configurable(client, staff, queue, settings):
    settings.PETSITE_REVIEW_CONFIDENCE = 0.98
    client.force_login(staff)
    filtered = client.get(CHANGELIST, {"review": "needed"}).context["cl"].result_list
    assert queue["sure"] in filtered
    assert queue["owner_right"] not in filtered


def test_confirm_prediction(client, staff, queue):
    client.force_login(staff)
    pending = queue["sure"]
    PetImage.objects.filter(pk=queue["unsure"].pk).update(predicted_breed="")
    response = _act(client, "confirm_prediction", [pending, queue["unsure"]])
    assert "Reviewed 1 image (1 skipped: no prediction)" in response.content.decode()
    pending.refresh_from_db()
    assert (pending.reviewed_label, pending.reviewed_by, pending.final_label) == ("pug", staff, "pug")
    assert pending.reviewed_at is not None


def test_accept_owner_answer(client, staff, queue):
    client.force_login(staff)
    _act(client, "accept_owner_answer", [queue["owner_wrong"], queue["sure"]])
    queue["owner_wrong"].refresh_from_db()
    queue["sure"].refresh_from_db()
    assert queue["owner_wrong"].reviewed_label == "boxer"
    assert queue["sure"].reviewed_label == ""


def test_set_label_and_not_a_pet(client, staff, queue):
    client.force_login(staff)
    response = _act(client, "set_label", [queue["sure"]])
    assert "Choose a label" in response.content.decode()
    _act(client, "set_label", [queue["sure"], queue["unsure"]], label="keeshond")
    _act(client, "mark_not_a_pet", [queue["owner_wrong"]])
    labels = dict(PetImage.objects.values_list("pk", "reviewed_label"))
    assert labels[queue["sure"].pk] == labels[queue["unsure"].pk] == "keeshond"
    assert labels[queue["owner_wrong"].pk] == NOT_A_PET


def test_single_review_in_change_form(client, staff, queue):
    client.force_login(staff)
    pet = queue["unsure"]
    url = reverse("admin:classifier_petimage_change", args=[pet.pk])
    page = client.get(url).content.decode()
    assert "Prediction history" in page
    response = client.post(url, {"reviewed_label": "Birman", "classifications-TOTAL_FORMS": 0,
                                 "classifications-INITIAL_FORMS": 0})
    assert response.status_code == 302
    pet.refresh_from_db()
    assert (pet.reviewed_label, pet.reviewed_by) == ("Birman", staff)
    assert pet.reviewed_at


def test_final_label_prefers_review_then_owner(make_image):
    pet = make_image("pug", is_correct=False, true_breed="beagle")
    assert pet.final_label == "beagle"
    pet.reviewed_label = "boxer"
    assert pet.final_label == "boxer"
    assert make_image("pug").final_label == ""


def test_rerun_needs_an_active_model(client, staff, queue, model_version):
    from registry.models import ModelVersion

    ModelVersion.objects.update(is_active=False)
    client.force_login(staff)
    assert "No active model" in _act(client, "rerun_classification", [queue["sure"]]).content.decode()


def test_dashboard_accuracy_confusions_and_waiting(client, staff, make_image, model_version):
    from classifier.models import Classification

    def reviewed(predicted, label):
        pet = make_image(predicted, 0.9, reviewed_label=label)
        Classification.objects.create(image=pet, model_version=model_version, predicted_breed=predicted, confidence=0.9)
        return pet

    reviewed("pug", "pug"), reviewed("pug", "pug"), reviewed("beagle", "boxer"), reviewed("pug", NOT_A_PET)
    make_image("pug", 0.1)  # waiting (unsure)
    client.force_login(staff)
    response = client.get(reverse("classifier:review_dashboard"))
    context = response.context
    assert context["waiting"] == 1
    assert context["reviewed"] == 4
    assert context["not_a_pet"] == 1
    assert context["versions"] == [{"model_version__name": model_version.name, "name": model_version.name,
                                    "total": 3, "correct": 2, "accuracy": pytest.approx(2 / 3)}]
    assert context["confused"] == [{"actual": "Boxer", "predicted": "Beagle", "count": 1}]
    assert "67%" in response.content.decode()


@pytest.fixture
def reviewer(django_user_model):
    """Staff (for the admin) in the Reviewers group that the migration creates."""
    user = django_user_model.objects.create_user("ray", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Reviewers"))
    return user


def test_dashboard_needs_the_review_permission(client, user, reviewer, make_image):
    url = reverse("classifier:review_dashboard")
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    client.force_login(user)
    assert client.get(url).status_code == 403
    user.is_staff = True
    user.save()
    assert client.get(url).status_code == 403  # staff status alone is not a permission
    client.force_login(reviewer)
    assert client.get(url).status_code == 200


def test_review_queue_is_for_staff_with_permission(client, user, reviewer, make_image):
    assert client.get(CHANGELIST).status_code == 302  # anonymous: to the admin's login page
    client.force_login(user)
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert "login" in response["Location"]
    user.is_staff = True
    user.save()
    assert client.get(CHANGELIST).status_code == 403
    client.force_login(reviewer)
    assert client.get(CHANGELIST).status_code == 200


def test_reviewer_reviews_in_the_admin(client, reviewer, queue):
    client.force_login(reviewer)
    actions = dict(client.get(CHANGELIST).context["action_form"].fields["action"].choices)
    assert {"confirm_prediction", "accept_owner_answer", "set_label", "mark_not_a_pet", "rerun_classification"} <= set(
        actions
    )
    assert "delete_selected" not in actions
    _act(client, "confirm_prediction", [queue["sure"]])
    queue["sure"].refresh_from_db()
    assert (queue["sure"].reviewed_label, queue["sure"].reviewed_by) == ("pug", reviewer)


def test_review_actions_and_label_need_the_review_permission(client, django_user_model, queue):
    """Changing a photo's record is not reviewing it: without the review permission, no review."""
    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    clerk.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_petimage", "change_petimage"])
    )
    client.force_login(clerk)
    actions = dict(client.get(CHANGELIST).context["action_form"].fields["action"].choices)
    assert "rerun_classification" in actions
    assert not {"confirm_prediction", "accept_owner_answer", "set_label", "mark_not_a_pet"} & set(actions)
    _act(client, "confirm_prediction", [queue["sure"]])
    pet = queue["unsure"]
    change = reverse("admin:classifier_petimage_change", args=[pet.pk])
    assert "reviewed_label" not in client.get(change).context["adminform"].form.fields
    client.post(change, {"reviewed_label": "Birman", "classifications-TOTAL_FORMS": 0,
                         "classifications-INITIAL_FORMS": 0})
    assert set(PetImage.objects.exclude(reviewed_label="").values_list("pk", flat=True)) == {
        queue["reviewed_unsure"].pk
    }
