from django.apps import AppConfig


class ApiConfig(AppConfig):
    """The JSON API: a thin layer over the classifier's and ml's services."""

    name = "api"
    verbose_name = "JSON API"
