from django.apps import AppConfig


class MlConfig(AppConfig):
    name = "ml"
    verbose_name = "Models"

    def ready(self) -> None:
        from . import tasks
        from .signals import model_activated, model_registered

        # Every classification worker warms a new model up before its first photo needs it.
        model_registered.connect(tasks.on_model_changed, dispatch_uid="ml.warm_up_registered")
        model_activated.connect(tasks.on_model_changed, dispatch_uid="ml.warm_up_activated")
