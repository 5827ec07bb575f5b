from django.core.management.base import BaseCommand, CommandError

from ml.checkpoints import CheckpointError
from registry import services


class Command(BaseCommand):
    help = "Register a Petsite checkpoint file as a model version."

    def add_arguments(self, parser):
        parser.add_argument("file", help="checkpoint written by `train` or ml.checkpoints.save_checkpoint")
        parser.add_argument("--name", help="version name (default: architecture and time)")
        parser.add_argument("--activate", action="store_true", help="make it the active model")

    def handle(self, file, name, activate, **options):
        try:
            version = services.register_model(file, name=name, activate=activate)
        except (CheckpointError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        state = "active" if activate else "not active; run `python manage.py activate_model " + version.name + "`"
        self.stdout.write(self.style.SUCCESS(f"Registered model version {version.name} ({state})."))
