"""`train`: a thin shell over ml.runs.run (the recipe chosen there), then registration."""
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from ml.backends import AUTO
from ml.checkpoints import CheckpointError
from ml.config import RECIPES, FullOptions, QuickOptions, RunConfig
from ml.data import DatasetError
from ml.model import IMAGENET, WeightsUnavailableError, fetch_imagenet_weights
from ml.recipes.quick import BODY_CANDIDATES
from ml.runs import run
from registry import services
from registry.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Train ResNet34 on Oxford-IIIT Pets, evaluate it, write every figure, and register the result "
        "as a model version. Recipes: full (fastai's fine-tune: frozen stage, then all layers with "
        "discriminative learning rates, one-cycle), quick (a new head on cached features of the frozen "
        "body, minutes on a CPU), auto (quick on a CPU, full on a CUDA GPU; the default)."
    )

    def add_arguments(self, parser):
        defaults, full, quick = RunConfig(data=""), FullOptions(), QuickOptions()
        parser.add_argument("--data", required=True, help="folder holding oxford-iiit-pet/ (images/ and annotations/)")
        parser.add_argument("--download", action="store_true",
                            help="let torchvision download what is missing: the dataset into --data, the ImageNet "
                                 "weights into its cache (TORCH_HOME); without it nothing is downloaded")
        parser.add_argument("--recipe", choices=RECIPES, default="auto",
                            help="quick: a new head on cached body features; full: fine-tune every layer; "
                                 "auto (default): quick on a CPU, full on a CUDA GPU")
        parser.add_argument("--extra-data", action="append", default=[], metavar="DIR",
                            help="more training images in the same layout, e.g. from export_reviewed (repeatable)")
        parser.add_argument("--epochs", type=int, default=full.epochs, help="full: epochs with all layers trained")
        parser.add_argument(
            "--freeze-epochs", type=int, default=full.freeze_epochs, help="full: epochs training the head only"
        )
        parser.add_argument("--lr", type=float,
                            help=f"peak learning rate of the head (default {full.lr} full, {quick.lr} quick)")
        parser.add_argument(
            "--lr-mult", type=float, default=full.lr_mult, help="head lr / early-body lr when unfrozen (full)"
        )
        parser.add_argument("--views", type=int, default=quick.views,
                            help="quick: views per training image (centre, mirrored, then augmented crops)")
        parser.add_argument("--head-epochs", type=int, default=quick.head_epochs,
                            help="quick: epochs of the head on the cached features")
        parser.add_argument("--finetune-epochs", type=int, default=quick.finetune_epochs,
                            help="quick: then epochs of layer3, layer4 and the head on augmented images")
        parser.add_argument("--cache-dir",
                            help="quick: the feature cache (default: the PETSITE_FEATURE_CACHE_DIR setting)")
        parser.add_argument("--backend", choices=[*BODY_CANDIDATES, AUTO], default=AUTO,
                            help="quick: how the body runs on a CPU (ml.backends; bf16 is several times faster "
                                 "with AMX; auto, the default, measures once per body and machine)")
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
        config = self.config(o)
        try:
            if config.weights == IMAGENET and not o["init_from"]:
                fetch_imagenet_weights(download=o["download"])  # before anything else: a clear error, or the file
            if o["init_from"]:
                version = ModelVersion.objects.filter(name=o["init_from"]).first()
                if version is None:
                    raise CommandError(f"No model version named {o['init_from']!r} to fine-tune.")
                with services.local_checkpoint(version) as path:
                    config.init_checkpoint = str(path)
                    result = run(o["recipe"], config, out, log=self.stdout.write)
            else:
                result = run(o["recipe"], config, out, log=self.stdout.write)
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

    def config(self, o) -> RunConfig:
        """One configuration from the options: the shared base, the full part, the quick part
        (``--lr`` goes to whichever recipe runs)."""
        lr = {"lr": o["lr"]} if o["lr"] is not None else {}
        try:
            full = FullOptions(epochs=o["epochs"], freeze_epochs=o["freeze_epochs"], lr_mult=o["lr_mult"], **lr)
            quick = QuickOptions(
                views=o["views"], head_epochs=o["head_epochs"], finetune_epochs=o["finetune_epochs"],
                cache_dir=str(o["cache_dir"] or settings.PETSITE_FEATURE_CACHE_DIR), backend=o["backend"],
                backend_cache_dir=str(settings.PETSITE_BACKEND_CACHE_DIR), **lr,
            )
            return RunConfig(
                data=o["data"], download=o["download"], extra_data=o["extra_data"], batch_size=o["batch_size"],
                image_size=o["image_size"], workers=o["workers"], device=o["device"], seed=o["seed"],
                valid_fraction=o["valid_fraction"], crop_scale=tuple(o["crop_scale"]), threads=o["threads"],
                evaluate_test=not o["no_test"], progress=o["verbosity"] > 0,
                weights=None if o["no_pretrained"] else (o["weights"] or IMAGENET), full=full, quick=quick,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
