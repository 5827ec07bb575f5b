"""Training (and evaluation) runs: fastai's fine-tuning recipe in plain PyTorch.

The recipe, as fastai's ``Learner.fine_tune`` does it for a pretrained ResNet:

1. Stage 1 ("frozen"): the body's convolutions are frozen, the new head and the
   BatchNorm layers train for ``freeze_epochs`` with one cycle of learning rate
   (peak ``lr`` for the head, ``lr / 10`` for BatchNorm in the body).
2. Stage 2 ("unfrozen"): every layer trains for ``epochs`` with one cycle and
   discriminative learning rates: the head peaks at ``lr / 2``, the late body at
   ``lr / 2 / sqrt(lr_mult)``, the early body at ``lr / 2 / lr_mult`` (fastai's
   ``slice(lr / 2 / lr_mult, lr / 2)``), because early layers hold generic features.

AdamW with weight decay 0.01, one ``OneCycleLR`` per stage (cosine, momentum
0.95 -> 0.85 -> 0.95). Mixed precision by ``precision`` (``ml.precision``; default
``auto``): on CUDA float16 autocast + GradScaler and channels_last; on a CPU with native
BF16 (AVX-512 BF16, AMX) BF16 autocast and channels_last where a short measurement shows
it faster, else FP32. On a CPU a seeded run with the same precision is deterministic. The
loop itself is written like torchvision's ``references/classification/train.py``: every
step is visible below.
A model trained from random weights (``weights=None``, for tests) starts with
zero-initialised residual branches (see :func:`ml.model.build_resnet34`).

At the end, one pass over the validation images gives the logits and penultimate
features that ``ml.calibration`` fits the verdict thresholds on (confident, unsure, not
a pet); the calibration goes into the checkpoint.

A run writes into one directory (what ``registry.services.register_model`` copies)::

    out_dir/history.json   per epoch and per step
    out_dir/metrics.json   see ml.evaluation.Evaluation.to_metrics, plus "valid", and
                           "verdicts" and "calibration" (see verdict_metrics)
    out_dir/figures/*.png  see ml.plots.FIGURES
    out_dir/model.pt       written last, atomically: its presence means the run finished
"""
from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import calibration as calibration_
from . import plots
from . import progress as progress_
from .breeds import BREED_KEYS, NUM_CLASSES
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_transform,
    load_pet_datasets,
    load_split,
    make_loader,
    with_open_image,
)
from .evaluation import Evaluation, collect_logits, evaluate, write_json
from .model import IMAGENET, build_resnet34, freeze_body, layer_groups, unfreeze
from .precision import (
    AUTO,
    FP16,
    FP32,
    autocast_dtype,
    resolve_precision,
    sample_image_size,
    steps_to_measure,
    uses_channels_last,
)
from .progress import FROZEN, UNFROZEN, Progress, Reporter

if TYPE_CHECKING:  # the quick recipe builds on this module
    from .recipes import QuickConfig

PARAM_GROUPS = ["early body (conv1..layer2)", "late body (layer3, layer4)", "head (fc)"]
STAGES = {FROZEN: progress_.HEAD, UNFROZEN: progress_.ALL_LAYERS}  # the progress stage of each training stage

Log = Callable[[str], None]
# on_progress (ml.progress.Progress): called with what changed, see ml.progress: the stage,
# its steps (training and validation batches; "epoch", "epochs", "loss", "accuracy" while
# training), after every epoch {"history": [one row per epoch so far]}, and the plan of
# the run's work. The site shows it live; an exception it raises (a cancelled run) stops
# training at once.


