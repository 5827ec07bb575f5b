"""The words a photo's fields take: breeds and labels, statuses and error codes.

Apart from the models, so that the modules the models use (``verdicts``, ``review_queue``)
read them without importing the models: no import cycle, lazy or not.
"""
from django.db import models

from ml import breeds
from ml.breeds import NOT_A_PET

BREED_CHOICES = [(b.key, b.display_name) for b in breeds.BREEDS]
LABEL_CHOICES = BREED_CHOICES + [(NOT_A_PET, breeds.NOT_A_PET_NAME)]


def label_name(key: str) -> str:
    """Display name of a breed key or of NOT_A_PET; empty for no label."""
    return dict(LABEL_CHOICES).get(key, key)


class Status(models.TextChoices):
    """Where a photo is on its way to a result (``PetImage.status``)."""

    PENDING = "pending", "Waiting"
    PROCESSING = "processing", "Classifying"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Error(models.TextChoices):
    """Why an image is not classified (yet): the code decides what the owner is told and
    what happens next; ``error_message`` says the detail in words, for staff only."""

    NONE = "", "None"
    NO_ACTIVE_MODEL = "no_active_model", "No active model"
    MODEL_UNLOADABLE = "model_unloadable", "The model cannot be loaded"
    TRY_FAILED = "try_failed", "The last try failed"
    TOO_MANY_TRIES = "too_many_tries", "Too many tries"
    UNREADABLE = "unreadable", "The stored file cannot be read"
