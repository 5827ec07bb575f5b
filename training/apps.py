from django.apps import AppConfig


class TrainingConfig(AppConfig):
    """Training runs started from the site: start, watch, cancel, compare, promote."""

    name = "training"
    verbose_name = "Training runs"