@dataclass
class TrainConfig:
    """Every choice of a training run; stored in the checkpoint as its training_args."""

    data: str
    extra_data: list[str] = field(default_factory=list)  # more roots in the same layout, training only
    download: bool = False
    epochs: int = 4  # stage 2: all layers
    freeze_epochs: int = 1  # stage 1: head (and BatchNorm) only
    lr: float = 2e-3  # peak learning rate of the head in stage 1; stage 2 uses lr / 2
    lr_mult: float = 100.0  # head lr / early-body lr in stage 2
    weight_decay: float = 0.01
    batch_size: int = 64
    image_size: int = 224
    crop_scale: tuple[float, float] = (0.35, 1.0)  # RandomResizedCrop area range
    valid_fraction: float = 0.2  # of trainval, stratified
    workers: int = 4
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 42
    weights: str | None = IMAGENET  # "imagenet", a local .pth path, or None (from scratch)
    init_checkpoint: str | None = None  # fine-tune this Petsite checkpoint instead of `weights`
    evaluate_test: bool = True  # headline metrics on the official test split, else on validation
    threads: int | None = None  # torch.set_num_threads; None leaves torch's default
    precision: str = AUTO  # auto | fp32 | bf16 | fp16: autocast type (ml.precision)
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.valid_fraction < 1.0:
            raise ValueError("valid_fraction must be between 0 and 1 (exclusive).")
        if self.epochs < 0 or self.freeze_epochs < 0 or self.epochs + self.freeze_epochs == 0:
            raise ValueError("epochs and freeze_epochs must be >= 0 and not both 0.")
        self.crop_scale = tuple(self.crop_scale)
        self.data = str(self.data)
        self.extra_data = [str(p) for p in self.extra_data]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (the checkpoint and ModelVersion.training_args keep this)."""
        return {**asdict(self), "crop_scale": list(self.crop_scale)}


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA GPU is available; use --device cpu.")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed every RNG a run touches. On a CPU that makes a run repeatable bit for bit."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def stage_lrs(lr: float, stage: str, lr_mult: float = 100.0, n_groups: int = 3) -> list[float]:
    """Peak learning rate per layer group (early body, late body, head) for a stage.

    Frozen: fastai's ``slice(lr)``, i.e. lr / 10 for the body's (BatchNorm) parameters.
    Unfrozen: fastai's ``slice(lr / 2 / lr_mult, lr / 2)``, spaced geometrically.
    """
    if stage == FROZEN:
        return [lr / 10] * (n_groups - 1) + [lr]
    head = lr / 2
    return [head / lr_mult ** (1 - g / (n_groups - 1)) for g in range(n_groups)]


def make_optimizer(model: nn.Module, lrs: list[float], weight_decay: float) -> torch.optim.AdamW:
    """AdamW with one parameter group per layer group, holding only trainable parameters.

    Frozen parameters are left out rather than given lr 0, so weight decay cannot
    move them either.
    """
    groups = []
    for params, lr in zip(layer_groups(model), lrs, strict=True):
        groups.append({"params": [p for p in params if p.requires_grad], "lr": lr})
    return torch.optim.AdamW(groups, lr=lrs[-1], weight_decay=weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, lrs: list[float], total_steps: int, stage: str) -> OneCycleLR:
    """One cycle over the stage: warm up, then cosine down to almost zero.

    fastai warms up for 99% of the frozen stage (the head starts from random weights)
    and for 30% of the unfrozen one, starting at lr / 5 there (div=5) instead of lr / 25.
    """
    frozen = stage == FROZEN
    return OneCycleLR(
        optimizer, max_lr=lrs, total_steps=max(total_steps, 2),
        pct_start=0.99 if frozen else 0.3, div_factor=25.0 if frozen else 5.0, final_div_factor=1e5 / 25,
    )


@dataclass
class History:
    """What happened during training, as plain lists of dicts (that is what history.json holds)."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    precision: str = FP32  # the one the run used (fit resolves "auto")

    def to_dict(self) -> dict[str, Any]:
        return {"param_groups": PARAM_GROUPS, "precision": self.precision, "epochs": self.epochs, "steps": self.steps}


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: OneCycleLR,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    history: History,
    epoch: int,
    stage: str,
    desc: str = "",
    progress: bool = True,
    on_step: Callable[[int, float, float], None] | None = None,
    precision: str | None = None,
) -> tuple[float, float]:
    """One pass over ``loader``; returns (mean loss, accuracy) on the augmented images.

    ``precision``: ``fp32``, ``bf16`` or ``fp16`` (resolved, not ``auto``); None keeps the
    old rule, fp16 on CUDA and fp32 elsewhere. ``scaler`` must be enabled for fp16 only.
    """
    model.train()
    cuda = device.type == "cuda"
    precision = precision or (FP16 if cuda else FP32)
    dtype, channels_last = autocast_dtype(precision), uses_channels_last(precision, device)
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True)
    for images, targets in bar:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            output = model(images)
            loss = F.cross_entropy(output, targets)

        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        lrs = [group["lr"] for group in optimizer.param_groups]  # the rates this step used
        scheduler.step()

        batch_loss = loss.item()
        total_loss += batch_loss * len(targets)
        correct += (output.argmax(dim=1) == targets).sum().item()
        seen += len(targets)
        history.steps.append({"step": len(history.steps) + 1, "epoch": epoch, "stage": stage,
                              "lr": lrs, "loss": batch_loss})
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
        if on_step is not None:
            on_step(len(history.steps), total_loss / seen, correct / seen)
    return total_loss / max(seen, 1), correct / max(seen, 1)


