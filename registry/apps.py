from django.apps import AppConfig


class RegistryConfig(AppConfig):
    """Model versions: the checkpoints the site can serve, which one is active, and their warm-up.

    The model itself (training, inference, backends) is the Django-free package ``ml``;
    this app is its Django side.
    """

    name = "registry"
    verbose_name = "Models"

    def ready(self) -> None:
        from . import tasks
        from .signals import model_activated, model_registered

        # Every classification worker warms a new model up before its first photo needs it.
        model_registered.connect(tasks.on_model_changed, dispatch_uid="registry.warm_up_registered")
        model_activated.connect(tasks.on_model_changed, dispatch_uid="registry.warm_up_activated")
