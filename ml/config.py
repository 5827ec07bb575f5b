"""Every choice of a training run, in one configuration: a shared base and a part per recipe.

:class:`RunConfig` holds what both recipes need (the data, the images, the device, the
seed, the starting weights) and validates it once; :class:`FullOptions` and
:class:`QuickOptions` hold what only one recipe reads. A caller fills in one
``RunConfig`` (both parts have defaults) and hands it to ``ml.runs.run`` with the recipe
to run, ``auto`` included: the command and the site need not know which recipe the
machine will get before they build the configuration.

``RunConfig.to_dict(recipe)`` is what a checkpoint keeps as its ``training_args``: the
base and the part of the recipe that ran, flat, in plain JSON types (the keys are those
``TrainConfig`` and ``QuickConfig`` wrote before these were one configuration).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .backends import EAGER
from .model import IMAGENET
from .precision import AUTO

FULL, QUICK = "full", "quick"
RECIPES = ("auto", QUICK, FULL)  # auto: quick on a CPU, full on a CUDA GPU (ml.runs.choose_recipe)


@dataclass
class FullOptions:
    """The full recipe's part (``ml.recipes.full``): fastai's fine-tune of every layer."""

    epochs: int = 4  # stage 2: all layers
    freeze_epochs: int = 1  # stage 1: head (and BatchNorm) only
    lr: float = 2e-3  # peak learning rate of the head in stage 1; stage 2 uses lr / 2
    lr_mult: float = 100.0  # head lr / early-body lr in stage 2

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.freeze_epochs < 0 or self.epochs + self.freeze_epochs == 0:
            raise ValueError("epochs and freeze_epochs must be >= 0 and not both 0.")


@dataclass
class QuickOptions:
    """The quick recipe's part (``ml.recipes.quick``): a new head on cached body features."""

    cache_dir: str = "var/cache/features"  # the feature cache (ml.features); the command passes its setting
    views: int = 3  # per training image: centre, mirrored centre, then augmented crops
    head_epochs: int = 40
    lr: float = 3e-3  # peak learning rate of the head
    head_batch_size: int = 256
    finetune_epochs: int = 0  # then layer3, layer4 and the head on augmented images
    finetune_lr: float = 1e-4  # peak for the head when fine-tuning; the late body gets a tenth
    # How the body runs on a CPU (ml.backends): eager FP32 (exact, the default here), channels_last,
    # bf16 (several times faster with AMX or AVX-512 BF16), or auto (measured once per body and machine;
    # `train`'s default), whose choice is kept in backend_cache_dir (default ml.machine.default_cache_dir).
    backend: str = EAGER
    backend_cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.views < 1 or self.head_epochs < 1 or self.finetune_epochs < 0:
            raise ValueError("views and head_epochs must be >= 1, finetune_epochs >= 0.")
        self.cache_dir = str(self.cache_dir)


@dataclass
class RunConfig:
    """The choices both recipes share, and each recipe's own part."""

    data: str
    extra_data: list[str] = field(default_factory=list)  # more roots in the same layout, training only
    download: bool = False  # the dataset and the ImageNet weights, where missing
    weight_decay: float = 0.01
    batch_size: int = 64  # images per training step (quick: the body's pass takes at most 32 at a time)
    image_size: int = 224
    crop_scale: tuple[float, float] = (0.35, 1.0)  # RandomResizedCrop area range
    valid_fraction: float = 0.2  # of trainval, stratified
    workers: int = 4
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 42
    weights: str | None = IMAGENET  # "imagenet", a local .pth path, or None (from scratch: tests)
    init_checkpoint: str | None = None  # start from this Petsite checkpoint instead of `weights`
    evaluate_test: bool = True  # headline metrics on the official test split, else on validation
    threads: int | None = None  # torch.set_num_threads; None leaves torch's default
    precision: str = AUTO  # auto | fp32 | bf16 | fp16: autocast type of the training steps (ml.precision)
    progress: bool = True
    full: FullOptions = field(default_factory=FullOptions)
    quick: QuickOptions = field(default_factory=QuickOptions)

    def __post_init__(self) -> None:
        if not 0.0 < self.valid_fraction < 1.0:
            raise ValueError("valid_fraction must be between 0 and 1 (exclusive).")
        self.crop_scale = tuple(self.crop_scale)
        self.data = str(self.data)
        self.extra_data = [str(p) for p in self.extra_data]

    def to_dict(self, recipe: str) -> dict[str, Any]:
        """The base and ``recipe``'s part, flat, in plain JSON types (a checkpoint's
        ``training_args``; ``TrainingRun.settings``). A quick run also records its recipe."""
        if recipe not in (FULL, QUICK):
            raise ValueError(f"to_dict needs the recipe that runs ({FULL} or {QUICK}), not {recipe!r}.")
        base = {k: v for k, v in asdict(self).items() if k not in (FULL, QUICK)}
        part = asdict(self.full if recipe == FULL else self.quick)
        extra = {"recipe": QUICK} if recipe == QUICK else {}
        return {**base, **part, "crop_scale": list(self.crop_scale), **extra}