class StageSteps:
    """A training stage's steps as ``on_progress`` counts them: each epoch's training
    batches, then its validation batches; the epoch is numbered as in the history."""

    def __init__(self, report: Reporter, stage: str, epochs: int, total_epochs: int, train_batches: int,
                 valid_batches: int):
        self.report, self.total_epochs, self.train_batches = report, total_epochs, train_batches
        self.per_epoch = train_batches + valid_batches
        self.steps = epochs * self.per_epoch
        self.epochs_started, self.epoch, self.first = 0, 0, 0
        report.stage(stage, self.steps)

    def start_epoch(self, epoch: int, history: History) -> None:
        self.epochs_started += 1
        self.epoch, self.first = epoch, len(history.steps)  # history.steps counts every training step so far

    def _offset(self) -> int:
        return (self.epochs_started - 1) * self.per_epoch

    def on_step(self, step: int, loss: float, accuracy: float) -> None:
        """``train_one_epoch``'s ``on_step``."""
        self.report.step(self._offset() + step - self.first, self.steps, epoch=self.epoch, epochs=self.total_epochs,
                         loss=loss, accuracy=accuracy)

    def on_valid_batch(self, done: int, _batches: int) -> None:
        self.report.step(self._offset() + self.train_batches + done, self.steps)


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    valid_loader: DataLoader,
    *,
    freeze_epochs: int = 1,
    epochs: int = 4,
    lr: float = 2e-3,
    lr_mult: float = 100.0,
    weight_decay: float = 0.01,
    device: torch.device | str = "cpu",
    progress: bool = True,
    log: Log = print,
    on_progress: Progress | None = None,
    precision: str = AUTO,
) -> History:
    """Stage 1 with the body frozen, then stage 2 with everything unfrozen (module docstring).

    The model is trained in place and is on ``device`` afterwards. ``precision``: see
    ``ml.precision`` (``auto`` measures once per process, image and batch size, and logs
    its choice; ``History.precision`` keeps it). ``on_progress``: the stages
    ``ml.progress.TIMING`` (when ``auto`` measures), ``HEAD`` and ``ALL_LAYERS``, each step
    a training or a validation batch.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    report = Reporter(on_progress)
    model.to(device)
    image_size, batch_size = sample_image_size(train_loader.dataset), train_loader.batch_size or 64
    timing_steps = steps_to_measure(precision, device, image_size, batch_size)
    if timing_steps:
        report.stage(progress_.TIMING, timing_steps)
    precision = resolve_precision(precision, device, model, image_size, batch_size, log,
                                  on_step=lambda done, steps: report.step(done, steps))
    if uses_channels_last(precision, device):
        model.to(memory_format=torch.channels_last)
    if cuda:
        torch.backends.cudnn.benchmark = True
    scaler = torch.amp.GradScaler("cuda", enabled=precision == FP16)
    history = History(precision=precision)
    total_epochs = freeze_epochs + epochs
    epoch = 0
    for stage, stage_epochs in ((FROZEN, freeze_epochs), (UNFROZEN, epochs)):
        if stage_epochs == 0:
            continue
        if stage == FROZEN:
            freeze_body(model, train_bn=True)
        else:
            unfreeze(model)
        lrs = stage_lrs(lr, stage, lr_mult)
        optimizer = make_optimizer(model, lrs, weight_decay)
        scheduler = make_scheduler(optimizer, lrs, stage_epochs * len(train_loader), stage)
        steps = StageSteps(report, STAGES[stage], stage_epochs, total_epochs, len(train_loader), len(valid_loader))
        for _ in range(stage_epochs):
            epoch += 1
            start = time.perf_counter()
            steps.start_epoch(epoch, history)
            train_loss, train_acc = train_one_epoch(
                model, train_loader, optimizer, scheduler, scaler, device, history, epoch, stage,
                desc=f"epoch {epoch}/{total_epochs} ({stage})", progress=progress,
                on_step=steps.on_step if on_progress is not None else None, precision=precision,
            )
            logits, targets = collect_logits(model, valid_loader, device, on_batch=steps.on_valid_batch)
            row = {
                "epoch": epoch, "stage": stage, "train_loss": train_loss, "train_accuracy": train_acc,
                "valid_loss": F.cross_entropy(logits, targets).item(),
                "accuracy": (logits.argmax(dim=1) == targets).float().mean().item(),
                "time": time.perf_counter() - start,
            }
            row["error_rate"] = 1.0 - row["accuracy"]
            history.epochs.append(row)
            report({"history": history.epochs})  # the table fastai prints, live on the site
            log(
                f"epoch {epoch}/{total_epochs} {stage:<8} train_loss {train_loss:.4f}  "
                f"valid_loss {row['valid_loss']:.4f}  accuracy {row['accuracy']:.4f}  "
                f"error_rate {row['error_rate']:.4f}  time {row['time']:.1f}s"
            )
    unfreeze(model)
    return history


def epochs_work(images: int, valid_images: int, image_size: int, epochs: int) -> float:
    """The work (``ml.progress`` units) of ``epochs`` epochs: training steps over ``images``,
    then a validation pass."""
    return epochs * (progress_.image_passes(images, image_size, training=True)
                     + progress_.image_passes(valid_images, image_size))


def finish_work(valid_images: int) -> dict[str, float]:
    """The work of :func:`finish_run`'s stages."""
    figures = len(plots.FIGURES) * progress_.FIGURE_COST
    return {progress_.CALIBRATING: valid_images * progress_.CALIBRATION_COST, progress_.FIGURES: figures,
            progress_.SAVING: progress_.SAVING_COST}


