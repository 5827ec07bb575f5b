from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    """Webhooks: a signed POST to the user's URL when each of their images finishes."""

    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from classifier.signals import image_finished

        from . import tasks

        image_finished.connect(tasks.on_image_finished, dispatch_uid="webhooks.tasks.on_image_finished")
