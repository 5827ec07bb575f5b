"""The owner's answer and the reviewers' labels: feedback, review actions, dashboard."""
from __future__ import annotations

from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from .models import LABEL_CHOICES, NOT_A_PET, Classification, PetImage, label_name
from .review_queue import QUEUE_ORDER, QueueReason, reason_words, with_queue_reason  # noqa: F401  (re-exported)
from .verdicts import model_answer, with_article

LABEL_KEYS = {key for key, _ in LABEL_CHOICES}


def record_feedback(pet: PetImage, label: str) -> None:
    """The owner's answer: what the photo shows, a breed key or ``NOT_A_PET``.

    The label is what the review queue and retraining use, so it is always stored as the
    owner said it; ``is_correct`` is derived from it: whether it is the model's answer
    (``verdicts.model_answer``: not-a-pet for a not-a-pet verdict, else the first breed).
    So "wrong, it is a Persian" when Persian was the answer is a right answer (not a
    "wrong" that would lead the queue with the model's own label), and "Persian" for a
    photo the model called not a cat or dog is a wrong one, whatever its first breed.
    Before any result (only the API allows it), a label is a correction of nothing yet:
    it counts as "wrong", so that a reviewer sees it. The label keeps its meaning if a
    later model predicts something else.
    """
    if label not in LABEL_KEYS:
        raise ValueError(f"Unknown label {label!r}.")
    pet.is_correct = label == model_answer(pet)
    pet.true_breed = label
    pet.feedback_at = timezone.now()
    pet.save(update_fields=["is_correct", "true_breed", "feedback_at"])


def owner_answer_words(pet: PetImage) -> str:
    """What the owner said, as the photo page reminds them: "“It is a Persian.”" (the
    model's answer) or "“Wrong, it is a Beagle.”"; "" before any answer. Read from the
    stored label, so it never says "correct" about a breed the owner did not choose."""
    if pet.is_correct is None or not pet.true_breed:
        return ""
    what = "not a cat or dog" if pet.true_breed == NOT_A_PET else with_article(label_name(pet.true_breed))
    return f"“It is {what}.”" if pet.is_correct else f"“Wrong, it is {what}.”"


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


# --- The review queue: which photos wait for a reviewer, and in which order ------------------


def review_queue(images: QuerySet | None = None) -> QuerySet:
    """Every photo, those that wait for review first, in :data:`QUEUE_ORDER`."""
    return with_queue_reason(PetImage.objects.all() if images is None else images).order_by(*QUEUE_ORDER)


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
    counts = dict(queue.order_by().values_list("review_reason").annotate(count=Count("pk")))
    waiting_by_reason = [
        {"reason": reason, "count": counts[reason], "words": reason_words(reason)}
        for reason in QueueReason
        if counts.get(reason)
    ]
    return {
        "waiting": sum(counts.values()),
        "waiting_by_reason": waiting_by_reason,
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
    }