def prepare_run(config: TrainConfig | QuickConfig) -> torch.device:
    """The start of every recipe's run: torch's threads, the seeds, the device to train on."""
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    return resolve_device(config.device)


def initial_model(config: TrainConfig) -> nn.Module:
    """The model a run starts from: a Petsite checkpoint to fine-tune, or ResNet34 + new head."""
    if config.init_checkpoint:
        checkpoint = load_checkpoint(config.init_checkpoint)
        if checkpoint.classes != BREED_KEYS:
            raise CheckpointError(
                f"{config.init_checkpoint} predicts {len(checkpoint.classes)} classes that are not the "
                f"{NUM_CLASSES} Oxford-IIIT Pet breeds in ml.breeds order; it cannot be fine-tuned here."
            )
        return checkpoint.build_model()
    return build_resnet34(NUM_CLASSES, weights=config.weights, download=config.download)


def verdict_metrics(calibration: dict[str, Any], evaluation: Evaluation, split: str) -> dict[str, Any]:
    """``metrics["verdicts"]``: how many images of the evaluated split get each verdict;
    ``metrics["calibration"]``: the thresholds, the OOD score used, how validation fared,
    and the top-1 accuracy within each verdict on the split.

    On the validation split the counts are the calibration's own out-of-fold ones (what
    a new image would get), not those of statistics applied to the images they came from.
    """
    if split == "valid" and "validation" in calibration:
        report = calibration["validation"]
    else:
        results = calibration_.verdicts(calibration, evaluation.logits, evaluation.features)
        report = calibration_.verdict_report([r.verdict for r in results], evaluation.predictions == evaluation.targets)
    summary = {**calibration_.summary(calibration), "accuracy_by_verdict": report["accuracy"]}
    return {"verdicts": report["verdicts"], "calibration": summary}


