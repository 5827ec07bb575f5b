"""`train`: a thin shell over ml.training.run_training, then registration as a ModelVersion."""
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from ml import services
from ml.checkpoints import CheckpointError
from ml.data import DatasetError
from ml.model import IMAGENET, WeightsUnavailableError
from ml.models import ModelVersion
from ml.training import TrainConfig, run_training


class Command(BaseCommand):
    help = (
        "Fine-tune ResNet34 on Oxford-IIIT Pets (fastai's recipe: frozen stage, then all layers "
        "with discriminative learning rates, one-cycle), evaluate it, write every figure, and "
        "register the result as a model version."
    )

    def add_arguments(self, parser):
        defaults = TrainConfig(data="")
        parser.add_argument("--data", required=True, help="folder holding oxford-iiit-pet/ (images/ and annotations/)")
        parser.add_argument("--download", action="store_true", help="let torchvision download the dataset into --data")
        parser.add_argument("--extra-data", action="append", default=[], metavar="DIR",
                            help="more training images in the same layout, e.g. from export_reviewed (repeatable)")
        parser.add_argument("--epochs", type=int, default=defaults.epochs, help="epochs with all layers trained")
        parser.add_argument(
            "--freeze-epochs", type=int, default=defaults.freeze_epochs, help="epochs training the head only"
        )
        parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate of the head")
        parser.add_argument(
            "--lr-mult", type=float, default=defaults.lr_mult, help="head lr / early-body lr when unfrozen"
        )
        parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
        parser.add_argument("--image-size", type=int, default=defaults.image_size)
        parser.add_argument("--workers", type=int, default=defaults.workers, help="data-loading processes")
        parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=defaults.device)
        parser.add_argument("--seed", type=int, default=defaults.seed)
        parser.add_argument(
            "--valid-fraction",
            type=float,
            default=defaults.valid_fraction,
            help="part of trainval held out for validation, per breed",
        )
        parser.add_argument(
            "--crop-scale",
            type=float,
            nargs=2,
            default=defaults.crop_scale,
            metavar=("MIN", "MAX"),
            help="area range of the random resized crop",
        )
        parser.add_argument("--threads", type=int, help="PyTorch CPU threads")
        start = parser.add_mutually_exclusive_group()
        start.add_argument("--weights", metavar="PATH", help="local ImageNet ResNet34 weights (default: torchvision's)")
        start.add_argument("--no-pretrained", action="store_true", help="start from random weights")
        start.add_argument("--init-from", metavar="MODEL", help="fine-tune this registered model version")
        parser.add_argument("--no-test", action="store_true", help="report on the validation split, not the test split")
        parser.add_argument("--out", help="run folder (default: PETSITE_RUNS_DIR/NAME)")
        parser.add_argument("--name", help="model version name (default: resnet34-TIME)")
        parser.add_argument("--activate", action="store_true", help="make the new model the active one")

    def handle(self, *args, **o):
        name = o["name"] or f"resnet34-{timezone.now():%Y%m%d-%H%M%S}"
        if ModelVersion.objects.filter(name=name).exists():
            raise CommandError(f"A model version named {name!r} exists already; choose another --name.")
        out = Path(o["out"] or settings.PETSITE_RUNS_DIR / name)
        config_args = dict(
            data=o["data"],
            download=o["download"],
            extra_data=o["extra_data"],
            epochs=o["epochs"],
            freeze_epochs=o["freeze_epochs"],
            lr=o["lr"],
            lr_mult=o["lr_mult"],
            batch_size=o["batch_size"],
            image_size=o["image_size"],
            workers=o["workers"],
            device=o["device"],
            seed=o["seed"],
            valid_fraction=o["valid_fraction"],
            crop_scale=tuple(o["crop_scale"]),
            threads=o["threads"],
            evaluate_test=not o["no_test"],
            progress=o["verbosity"] > 0,
            weights=None if o["no_pretrained"] else (o["weights"] or IMAGENET),
        )
        try:
            if o["init_from"]:
                version = ModelVersion.objects.filter(name=o["init_from"]).first()
                if version is None:
                    raise CommandError(f"No model version named {o['init_from']!r} to fine-tune.")
                with services.local_checkpoint(version) as path:
                    result = run_training(
                        TrainConfig(**config_args, init_checkpoint=str(path)), out, log=self.stdout.write
                    )
            else:
                result = run_training(TrainConfig(**config_args), out, log=self.stdout.write)
        except (DatasetError, WeightsUnavailableError, CheckpointError, ValueError, RuntimeError) as exc:
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:
            raise CommandError(f"Interrupted: no checkpoint was written (the partial run is in {out}).") from None

        notes = f"Fine-tuned from {o['init_from']}." if o["init_from"] else ""
        version = services.register_model(
            result.checkpoint, name=name, activate=o["activate"], run_dir=out, notes=notes
        )
        state = "active" if o["activate"] else f"activate it with `python manage.py activate_model {version.name}`"
        self.stdout.write(self.style.SUCCESS(f"Registered model version {version.name} ({state}); run folder {out}."))
