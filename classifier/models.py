import os
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django_guid import get_guid

from ml import breeds
from registry.models import ModelWarmup, Verdict

from .choices import BREED_CHOICES, LABEL_CHOICES, NOT_A_PET, Error, Status, label_name  # noqa: F401  (re-exported)
from .review_queue import with_queue_reason
from .verdicts import VerdictDisplay, describe


def _random_name(prefix: str, filename: str) -> str:
    """A storage name that reveals nothing and never collides; the original name is kept in a field."""
    ext = os.path.splitext(filename)[1].lower()
    return f"{prefix}/{timezone.now():%Y/%m}/{uuid.uuid4().hex}{ext}"


def image_upload_to(instance: "PetImage", filename: str) -> str:
    return _random_name("images", filename)


def thumbnail_upload_to(instance: "PetImage", filename: str) -> str:
    return _random_name("thumbs", filename)


def heatmap_upload_to(instance: "PetImage", filename: str) -> str:
    return _random_name("heatmaps", filename)


_getting_ready: tuple[str, bool] | None = None  # (request id, answer) of the request being answered


def _model_getting_ready(now=None) -> bool:
    """Whether the active model warms up (``ModelWarmup``), asked once per request: the
    bulk status view asks for each of up to 100 photos, in one database query for all.
    The request id (django_guid's) tells one request from the next; outside a request
    (a worker, a shell) each call asks the database."""
    global _getting_ready
    request_id = get_guid() if now is None else None
    if request_id and _getting_ready and _getting_ready[0] == request_id:
        return _getting_ready[1]
    answer = ModelWarmup.objects.active_model_getting_ready(now)
    if request_id:
        _getting_ready = (request_id, answer)
    return answer


class PetImageQuerySet(models.QuerySet):
    def with_review_state(self) -> "PetImageQuerySet":
        """Annotate ``review_reason`` and ``needs_review``: why the photo waits for review, if
        it does (``classifier.review_queue.with_queue_reason``, the queue's one rule)."""
        return with_queue_reason(self)

    def needing_review(self) -> "PetImageQuerySet":
        return self.with_review_state().filter(needs_review=True)

    def labelled(self) -> "PetImageQuerySet":
        """Images with a reviewed label: the ones that count as ground truth."""
        return self.exclude(reviewed_label="")