@dataclass
class RunResult:
    out_dir: Path
    checkpoint: Path
    metrics: dict[str, Any]
    history: dict[str, Any]
    figures: dict[str, Path]


def run_training(
    config: TrainConfig, out_dir: str | os.PathLike, log: Log = print, on_progress: Progress | None = None
) -> RunResult:
    """Train, evaluate, and write a complete run directory (layout in the module docstring).

    Ctrl-C at any point, or an exception from ``on_progress``, leaves no ``model.pt`` (it
    is written last, atomically), so an interrupted run is never mistaken for a finished one.
    """
    report = Reporter(on_progress)
    out_dir = Path(out_dir)
    report.plan({progress_.PREPARING: progress_.PREPARING_COST})
    report.stage(progress_.PREPARING, 2)
    device = prepare_run(config)
    model = initial_model(config)  # first: missing weights should stop a run before anything else
    report.step(1, 2)

    datasets = load_pet_datasets(
        config.data, image_size=config.image_size, valid_fraction=config.valid_fraction, seed=config.seed,
        extra_roots=config.extra_data, with_test=config.evaluate_test, download=config.download,
        crop_scale=config.crop_scale,
    )
    pin = device.type == "cuda"
    train_loader = make_loader(datasets.train, config.batch_size, train=True, workers=config.workers,
                               seed=config.seed, pin_memory=pin)
    valid_loader = make_loader(datasets.valid, config.batch_size * 2, train=False, workers=config.workers,
                               pin_memory=pin)
    test_loader = (make_loader(datasets.test, config.batch_size * 2, train=False, workers=config.workers,
                               pin_memory=pin) if datasets.test is not None else None)
    report.step(2, 2)
    log(f"{len(datasets.train)} training, {len(datasets.valid)} validation"
        + (f", {len(datasets.test)} test" if datasets.test is not None else "")
        + f" images; device {device}; {config.freeze_epochs} frozen + {config.epochs} unfrozen epochs")
    n_train, n_valid, size = len(datasets.train), len(datasets.valid), config.image_size
    n_test = len(datasets.test) if datasets.test is not None else 0
    timing = steps_to_measure(config.precision, device, size, config.batch_size)
    report.plan({
        progress_.TIMING: progress_.image_passes(timing * min(config.batch_size, 8), size, training=True),
        progress_.HEAD: epochs_work(n_train, n_valid, size, config.freeze_epochs),
        progress_.ALL_LAYERS: epochs_work(n_train, n_valid, size, config.epochs),
        progress_.EVALUATING: progress_.image_passes(n_valid + n_test, size),
        **finish_work(n_valid),
    })

    history = fit(
        model, train_loader, valid_loader, freeze_epochs=config.freeze_epochs, epochs=config.epochs,
        lr=config.lr, lr_mult=config.lr_mult, weight_decay=config.weight_decay, device=device,
        progress=config.progress, log=log, on_progress=on_progress, precision=config.precision,
    )

    batches = len(valid_loader) + (len(test_loader) if test_loader is not None else 0)
    report.stage(progress_.EVALUATING, batches)
    valid = evaluate(model, valid_loader, datasets.classes, device, on_batch=report.counter(batches))
    if test_loader is not None:
        split, dataset = "test", datasets.test
        headline = evaluate(model, test_loader, datasets.classes, device, progress=config.progress,
                            on_batch=report.counter(batches, len(valid_loader)))
    else:
        split, dataset, headline = "valid", datasets.valid, valid
    training_args = {**config.to_dict(), "num_train_images": len(datasets.train),
                     "num_valid_images": len(datasets.valid), "precision_used": history.precision}
    return finish_run(out_dir, model, history.to_dict(), valid, headline, split, dataset,
                      image_size=config.image_size, training_args=training_args, seed=config.seed, log=log,
                      on_progress=on_progress)


