from django.core.management.base import BaseCommand, CommandError
from PIL import UnidentifiedImageError

from ml.breeds import display_name
from registry import services
from registry.models import ModelVersion


class Command(BaseCommand):
    help = "Print the top-k breeds for image files, using the active (or a named) model."

    def add_arguments(self, parser):
        parser.add_argument("images", nargs="+", metavar="IMAGE")
        parser.add_argument("--model", help="model version name (default: the active one)")
        parser.add_argument("-k", type=int, default=5, help="how many breeds to show")

    def handle(self, images, model, k, **options):
        try:
            version = ModelVersion.objects.get(name=model) if model else services.require_active_version()
        except (ModelVersion.DoesNotExist, services.NoActiveModel) as exc:
            raise CommandError(str(exc) if not model else f"No model version named {model!r}.") from exc
        predictor = services.predictor_for(version, warm_up=False)  # workers warm models up, not this command
        failed = 0
        for path in images:
            try:
                predictions = predictor.classify(path, k=k).top_k
            except (OSError, UnidentifiedImageError) as exc:
                self.stderr.write(f"{path}: cannot read image ({exc})")
                failed += 1
                continue
            self.stdout.write(f"{path}  [{version.name}]")
            for rank, p in enumerate(predictions, 1):
                self.stdout.write(f"  {rank}. {display_name(p.label):<28} {p.probability:6.1%}")
        if failed:
            raise CommandError(f"{failed} of {len(images)} images could not be read.")
