from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse


class TrainingRun(models.Model):
    """One training run started from the site: what was asked, how far it got, and the
    model it made, compared with the model that was active (the champion).

    The row is the truth about a run (the task is acknowledged when it starts, so a dead
    training worker is not redelivered): a heartbeat older than a few minutes means the
    worker died, and the run is marked failed. The model version is registered only once
    the run has finished and been compared, so a cancelled or crashed run never leaves a
    half-registered model.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Waiting for a training worker"
        RUNNING = "running", "Training"
        SUCCEEDED = "succeeded", "Finished"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Start(models.TextChoices):
        ACTIVE = "active", "The active model"
        IMAGENET = "imagenet", "ImageNet weights"

    UNFINISHED = (State.QUEUED, State.RUNNING)

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    start_from = models.CharField(max_length=10, choices=Start.choices, default=Start.ACTIVE)
    base_version = models.ForeignKey("registry.ModelVersion", on_delete=models.SET_NULL, null=True, blank=True,
                                     related_name="+", help_text="the active model when the run started")
    recipe = models.CharField(max_length=10, default="auto")
    epochs = models.PositiveSmallIntegerField(null=True, blank=True, help_text="empty: the recipe's own")
    image_size = models.PositiveSmallIntegerField(default=224)
    settings = models.JSONField(default=dict, blank=True, help_text="every training argument, as run")

    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    # True while queued or running: the unique constraint below allows one such run at a time.
    is_current = models.BooleanField(default=True, editable=False)
    cancel_requested = models.BooleanField(default=False)
    progress = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True, help_text="what happened, for staff")
    num_reviewed_images = models.PositiveIntegerField(default=0)

    result = models.ForeignKey("registry.ModelVersion", on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="+", help_text="the model this run made (the challenger)")
    comparison = models.JSONField(default=dict, blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_current"], condition=Q(is_current=True), name="one_training_run_at_a_time"
            )
        ]

    def __str__(self) -> str:
        return f"Training run {self.pk} ({self.get_state_display().lower()})"

    def get_absolute_url(self) -> str:
        return reverse("training:run", args=[self.pk])

    @property
    def finished(self) -> bool:
        return self.state not in self.UNFINISHED
