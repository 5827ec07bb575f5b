"""The training loop both recipes share (``ml.recipes.full``, ``ml.recipes.quick``), written
like torchvision's ``references/classification/train.py``: every step is visible below.

Here: the start of a run (threads, seeds, device, the model it starts from), the
learning-rate schedules (AdamW with a parameter group per layer group, one ``OneCycleLR``
per stage), one epoch of training steps (:func:`train_one_epoch`, mixed precision by
``ml.precision``), the history of a run and its epoch rows and log line (written once,
here, for every recipe), and the progress of a stage's steps (``ml.progress``).
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import progress as progress_
from .breeds import BREED_KEYS, NUM_CLASSES
from .checkpoints import CheckpointError, load_checkpoint
from .config import RunConfig
from .evaluation import collect_logits
from .model import build_resnet34, layer_groups
from .precision import FP16, FP32, autocast_dtype, uses_channels_last
from .progress import FROZEN, Progress, Reporter

PARAM_GROUPS = ["early body (conv1..layer2)", "late body (layer3, layer4)", "head (fc)"]

Log = Callable[[str], None]
# on_progress (ml.progress.Progress): called with what changed, see ml.progress: the stage,
# its steps (training and validation batches; "epoch", "epochs", "loss", "accuracy" while
# training), after every epoch {"history": [one row per epoch so far]}, and the plan of
# the run's work. The site shows it live; an exception it raises (a cancelled run) stops
# training at once.


def prepare_run(config: RunConfig) -> torch.device:
    """The start of every recipe's run: torch's threads, the seeds, the device to train on."""
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    return resolve_device(config.device)


def initial_model(config: RunConfig) -> nn.Module:
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


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``--device``: ``auto`` is CUDA where there is a GPU, else the CPU."""
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


def epoch_row(epoch: int, stage: str, train_loss: float, train_accuracy: float, valid_logits: torch.Tensor,
              valid_targets: torch.Tensor, seconds: float) -> dict[str, Any]:
    """One row of ``history["epochs"]`` (the table fastai prints): the epoch's training
    figures and the validation loss, accuracy and error rate of ``valid_logits``."""
    accuracy = (valid_logits.argmax(dim=1) == valid_targets).float().mean().item()
    return {"epoch": epoch, "stage": stage, "train_loss": train_loss, "train_accuracy": train_accuracy,
            "valid_loss": F.cross_entropy(valid_logits, valid_targets).item(), "accuracy": accuracy,
            "error_rate": 1.0 - accuracy, "time": seconds}


def log_epoch(row: dict[str, Any], total_epochs: int, log: Log) -> None:
    """The log line of an epoch row, the same for every recipe and stage."""
    log(f"epoch {row['epoch']}/{total_epochs} {row['stage']:<8} train_loss {row['train_loss']:.4f}  "
        f"valid_loss {row['valid_loss']:.4f}  accuracy {row['accuracy']:.4f}  "
        f"error_rate {row['error_rate']:.4f}  time {row['time']:.1f}s")


def epochs_work(images: int, valid_images: int, image_size: int, epochs: int) -> float:
    """The work (``ml.progress`` units) of ``epochs`` epochs: training steps over ``images``,
    then a validation pass."""
    return epochs * (progress_.image_passes(images, image_size, training=True)
                     + progress_.image_passes(valid_images, image_size))



@dataclass
class EpochLoop:
    """What stays the same across a run's epochs of training steps on images: the model, its
    loaders, and where the figures go. :meth:`run` is an epoch as both recipes train one."""

    model: nn.Module
    train_loader: DataLoader
    valid_loader: DataLoader
    device: torch.device
    history: History  # its precision is the resolved one the steps use
    scaler: torch.amp.GradScaler  # enabled for fp16 only
    log: Log = print
    progress: bool = True  # the tqdm bar
    on_progress: Progress | None = None

    def run(self, steps: StageSteps, stage: str, epochs: int, optimizer: torch.optim.Optimizer,
            scheduler: OneCycleLR) -> None:
        """``epochs`` epochs: the training steps, a validation pass, the epoch's history row,
        its log line, and the history so far to ``on_progress`` (the table, live on the site)."""
        for _ in range(epochs):
            epoch, start = len(self.history.epochs) + 1, time.perf_counter()
            steps.start_epoch(epoch, self.history)
            train_loss, train_acc = train_one_epoch(
                self.model, self.train_loader, optimizer, scheduler, self.scaler, self.device, self.history, epoch,
                stage, desc=f"epoch {epoch}/{steps.total_epochs} ({stage})", progress=self.progress,
                on_step=steps.on_step if self.on_progress is not None else None, precision=self.history.precision,
            )
            logits, targets = collect_logits(self.model, self.valid_loader, self.device, on_batch=steps.on_valid_batch)
            row = epoch_row(epoch, stage, train_loss, train_acc, logits, targets, time.perf_counter() - start)
            self.history.epochs.append(row)
            Reporter(self.on_progress)({"history": self.history.epochs})
            log_epoch(row, steps.total_epochs, self.log)
