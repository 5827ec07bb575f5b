"""The review queue's one rule: which photos wait for a reviewer, why, and in which order.

Read by ``PetImage.objects.with_review_state()`` and by ``classifier.review`` (the admin's
queue, the dashboard); it imports no model, so the models can use it without a cycle.
"""
from django.conf import settings
from django.db import models
from django.db.models import Case, Q, QuerySet, Value, When

from registry.models import Verdict


class QueueReason(models.IntegerChoices):
    """Why a photo waits for review, in the queue's order (lower first).

    The owner's word first: "wrong" (a breed, or "not a cat or dog") is a known mistake.
    Then the model's own doubt, its verdict: "not sure", and "not a cat or dog", which
    a reviewer confirms or corrects like any doubt. Last, predictions below
    ``PETSITE_REVIEW_CONFIDENCE``: those made before verdicts existed, or a confident
    verdict below a threshold set higher than the model's own. Reviewed photos never wait.
    """

    OWNER_SAID_WRONG = 1, "Owner said wrong"
    MODEL_UNSURE = 2, "Model not sure or no pet"
    LOW_CONFIDENCE = 3, "Low confidence"
    NOT_WAITING = 4, "–"


def _conditions() -> dict[QueueReason, Q]:
    """Each reason's condition on a photo nobody has reviewed; the first that holds wins."""
    return {
        QueueReason.OWNER_SAID_WRONG: Q(is_correct=False),
        QueueReason.MODEL_UNSURE: Q(verdict__in=[Verdict.UNSURE, Verdict.NOT_A_PET]),
        QueueReason.LOW_CONFIDENCE: Q(confidence__lt=settings.PETSITE_REVIEW_CONFIDENCE),
    }


def reason_words(reason: QueueReason) -> str:
    """The reason in words after a count, as the dashboard says it ("3 where the owner said
    the model was wrong"), with the threshold in force."""
    return {
        QueueReason.OWNER_SAID_WRONG: "where the owner said the model was wrong",
        QueueReason.MODEL_UNSURE: "where the model was not sure, or saw no cat or dog",
        QueueReason.LOW_CONFIDENCE:
            f"predicted with less than {settings.PETSITE_REVIEW_CONFIDENCE:.0%} confidence",
        QueueReason.NOT_WAITING: "reviewed, or with nothing to review",
    }[reason]


# The queue's order: by reason, then the newest upload first (the id breaks ties, so that
# pages of the admin's list never repeat or skip a photo).
QUEUE_ORDER = ["review_reason", "-uploaded_at", "-pk"]


def with_queue_reason(images: QuerySet) -> QuerySet:
    """Annotate ``review_reason`` (a :class:`QueueReason`) and ``needs_review`` (it waits).

    Case/When, not bare boolean expressions: SQL's NULL (no answer, no confidence) must
    count as "no", and NULLs would otherwise sort first on PostgreSQL.
    """
    unreviewed = Q(reviewed_at__isnull=True)
    reason = Case(
        *(When(unreviewed & condition, then=Value(int(key))) for key, condition in _conditions().items()),
        default=Value(int(QueueReason.NOT_WAITING)),
        output_field=models.PositiveSmallIntegerField(),
    )
    waits = Case(
        When(review_reason__lt=QueueReason.NOT_WAITING, then=Value(True)),
        default=Value(False),
        output_field=models.BooleanField(),
    )
    return images.annotate(review_reason=reason).annotate(needs_review=waits)
