"""`evaluate`: metrics and figures of a registered model on one split of the dataset."""
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from ml.checkpoints import CheckpointError
from ml.data import DatasetError
from ml.outputs import run_evaluation
from registry import services
from registry.models import ModelVersion


class Command(BaseCommand):
    help = "Evaluate a model version on a split of Oxford-IIIT Pets; keeps metrics and figures with the version."

    def add_arguments(self, parser):
        parser.add_argument("--model", help="model version name (default: the active one)")
        parser.add_argument("--data", required=True, help="folder holding oxford-iiit-pet/")
        parser.add_argument("--split", choices=["test", "trainval"], default="test")
        parser.add_argument("--batch-size", type=int, default=128)
        parser.add_argument("--workers", type=int, default=4)
        parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
        parser.add_argument("--download", action="store_true")
        parser.add_argument("--out", help="folder for metrics.json and figures/ (default: under PETSITE_RUNS_DIR)")

    def handle(self, *args, **o):
        try:
            version = ModelVersion.objects.get(name=o["model"]) if o["model"] else services.require_active_version()
        except ModelVersion.DoesNotExist:
            raise CommandError(f"No model version named {o['model']!r}.") from None
        except services.NoActiveModel as exc:
            raise CommandError(str(exc)) from None
        out = Path(
            o["out"] or settings.PETSITE_RUNS_DIR / f"{version.name}-{o['split']}-{timezone.now():%Y%m%d-%H%M%S}"
        )
        try:
            with services.local_checkpoint(version) as path:
                metrics, _ = run_evaluation(
                    path,
                    o["data"],
                    out,
                    split=o["split"],
                    batch_size=o["batch_size"],
                    workers=o["workers"],
                    device=o["device"],
                    download=o["download"],
                    progress=o["verbosity"] > 0,
                )
        except (DatasetError, CheckpointError, RuntimeError) as exc:
            raise CommandError(str(exc)) from exc
        services.record_evaluation(version, metrics, out / "figures")
        self.stdout.write(
            self.style.SUCCESS(
                f"{version.name} on {o['split']} ({metrics['num_images']} images): accuracy {metrics['accuracy']:.4f}, "
                f"error rate {metrics['error_rate']:.4f}, top-5 {metrics['top5_accuracy']:.4f}. "
                f"Figures in {out / 'figures'}."
            )
        )
