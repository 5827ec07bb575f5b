from django.apps import AppConfig


class ClassifierConfig(AppConfig):
    name = "classifier"
    verbose_name = "Pet images"

    def ready(self) -> None:
        from registry.signals import model_activated

        from . import limits, tasks

        model_activated.connect(tasks.on_model_activated, dispatch_uid="classifier.enqueue_pending")
        limits.accept_long_file_names()
