from datetime import timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone

from ml import breeds
from ml.warmup import WARMUP_TIMEOUT


class Verdict(models.TextChoices):
    """What a prediction is worth, as the site shows it: the verdict names of ``ml.breeds``
    (which ``ml.calibration`` gives), with their words."""

    CONFIDENT = breeds.CONFIDENT, "Confident"
    UNSURE = breeds.UNSURE, "Not sure"
    NOT_A_PET = breeds.NOT_A_PET, breeds.NOT_A_PET_NAME


class ModelVersion(models.Model):
    """A registered checkpoint. Exactly one version is active: the one new uploads use."""

    name = models.SlugField(max_length=100, unique=True)
    file = models.FileField(upload_to="models/", max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    classes = models.JSONField(default=list)
    image_size = models.PositiveIntegerField(default=224)
    metrics = models.JSONField(default=dict, blank=True)
    training_args = models.JSONField(default=dict, blank=True)
    history = models.JSONField(default=dict, blank=True)
    figures = models.JSONField(default=dict, blank=True, help_text="figure name -> storage path")
    is_active = models.BooleanField(default=False)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_model_version")
        ]

    def __str__(self) -> str:
        return self.name + (" (active)" if self.is_active else "")

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("accuracy")


class ModelWarmupQuerySet(models.QuerySet):
    def live(self, now=None) -> "ModelWarmupQuerySet":
        """Warm-ups that count: finished ones, and running ones younger than
        ``ml.warmup.WARMUP_TIMEOUT`` (an older one died with its worker)."""
        cutoff = (now or timezone.now()) - timedelta(seconds=WARMUP_TIMEOUT)
        return self.exclude(state=ModelWarmup.State.RUNNING, started_at__lt=cutoff)

    def active_model_getting_ready(self, now=None) -> bool:
        """True while the active model warms up on some machine and is ready on none: new
        uploads are then served by eager FP32 while the faster backend is prepared. One query."""
        states = set(self.live(now).filter(version__is_active=True).values_list("state", flat=True).distinct())
        return ModelWarmup.State.RUNNING in states and ModelWarmup.State.READY not in states


class ModelWarmup(models.Model):
    """A model version's warm-up on one worker machine (``ml.warmup``): the ONNX export and
    the measured choice of its inference backend, done once per model and machine, off the
    path of a user's photo. Written by the worker that runs it; read by the photo pages
    ("the new model is getting ready") and the staff model page (each machine's choice)."""

    class State(models.TextChoices):
        RUNNING = "running", "Getting ready"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="warmups")
    host = models.CharField(max_length=255, help_text="the worker machine")
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    backend = models.CharField(max_length=20, blank=True, help_text="the backend its workers run (when ready)")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    report = models.JSONField(default=dict, blank=True, help_text="ml.warmup's result: timings, export, reasons")

    objects = ModelWarmupQuerySet.as_manager()

    class Meta:
        ordering = ["host"]
        constraints = [models.UniqueConstraint(fields=["version", "host"], name="one_warmup_per_version_and_host")]

    def __str__(self) -> str:
        return f"{self.version.name} on {self.host}: {self.get_state_display().lower()}"

    @property
    def speedup(self) -> float | None:
        """The chosen backend's measured throughput over eager FP32's, from the report."""
        return next((c["speedup"] for c in self.candidates() if c["name"] == self.backend), None)

    def candidates(self) -> list[dict]:
        """Each candidate of the choice (``ml.backend_choice.choose_backend``'s report): its name,
        speed-up over eager FP32 (None when not timed) and why it was not timed or not taken."""
        measured = (self.report.get("choice") or {}).get("candidates", {})
        return [
            {"name": name, "speedup": figures.get("speedup_vs_eager"), "reason": figures.get("reason") or ""}
            for name, figures in measured.items()
        ]
