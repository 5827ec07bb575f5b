"""The owner's answer and the reviewers' labels: feedback, review actions, dashboard."""
from __future__ import annotations

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from .models import LABEL_CHOICES, NOT_A_PET, Classification, PetImage, label_name

LABEL_KEYS = {key for key, _ in LABEL_CHOICES}


def record_feedback(pet: PetImage, *, correct: bool, label: str = "") -> None:
    """The owner's answer. "Correct" stores the predicted breed as their label, so the
    answer keeps its meaning if a later model predicts something else."""
    if correct and not pet.predicted_breed:
        raise ValueError("There is no prediction to confirm yet.")
    if not correct and label not in LABEL_KEYS:
        raise ValueError(f"Unknown label {label!r}.")
    pet.is_correct = correct
    pet.true_breed = pet.predicted_breed if correct else label
    pet.feedback_at = timezone.now()
    pet.save(update_fields=["is_correct", "true_breed", "feedback_at"])


def _mark_reviewed(images: QuerySet, reviewer, label) -> int:
    return images.update(reviewed_label=label, reviewed_by=reviewer, reviewed_at=timezone.now())


def confirm_predictions(images: QuerySet, reviewer) -> int:
    """The reviewer agrees with the model. Images without a prediction are skipped."""
    return _mark_reviewed(images.exclude(predicted_breed=""), reviewer, F("predicted_breed"))


def accept_owner_answers(images: QuerySet, reviewer) -> int:
    """The reviewer agrees with the owner. Images without an owner's answer are skipped."""
    return _mark_reviewed(images.exclude(true_breed=""), reviewer, F("true_breed"))


def set_label(images: QuerySet, label: str, reviewer) -> int:
    """The reviewer's own label, a breed or NOT_A_PET, for every image given."""
    if label not in LABEL_KEYS:
        raise ValueError(f"Unknown label {label!r}.")
    return _mark_reviewed(images, reviewer, label)


def review_summary() -> dict:
    """What the review dashboard shows: the queue, each model version's accuracy measured
    on reviewed images, and the breed pairs the models confuse most in reviewed data."""
    breed_labelled = PetImage.objects.labelled().exclude(reviewed_label=NOT_A_PET)
    queue = PetImage.objects.needing_review()
    per_version = (
        Classification.objects.filter(image__in=breed_labelled)
        .values("model_version__name")
        .annotate(
            total=Count("pk"),
            correct=Count("pk", filter=Q(predicted_breed=F("image__reviewed_label"))),
        )
        .order_by("model_version__name")
    )
    confused = (
        breed_labelled.exclude(predicted_breed="")
        .exclude(predicted_breed=F("reviewed_label"))
        .values("reviewed_label", "predicted_breed")
        .annotate(count=Count("pk"))
        .order_by("-count", "reviewed_label")[:15]
    )
    return {
        "waiting": queue.count(),
        "waiting_owner_said_wrong": queue.filter(is_correct=False).count(),
        "reviewed": PetImage.objects.labelled().count(),
        "not_a_pet": PetImage.objects.filter(reviewed_label=NOT_A_PET).count(),
        "versions": [
            {**row, "name": row["model_version__name"] or "(deleted model)", "accuracy": row["correct"] / row["total"]}
            for row in per_version
        ],
        "confused": [
            {
                "actual": label_name(row["reviewed_label"]),
                "predicted": label_name(row["predicted_breed"]),
                "count": row["count"],
            }
            for row in confused
        ],
        "threshold": settings.PETSITE_REVIEW_CONFIDENCE,
    }
