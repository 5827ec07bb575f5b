from django.apps import AppConfig


class ClassifierConfig(AppConfig):
    name = "classifier"
    verbose_name = "Pet images"

    def ready(self) -> None:
        from ml.signals import model_activated

        from . import services

        model_activated.connect(services.on_model_activated, dispatch_uid="classifier.enqueue_pending")
