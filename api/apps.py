from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The JSON API: a thin layer over the classifier's and ml's services."""

    name = "api"
    verbose_name = "JSON API"

    def ready(self) -> None:
        # ?wait=N: wake waiting requests when an image finishes (api/waiting.py), in every process.
        from classifier.signals import image_finished

        from . import waiting

        image_finished.connect(waiting.publish_finished, dispatch_uid="api.waiting.publish_finished")
