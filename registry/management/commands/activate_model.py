from django.core.management.base import BaseCommand, CommandError

from registry import services
from registry.models import ModelVersion


class Command(BaseCommand):
    help = "Make a registered model version the active one; images still pending get classified."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, name, **options):
        try:
            version = ModelVersion.objects.get(name=name)
        except ModelVersion.DoesNotExist:
            known = ", ".join(ModelVersion.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No model version named {name!r}. Known versions: {known}.") from None
        services.activate_version(version)
        self.stdout.write(self.style.SUCCESS(f"{version.name} is now the active model."))