def finish_run(
    out_dir: Path,
    model: nn.Module,
    history: dict[str, Any],
    valid: Evaluation,
    headline: Evaluation,
    split: str,
    dataset: Dataset,
    *,
    image_size: int,
    training_args: dict[str, Any],
    seed: int,
    log: Log = print,
    on_progress: Progress | None = None,
) -> RunResult:
    """What every recipe does last, whatever it trained: verdict thresholds calibrated on
    the validation split, metrics, history and figures, then the checkpoint, written last
    (atomically), so that a run interrupted before has none. Its stages for ``on_progress``:
    ``ml.progress.CALIBRATING``, ``FIGURES`` (a step per figure), ``SAVING``."""
    report = Reporter(on_progress)
    report.stage(progress_.CALIBRATING, 1)
    calibration = calibration_.fit_calibration(valid.features, valid.logits, valid.targets, seed=seed)
    metrics = {**headline.to_metrics(split), "valid": valid.summary(),
               **verdict_metrics(calibration, headline, split)}
    report.step(1, 1)
    write_json(out_dir / "history.json", history)
    write_json(out_dir / "metrics.json", metrics)
    report.stage(progress_.FIGURES, len(plots.FIGURES))
    drawn = [0]

    def on_figure() -> None:
        drawn[0] += 1
        report.step(drawn[0], len(plots.FIGURES))

    figures = {
        **plots.save_training_figures(history, out_dir / "figures", on_figure),
        **plots.save_evaluation_figures(headline, dataset, out_dir / "figures", IMAGENET_MEAN, IMAGENET_STD,
                                        on_figure=on_figure),
    }
    report.stage(progress_.SAVING, 1)
    checkpoint = save_checkpoint(
        out_dir / "model.pt", model.to("cpu").to(memory_format=torch.contiguous_format),
        classes=list(headline.classes), image_size=image_size, metrics=metrics, calibration=calibration,
        training_args=training_args,
    )
    report.step(1, 1)
    log(f"{split} accuracy {metrics['accuracy']:.4f} (error rate {metrics['error_rate']:.4f}, "
        f"top-5 {metrics['top5_accuracy']:.4f}); verdicts {metrics['verdicts']} "
        f"({calibration['ood_score']} score over {calibration['ood_threshold']:.3g} is not a pet, "
        f"top probability under {calibration['probability_threshold']:.3g} unsure); wrote {checkpoint}")
    return RunResult(out_dir, checkpoint, metrics, history, figures)


def run_evaluation(
    checkpoint_path: str | os.PathLike,
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    split: str = "test",
    batch_size: int = 128,
    workers: int = 4,
    device: str = "auto",
    download: bool = False,
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
    figures: bool = True,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """metrics.json and evaluation figures of a saved model on one official split.

    The images go through the checkpoint's own preprocessing, as in the Predictor, and
    get their verdicts from the checkpoint's calibration (confident or unsure only, for a
    checkpoint without one). ``on_batch(done, batches)``: see ``evaluate``. ``figures``:
    False leaves them out (a comparison needs only the numbers).
    """
    checkpoint = load_checkpoint(checkpoint_path)
    if checkpoint.classes != BREED_KEYS:
        raise CheckpointError(f"{checkpoint_path} does not predict the {NUM_CLASSES} Oxford-IIIT Pet breeds.")
    torch_device = resolve_device(device)
    transform = with_open_image(eval_transform(checkpoint.image_size, checkpoint.resize_size,
                                               checkpoint.mean, checkpoint.std))
    dataset = load_split(data, split, transform, download=download)
    loader = make_loader(dataset, batch_size, train=False, workers=workers, pin_memory=torch_device.type == "cuda")
    model = checkpoint.build_model().to(torch_device)
    evaluation = evaluate(model, loader, checkpoint.classes, torch_device, progress=progress, on_batch=on_batch)
    metrics = {**evaluation.to_metrics(split), **verdict_metrics(checkpoint.calibration, evaluation, split)}
    drawn = (plots.save_evaluation_figures(evaluation, dataset, Path(out_dir) / "figures", checkpoint.mean,
                                           checkpoint.std) if figures else {})
    write_json(Path(out_dir) / "metrics.json", metrics)
    return metrics, drawn
