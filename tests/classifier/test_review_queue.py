"""The review queue's order, as docs/using.md states it (section "Review"), read where a
reviewer reads it: the admin's list of photos. And the dashboard's words, which follow the same rule.

Order: photos the owner said are wrong, then those the model was not sure of or took for
no cat or dog (its verdict), then those predicted below PETSITE_REVIEW_CONFIDENCE; the
newest first within each; then everything else.
"""
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from classifier import review
from classifier.models import NOT_A_PET, PetImage

CHANGELIST = reverse("admin:classifier_petimage_changelist")
DASHBOARD = reverse("classifier:review_dashboard")


def listed(client) -> list[int]:
    """The photos' ids in the admin list's rows, top to bottom, as the page shows them."""
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    return [int(pk) for pk in re.findall(r'name="_selected_action" value="(\d+)"', response.content.decode())]


@pytest.fixture
def photos(make_image) -> dict[str, PetImage]:
    """Photos of each kind, made so that "newest first" alone would put the owner's answers last."""
    made = {
        "owner_said_wrong": make_image("beagle", 0.93, verdict="confident", is_correct=False, true_breed="boxer"),
        "owner_said_not_a_pet": make_image("pug", 0.97, verdict="confident", is_correct=False,
                                           true_breed=NOT_A_PET),
        "low_old": make_image("Persian", 0.30),  # before verdicts: only its confidence
        "unsure_60": make_image("Bengal", 0.60, verdict="unsure"),
        "not_a_pet": make_image("pug", 0.85, verdict="not_a_pet"),
        "low_confident": make_image("boxer", 0.45, verdict="confident"),  # below the queue's threshold
        "reviewed_wrong": make_image("samoyed", 0.9, is_correct=False, true_breed="pug", reviewed_label="pug",
                                     reviewed_at=timezone.now()),
        "sure": make_image("pug", 0.97, verdict="confident"),
        "owner_said_right": make_image("samoyed", 0.99, verdict="confident", is_correct=True, true_breed="samoyed"),
    }
    # Uploaded one minute apart, in the order above: the last is the newest.
    start = timezone.now() - timedelta(hours=1)
    for minutes, pet in enumerate(made.values()):
        PetImage.objects.filter(pk=pet.pk).update(uploaded_at=start + timedelta(minutes=minutes))
    return made


def test_the_admin_lists_the_queue_in_the_readme_order(client, reviewer, photos):
    client.force_login(reviewer)
    ids = {pet.pk: name for name, pet in photos.items()}
    assert [ids[pk] for pk in listed(client)] == [
        "owner_said_not_a_pet", "owner_said_wrong",  # the owner said wrong (a breed or not a pet), newest first
        "not_a_pet", "unsure_60",  # the model's own doubt: not sure, or no cat or dog
        "low_confident", "low_old",  # below PETSITE_REVIEW_CONFIDENCE
        "owner_said_right", "sure", "reviewed_wrong",  # nothing to review: the newest first
    ]


def test_each_row_says_why_it_waits(client, reviewer, photos):
    client.force_login(reviewer)
    rows = client.get(CHANGELIST).context["cl"].result_list
    reasons = {pet.pk: pet.review_reason for pet in rows}
    assert reasons[photos["owner_said_wrong"].pk] == review.QueueReason.OWNER_SAID_WRONG
    assert reasons[photos["unsure_60"].pk] == review.QueueReason.MODEL_UNSURE
    assert reasons[photos["low_old"].pk] == review.QueueReason.LOW_CONFIDENCE
    assert reasons[photos["reviewed_wrong"].pk] == review.QueueReason.NOT_WAITING
    page = client.get(CHANGELIST).content.decode()
    for reason in review.QueueReason:
        assert f'<td class="field-queue_reason">{reason.label}</td>' in page


def test_the_queue_follows_the_threshold(client, reviewer, photos, settings):
    settings.PETSITE_REVIEW_CONFIDENCE = 0.95  # "sure" (97 %) stays out, "owner said right" (99 %) too
    client.force_login(reviewer)
    names = {pet.pk: name for name, pet in photos.items()}
    order = [names[pk] for pk in listed(client)]
    assert order[4:6] == ["low_confident", "low_old"]
    assert set(order[6:]) == {"sure", "owner_said_right",
                                                                            "reviewed_wrong"}
    settings.PETSITE_REVIEW_CONFIDENCE = 0.98
    order = [names[pk] for pk in listed(client)]
    assert order[4:7] == ["sure", "low_confident", "low_old"]


def dashboard_text(client) -> str:
    page = client.get(DASHBOARD).content.decode()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page))


def test_the_dashboard_counts_each_reason_in_the_rules_words(client, reviewer, photos, settings):
    client.force_login(reviewer)
    text = dashboard_text(client)
    assert "6 images waiting for review" in text
    words = {reason: review.reason_words(reason) for reason in review.QueueReason}
    assert (f"(2 {words[review.QueueReason.OWNER_SAID_WRONG]}; 2 {words[review.QueueReason.MODEL_UNSURE]}; "
            f"2 {words[review.QueueReason.LOW_CONFIDENCE]}), in that order in the queue.") in text
    # The words say what the rule is: the 60 % "not sure" photo is not called below 50 %.
    assert words[review.QueueReason.MODEL_UNSURE] == "where the model was not sure, or saw no cat or dog"
    assert words[review.QueueReason.LOW_CONFIDENCE] == "predicted with less than 50% confidence"
    settings.PETSITE_REVIEW_CONFIDENCE = 0.7
    assert "predicted with less than 70% confidence" in dashboard_text(client)


def test_the_dashboard_names_only_the_reasons_it_has(client, reviewer, make_image):
    make_image("Bengal", 0.6, verdict="unsure")
    client.force_login(reviewer)
    text = dashboard_text(client)
    assert "1 image waiting for review (1 where the model was not sure, or saw no cat or dog)." in text
    assert "less than" not in text
    assert "owner said" not in text