class PetImage(models.Model):
    """One upload and everything known about it: file, prediction, feedback, review."""

    Status = Status  # the choices live in classifier/choices.py (no models there: no import cycle)
    Error = Error

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pet_images")
    image = models.ImageField(upload_to=image_upload_to, max_length=255)
    original_name = models.CharField(max_length=255)
    thumbnail = models.ImageField(upload_to=thumbnail_upload_to, max_length=255, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    uploaded_at = models.DateTimeField(default=timezone.now)

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    error_code = models.CharField(max_length=20, choices=Error.choices, blank=True, default=Error.NONE)
    error_message = models.TextField(blank=True, help_text="the error's detail, for staff")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="tries started and not finished (a worker died)")
    # Delivery bookkeeping: a queue message is only a hint, these fields decide what is re-sent.
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="when a message was last sent for it")
    enqueue_count = models.PositiveIntegerField(default=0)
    # The claim: a worker owns the image from claimed_at until it writes the result.
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    claimed_by = models.CharField(max_length=255, blank=True, help_text="host:pid of the worker process")
    claimed_at = models.DateTimeField(null=True, blank=True)
    predicted_breed = models.CharField(max_length=50, choices=BREED_CHOICES, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    top_k = models.JSONField(default=list, blank=True, help_text='[{"breed": key, "probability": p}, ...]')
    model_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="pet_images"
    )
    classified_at = models.DateTimeField(null=True, blank=True)
    verdict = models.CharField(max_length=12, choices=Verdict.choices, blank=True)
    verdict_scores = models.JSONField(
        default=dict, blank=True, help_text="the scores and thresholds that gave the verdict"
    )
    # Grad-CAM over the photo for the predicted breed, made when asked (a POST: classifier/explanations.py).
    heatmap = models.ImageField(upload_to=heatmap_upload_to, max_length=255, blank=True)
    heatmap_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="the model the heatmap explains",
    )

    # The owner's answer: is_correct True, or False with the true label (a breed or NOT_A_PET).
    is_correct = models.BooleanField(null=True, blank=True)
    true_breed = models.CharField(max_length=50, choices=LABEL_CHOICES, blank=True)
    feedback_at = models.DateTimeField(null=True, blank=True)

    # A staff reviewer's label: the ground truth that retraining uses.
    reviewed_label = models.CharField(max_length=50, choices=LABEL_CHOICES, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    objects = PetImageQuerySet.as_manager()

    class Meta:
        ordering = ["-uploaded_at", "-pk"]
        indexes = [
            models.Index(fields=["owner", "-uploaded_at"], name="petimage_owner_recent"),
            models.Index(fields=["owner", "predicted_breed"], name="petimage_owner_breed"),
            models.Index(fields=["status", "enqueued_at"], name="petimage_status_sent"),
            models.Index(fields=["status", "claimed_at"], name="petimage_status_claimed"),
            models.Index(fields=["reviewed_at", "is_correct"], name="petimage_review"),
        ]
        permissions = [("review_petimage", "Can review pet images (labels, review queue, dashboard)")]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.get_status_display()})"

    def get_absolute_url(self) -> str:
        return reverse("classifier:detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    def status_message(self, now=None) -> str:
        """What the owner is told about an unfinished or failed image, in plain words.

        Decided by ``error_code``; ``error_message`` holds the detail for staff (it may name a
        command or a model file) and is never read here.
        While the active model warms up (``registry.models.ModelWarmup``: a new model is exported and
        its backend chosen; workers serve it with eager FP32 meanwhile), a waiting photo says so.
        """
        if self.status == self.Status.DONE:
            return ""
        if self.status == self.Status.FAILED:
            return "Sorry, this photo could not be classified. " + (
                "The file could not be read." if self.error_code == self.Error.UNREADABLE
                else "It stopped the classifier several times, so a person will look at it."
            )
        if self.error_code == self.Error.NO_ACTIVE_MODEL:
            return "Your photo is saved and will be classified as soon as the classifier is set up."
        if _model_getting_ready(now):
            return "The new model is getting ready. Your photo is safe and will be classified shortly."
        since = (self.claimed_at if self.status == self.Status.PROCESSING else self.enqueued_at) or self.uploaded_at
        if (now or timezone.now()) - since > timedelta(seconds=settings.PETSITE_REQUEUE_AFTER):
            return (
                "This is taking longer than usual: the classifier is busy or restarting. "
                "Your photo is safe and will be classified as soon as a worker is free."
            )
        if self.status == self.Status.PROCESSING and self.attempts > 1:
            return "The classifier stopped while working on this photo; trying again."
        return ""

    @property
    def species(self) -> str:
        return breeds.species_of(self.predicted_breed) if self.predicted_breed else ""

    @property
    def final_label(self) -> str:
        """The reviewer's label, else the owner's answer, else none ("")."""
        return self.reviewed_label or self.true_breed

    @property
    def display(self) -> VerdictDisplay:
        """What the pages say about the result, in words (``classifier.verdicts.describe``)."""
        return describe(self)

    @property
    def is_confident(self) -> bool:
        """A result worth its percentage: confident, or from before verdicts existed."""
        return self.display.show_confidence

    def headline(self) -> str:
        """The answer in words, no surer than the model is (``classifier.verdicts``): "Great
        Pyrenees", "Not sure. Closest breed: Bengal" or "Does not look like a cat or dog"; empty
        without a result."""
        return self.display.headline

    def top_k_display(self) -> list[dict]:
        return [
            {"breed": row["breed"], "name": label_name(row["breed"]), "probability": row["probability"]}
            for row in self.top_k
        ]


class Classification(models.Model):
    """Every prediction ever made for an image, so that a model change is auditable.

    The PetImage row holds the current prediction; this table keeps all of them.
    """

    image = models.ForeignKey(PetImage, on_delete=models.CASCADE, related_name="classifications")
    model_version = models.ForeignKey("registry.ModelVersion", on_delete=models.SET_NULL, null=True, related_name="+")
    predicted_breed = models.CharField(max_length=50, choices=BREED_CHOICES)
    confidence = models.FloatField()
    top_k = models.JSONField(default=list)
    verdict = models.CharField(max_length=12, choices=Verdict.choices, blank=True)
    verdict_scores = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["image", "-created_at"], name="classification_image_recent")]
        constraints = [
            # A model version classifies an image once: a second delivery of the same task, or a
            # second worker, can never add a second row.
            models.UniqueConstraint(fields=["image", "model_version"], name="one_classification_per_image_version")
        ]

    def __str__(self) -> str:
        return f"{self.get_predicted_breed_display()} {self.confidence:.0%} by {self.model_version}"


class WorkerHeartbeat(models.Model):
    """The last sign of life of one Celery worker, written by its main process every few
    seconds (classifier/workers.py), so that the site can tell when no worker serves a queue.

    One row per worker node name, kept across the worker's restarts; rows not seen for a
    day are pruned by the workers themselves.
    """

    node = models.CharField(max_length=255, unique=True, help_text="the worker's node name, e.g. celery@host")
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField(help_text="the worker's main process")
    queues = models.JSONField(default=list, help_text="the queues it takes tasks from")
    processes = models.PositiveSmallIntegerField(
        default=0, help_text="processes that can run a task now (pool children alive and up)"
    )
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["node"]

    def __str__(self) -> str:
        return self.node
