from django.db import models
from django.db.models import Q


class Verdict(models.TextChoices):
    """What a prediction is worth, as the site shows it. The values are ml.calibration's
    verdict names (a test keeps them equal; that module needs torch, this one must not)."""

    CONFIDENT = "confident", "Confident"
    UNSURE = "unsure", "Not sure"
    NOT_A_PET = "not_a_pet", "Not a cat or dog"


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
