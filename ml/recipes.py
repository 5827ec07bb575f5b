"""The quick recipe: a good model in minutes on a CPU (``train --recipe quick``).

The full recipe (``ml.training.run_training``) fine-tunes every layer; on a 2-core CPU
at 224 px that trains about 9 images/s, half an hour for Oxford-IIIT Pets. Most of that
time goes into the body, whose ImageNet features are already good. So:

1. The frozen body (ImageNet weights, or the body of a Petsite checkpoint to build on)
   runs once over every training image in ``views`` views (the evaluation view, its
   mirror image, and augmented crops), and over the validation and test images; the
   pooled features go into a cache on disk (``ml.features``), so a second run with the
   same images and weights computes nothing.
2. A new linear head trains on the cached features for ``head_epochs`` epochs: AdamW,
   one cycle of learning rate, features standardised (the scaling is folded into the
   head afterwards, so the result is a plain ResNet34 again). Seconds, not minutes.
3. Optionally ``finetune_epochs`` short epochs of the late body (layer3, layer4) and the
   head on augmented images, with ``ml.training``'s epoch loop and one-cycle schedule.
4. The end is the full recipe's: calibration on the validation images, metrics, figures,
   history, and an ordinary checkpoint that the Predictor and ``import_model`` take.

Written like torchvision's ``references/classification/train.py``: explicit arguments,
a plain loop. Which recipe ``train --recipe auto`` runs is :func:`choose_recipe`'s answer.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR

from . import backends
from . import progress as progress_
from .backends import AUTO, BF16, CHANNELS_LAST, EAGER
from .breeds import BREED_KEYS, NUM_CLASSES
from .data import (
    ImageFiles,
    LabelledFile,
    eval_transform,
    load_pet_files,
    make_loader,
    train_transform,
)
from .evaluation import Evaluation, collect_logits, evaluate
from .features import CacheStats, FeatureCache, ImageViews, body_fingerprint, extract_features, file_digest
from .model import IMAGENET, build_resnet34, layer_groups
from .precision import FP16, resolve_precision, uses_channels_last
from .progress import FROZEN, LATE, UNFROZEN, Progress, Reporter
from .training import (
    History,
    Log,
    RunResult,
    StageSteps,
    epochs_work,
    finish_run,
    finish_work,
    initial_model,
    make_scheduler,
    prepare_run,
    train_one_epoch,
)

RECIPES = ("auto", "quick", "full")
QUICK, FULL = "quick", "full"
HEAD_GROUPS = ["head (fc)", "late body (layer3, layer4)"]  # the quick recipe's learning-rate groups
BODY_CANDIDATES = (EAGER, CHANNELS_LAST, BF16)  # for --backend auto (see body_backend)
DIGESTS_PER_REPORT = 200  # files read (hashed) between two progress reports


def choose_recipe(recipe: str, device: torch.device) -> tuple[str, str]:
    """(recipe to run, why): ``auto`` is quick on a CPU and full on a CUDA GPU."""
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}.")
    if recipe != "auto":
        return recipe, f"--recipe {recipe}"
    if device.type == "cuda":
        return FULL, "--recipe auto on a CUDA GPU: the full fine-tune of every layer"
    return QUICK, (
        f"--recipe auto on a {device.type.upper()} without a GPU: cached body features and a new head, "
        "minutes instead of an hour (--recipe full fine-tunes every layer)"
    )


@dataclass
class QuickConfig:
    """Every choice of a quick run; stored in the checkpoint as its training_args."""

    data: str
    extra_data: list[str] = field(default_factory=list)  # more roots in the same layout, training only
    download: bool = False  # the dataset and the ImageNet weights, where missing
    cache_dir: str = "var/cache/features"  # the feature cache (ml.features); the command passes its setting
    views: int = 3  # per training image: centre, mirrored centre, then augmented crops
    head_epochs: int = 40
    lr: float = 3e-3  # peak learning rate of the head
    weight_decay: float = 0.01
    head_batch_size: int = 256
    finetune_epochs: int = 0  # then layer3, layer4 and the head on augmented images
    finetune_lr: float = 1e-4  # peak for the head when fine-tuning; the late body gets a tenth
    batch_size: int = 64  # images per fine-tuning step; the body's pass takes at most 32 at a time
    image_size: int = 224
    crop_scale: tuple[float, float] = (0.35, 1.0)  # RandomResizedCrop area range of the augmented views
    valid_fraction: float = 0.2  # of trainval, stratified
    workers: int = 4
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 42
    weights: str | None = IMAGENET  # "imagenet", a local .pth path, or None (a random body: tests only)
    init_checkpoint: str | None = None  # take the body of this Petsite checkpoint instead of `weights`
    evaluate_test: bool = True  # headline metrics on the official test split, else on validation
    threads: int | None = None
    progress: bool = True
    # How the body runs on a CPU (ml.backends): eager FP32 (exact, the default here), channels_last,
    # bf16 (several times faster with AMX or AVX-512 BF16), or auto (measured once per body and machine;
    # `train`'s default), whose choice is kept in backend_cache_dir (default ml.backends').
    backend: str = EAGER
    backend_cache_dir: str | None = None
    precision: str = "auto"  # of the late-layer fine-tune (ml.precision): auto | fp32 | bf16 | fp16
    recipe: str = QUICK

    def __post_init__(self) -> None:
        if not 0.0 < self.valid_fraction < 1.0:
            raise ValueError("valid_fraction must be between 0 and 1 (exclusive).")
        if self.views < 1 or self.head_epochs < 1 or self.finetune_epochs < 0:
            raise ValueError("views and head_epochs must be >= 1, finetune_epochs >= 0.")
        self.crop_scale = tuple(self.crop_scale)
        self.data, self.cache_dir = str(self.data), str(self.cache_dir)
        self.extra_data = [str(p) for p in self.extra_data]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "crop_scale": list(self.crop_scale)}


def train_head(
    features: torch.Tensor,
    targets: torch.Tensor,
    valid_features: torch.Tensor,
    valid_targets: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    seed: int,
    history: History,
    log: Log = print,
    on_progress: Progress | None = None,
) -> nn.Linear:
    """A linear layer trained on fixed features; returned folded, for the raw features.

    Training sees standardised features (each column: minus its mean, over its standard
    deviation, both from the training features), which AdamW handles much better than
    raw pooled activations of very different scales; afterwards the scaling is folded
    into the weights and bias, so the layer is a drop-in ``model.fc``. ``on_progress``:
    every step (epoch, step of all epochs, running loss and accuracy of the epoch), and
    the history after every epoch.
    """
    report = Reporter(on_progress)
    mean, std = features.mean(dim=0), features.std(dim=0).clamp_min(1e-6)
    x, valid_x = (features - mean) / std, (valid_features - mean) / std
    with torch.random.fork_rng(devices=[]):  # the same start whatever ran before (loaders draw seeds)
        torch.manual_seed(seed)
        head = nn.Linear(features.shape[1], NUM_CLASSES)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    scheduler = OneCycleLR(optimizer, max_lr=lr, total_steps=max(epochs * steps_per_epoch, 2), pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    first = len(history.epochs)
    total_steps, step = epochs * steps_per_epoch, 0
    for epoch in range(first + 1, first + epochs + 1):
        start = time.perf_counter()
        head.train()
        total_loss, correct, seen = 0.0, 0, 0
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            logits = head(x[batch])
            loss = F.cross_entropy(logits, targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step_lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            total_loss += loss.item() * len(batch)
            correct += (logits.argmax(dim=1) == targets[batch]).sum().item()
            seen += len(batch)
            history.steps.append({"step": len(history.steps) + 1, "epoch": epoch, "stage": FROZEN,
                                  "lr": [step_lr], "loss": loss.item()})
            step += 1
            report.step(step, total_steps, epoch=epoch, epochs=first + epochs, loss=total_loss / seen,
                        accuracy=correct / seen)
        with torch.no_grad():
            valid_logits = head.eval()(valid_x)
        history.epochs.append(_epoch_row(epoch, FROZEN, total_loss / len(x), correct / len(x), valid_logits,
                                         valid_targets, time.perf_counter() - start))
        report({"history": history.epochs})
        if epoch == first + epochs or (epoch - first) % max(1, epochs // 5) == 0:
            _log_epoch(history.epochs[-1], first + epochs, log)
    with torch.no_grad():
        folded = nn.Linear(features.shape[1], NUM_CLASSES)
        folded.weight.copy_(head.weight / std)
        folded.bias.copy_(head.bias - (head.weight * (mean / std)).sum(dim=1))
    return folded


def _epoch_row(epoch: int, stage: str, train_loss: float, train_acc: float, valid_logits: torch.Tensor,
               valid_targets: torch.Tensor, seconds: float) -> dict[str, Any]:
    """One row of history["epochs"], with the columns ml.training.fit writes."""
    accuracy = (valid_logits.argmax(dim=1) == valid_targets).float().mean().item()
    return {"epoch": epoch, "stage": stage, "train_loss": train_loss, "train_accuracy": train_acc,
            "valid_loss": F.cross_entropy(valid_logits, valid_targets).item(), "accuracy": accuracy,
            "error_rate": 1.0 - accuracy, "time": seconds}


def _log_epoch(row: dict[str, Any], total: int, log: Log) -> None:
    log(f"epoch {row['epoch']}/{total} {row['stage']:<8} train_loss {row['train_loss']:.4f}  "
        f"valid_loss {row['valid_loss']:.4f}  accuracy {row['accuracy']:.4f}  "
        f"error_rate {row['error_rate']:.4f}  time {row['time']:.1f}s")


def finetune_late_layers(
    model: nn.Module,
    train_files: list[LabelledFile],
    valid_files: list[LabelledFile],
    config: QuickConfig,
    device: torch.device,
    history: History,
    log: Log = print,
    on_progress: Progress | None = None,
) -> None:
    """``config.finetune_epochs`` epochs of layer3, layer4 and the head on augmented images.

    The early body (conv1 .. layer2) keeps its weights; its BatchNorm statistics adapt,
    as in the full recipe's frozen stage. Head and late body get one cycle each, the late
    body at a tenth of the head's rate (discriminative learning rates).
    """
    early, late, head = layer_groups(model)
    for p in early:
        p.requires_grad = False
    lrs = [config.finetune_lr, config.finetune_lr / 10]  # in HEAD_GROUPS order
    optimizer = torch.optim.AdamW([{"params": head, "lr": lrs[0]}, {"params": late, "lr": lrs[1]}],
                                  lr=lrs[0], weight_decay=config.weight_decay)
    cuda = device.type == "cuda"
    train_tf = train_transform(config.image_size, crop_scale=config.crop_scale)
    train_loader = make_loader(ImageFiles(train_files, train_tf), config.batch_size, train=True,
                               workers=config.workers, seed=config.seed, pin_memory=cuda)
    valid_loader = _eval_loader(valid_files, config, cuda)
    scheduler = make_scheduler(optimizer, lrs, config.finetune_epochs * len(train_loader), UNFROZEN)
    model.to(device)
    first = len(history.epochs)
    total = first + config.finetune_epochs
    report = Reporter(on_progress)
    steps = StageSteps(report, progress_.LATE_LAYERS, config.finetune_epochs, total, len(train_loader),
                       len(valid_loader))
    history.precision = resolve_precision(config.precision, device, model, config.image_size, config.batch_size, log,
                                          on_step=lambda _done, _steps: report.step(0, steps.steps))
    scaler = torch.amp.GradScaler("cuda", enabled=history.precision == FP16)
    if uses_channels_last(history.precision, device):
        model.to(memory_format=torch.channels_last)
    for epoch in range(first + 1, total + 1):
        start = time.perf_counter()
        steps.start_epoch(epoch, history)
        train_loss, train_acc = train_one_epoch(
            model, train_loader, optimizer, scheduler, scaler, device, history, epoch, LATE,
            desc=f"epoch {epoch}/{total} ({LATE})", progress=config.progress,
            on_step=steps.on_step if on_progress is not None else None, precision=history.precision,
        )
        logits, targets = collect_logits(model, valid_loader, device, on_batch=steps.on_valid_batch)
        history.epochs.append(_epoch_row(epoch, LATE, train_loss, train_acc, logits, targets,
                                         time.perf_counter() - start))
        _log_epoch(history.epochs[-1], total, log)
        report({"history": history.epochs})
    for p in early:
        p.requires_grad = True


def timing_batch(batch_size: int) -> int:
    """The batch size :func:`body_backend` times its candidates at, and the body's pass runs at."""
    return min(batch_size, 32)


def timing_calls(batch_size: int) -> int:
    """At most how many calls of the body :func:`body_backend` makes to choose (the plan)."""
    return 1 + len(BODY_CANDIDATES) + backends.timed_calls(len(BODY_CANDIDATES), [timing_batch(batch_size)])


def body_backend(name: str, model: nn.Module, image_size: int, batch_size: int, body_key: str,
                 cache_dir: str | os.PathLike | None, log: Log = print,
                 on_call: Callable[[int, int], None] | None = None) -> tuple[backends.Backend, float]:
    """The ``ml.backends`` backend the body's one pass runs on (CPU), and how many times
    faster than eager FP32 it measured (1.0 when not measured); ``auto`` measures eager,
    channels_last and BF16 at the pass's batch size (once per body and machine: the choice
    is cached) and takes the fastest that agrees with eager FP32. ONNX is left out: its
    export costs more than it saves on a single pass. ``on_call``: see ``choose_backend``."""
    model.eval()
    speedup = 1.0
    if name == AUTO:
        name, report = backends.choose_backend(model, image_size, candidates=BODY_CANDIDATES,
                                               batch_sizes=(timing_batch(batch_size),), cache_dir=cache_dir,
                                               model_key=body_key, on_call=on_call)
        log(f"body backend: {name} ({backends.summary(report)})")
        speedup = report["candidates"].get(name, {}).get("speedup_vs_eager") or 1.0
    return backends.make_backend(name, model, cache_dir), speedup


def _eval_loader(files: list[LabelledFile], config: QuickConfig, pin: bool):
    dataset = ImageFiles(files, eval_transform(config.image_size))
    return make_loader(dataset, config.batch_size * 2, train=False, workers=config.workers, pin_memory=pin)


def run_quick(
    config: QuickConfig, out_dir: str | os.PathLike, log: Log = print, on_progress: Progress | None = None
) -> RunResult:
    """Train with the quick recipe and write a complete run directory, as ``run_training`` does.

    ``on_progress`` gets what ``run_training`` reports (``ml.progress``): the stages
    ``PREPARING``, ``TIMING`` (the body's backend, ``auto`` on a CPU), ``FEATURES_TRAIN`` and
    ``FEATURES_EVAL`` (a step per image, cached or computed), ``HEAD_ON_FEATURES`` (epochs
    and steps), optionally ``LATE_LAYERS``, then ``EVALUATING`` and ``finish_run``'s.
    Ctrl-C at any point, or an exception from ``on_progress``, leaves no ``model.pt``; the
    features computed so far stay cached.
    """
    report = Reporter(on_progress)
    out_dir = Path(out_dir)
    report.plan({progress_.PREPARING: progress_.PREPARING_COST})
    report.stage(progress_.PREPARING, 2)
    device = prepare_run(config)
    if config.init_checkpoint:
        model = initial_model(config)  # checks that the checkpoint predicts the breeds
    else:
        model = build_resnet34(NUM_CLASSES, weights=config.weights, download=config.download)
    report.step(1, 2)
    files = load_pet_files(
        config.data, valid_fraction=config.valid_fraction, seed=config.seed, extra_roots=config.extra_data,
        with_test=config.evaluate_test, download=config.download,
    )
    report.step(2, 2)
    log(f"{len(files.train)} training images x {config.views} views, {len(files.valid)} validation"
        + (f", {len(files.test)} test" if files.test is not None else "")
        + f" images; device {device}; quick recipe: {config.head_epochs} head epochs"
        + (f" + {config.finetune_epochs} late-layer epochs" if config.finetune_epochs else ""))
    n_test = len(files.test) if files.test is not None else 0
    report.plan(_quick_plan(config, device, len(files.train), len(files.valid), n_test))

    views = ImageViews(config.image_size, config.crop_scale)
    body_key = body_fingerprint(model)
    backend = None  # on CUDA: the model in FP16 autocast
    if device.type == "cpu":
        if config.backend == AUTO:
            report.stage(progress_.TIMING, timing_calls(config.batch_size))
        backend, speedup = body_backend(config.backend, model, config.image_size, config.batch_size, body_key,
                                        config.backend_cache_dir, log, on_call=report.step)
        plan = _quick_plan(config, device, len(files.train), len(files.valid), n_test)
        report.plan({stage: plan[stage] / speedup for stage in (progress_.FEATURES_TRAIN, progress_.FEATURES_EVAL)})
    cache = FeatureCache(config.cache_dir, body_key, backend.name if backend is not None else "eager")
    stats = CacheStats()
    digests: dict[Path, str] = {}

    def features_of(labelled: list[LabelledFile], view_indexes: range, steps: int,
                    offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of ``labelled`` in ``view_indexes``; a step per (image, view), from ``offset``."""
        for number, (path, _) in enumerate(labelled, 1):
            if path not in digests:
                digests[path] = file_digest(path)
            if number % DIGESTS_PER_REPORT == 0:
                report.step(offset, steps)  # reading files: no step done yet, but alive (and cancellable)
        items = [(path, digests[path], view) for path, _ in labelled for view in view_indexes]

        def on_batch(computed: int, to_compute: int) -> None:
            report.step(offset + len(items) - to_compute + computed, steps)  # the cached ones are done

        # Batches of the size the backend was timed at: what it was chosen for, and a
        # progress report (and a chance to cancel) every few seconds even on a busy CPU.
        features = extract_features(model, items, views, cache, batch_size=timing_batch(config.batch_size),
                                    workers=config.workers, device=device, progress=config.progress, stats=stats,
                                    forward=backend, on_batch=on_batch)
        targets = torch.tensor([label for _, label in labelled for _ in view_indexes], dtype=torch.long)
        return features, targets

    start = time.perf_counter()
    steps = len(files.train) * config.views
    report.stage(progress_.FEATURES_TRAIN, steps)
    train_x, train_y = features_of(files.train, range(config.views), steps)
    steps = len(files.valid) + (len(files.test) if files.test is not None else 0)
    report.stage(progress_.FEATURES_EVAL, steps)
    valid_x, valid_y = features_of(files.valid, range(1), steps)
    test_x, test_y = (features_of(files.test, range(1), steps, len(files.valid)) if files.test is not None
                      else (None, None))
    log(f"body features: {stats.computed} computed, {stats.cached} read from the cache {cache.folder} "
        f"({time.perf_counter() - start:.1f}s)")

    report.stage(progress_.HEAD_ON_FEATURES, config.head_epochs * math.ceil(len(train_x) / config.head_batch_size))
    history = History()
    model.fc = train_head(
        train_x, train_y, valid_x, valid_y, epochs=config.head_epochs, lr=config.lr,
        weight_decay=config.weight_decay, batch_size=config.head_batch_size, seed=config.seed,
        history=history, log=log, on_progress=on_progress,
    )
    classes = list(BREED_KEYS)
    if config.finetune_epochs:
        finetune_late_layers(model, files.train, files.valid, config, device, history, log, on_progress)
    if config.finetune_epochs:  # the body changed: evaluate with real passes over the images
        cuda = device.type == "cuda"
        valid_loader = _eval_loader(files.valid, config, cuda)
        test_loader = _eval_loader(files.test, config, cuda) if files.test is not None else None
        batches = len(valid_loader) + (len(test_loader) if test_loader is not None else 0)
        report.stage(progress_.EVALUATING, batches)
        valid = evaluate(model, valid_loader, classes, device, on_batch=report.counter(batches))
        headline = (evaluate(model, test_loader, classes, device, config.progress,
                             on_batch=report.counter(batches, len(valid_loader)))
                    if test_loader is not None else valid)
    else:  # the body is the cached one: its features give the logits
        report.stage(progress_.EVALUATING)
        with torch.no_grad():
            valid = Evaluation(model.fc(valid_x), valid_y, classes, valid_x)
            headline = Evaluation(model.fc(test_x), test_y, classes, test_x) if test_x is not None else valid
    split, split_files = ("test", files.test) if files.test is not None else ("valid", files.valid)

    history_dict = {**history.to_dict(), "param_groups": HEAD_GROUPS[:2 if config.finetune_epochs else 1],
                    "features": asdict(stats)}
    training_args = {**config.to_dict(), "num_train_images": len(files.train), "num_valid_images": len(files.valid)}
    return finish_run(out_dir, model, history_dict, valid, headline, split,
                      ImageFiles(split_files, eval_transform(config.image_size)), image_size=config.image_size,
                      training_args=training_args, seed=config.seed, log=log, on_progress=on_progress)


def _quick_plan(config: QuickConfig, device: torch.device, n_train: int, n_valid: int,
                n_test: int) -> dict[str, float]:
    """The work of a quick run's stages after PREPARING (``ml.progress`` units): the most it
    can be, as if no feature were cached yet, with the body in eager FP32 (once the backend
    is chosen, the features' work is divided by its measured speed-up)."""
    size = config.image_size
    head_steps = config.head_epochs * math.ceil(n_train * config.views / config.head_batch_size)
    plan = {
        progress_.TIMING: progress_.image_passes(timing_calls(config.batch_size) * timing_batch(config.batch_size),
                                                 size) if device.type == "cpu" and config.backend == AUTO else 0.0,
        progress_.FEATURES_TRAIN: progress_.image_passes(n_train * config.views, size),
        progress_.FEATURES_EVAL: progress_.image_passes(n_valid + n_test, size),
        progress_.HEAD_ON_FEATURES: head_steps * progress_.HEAD_STEP_COST,
        progress_.EVALUATING: progress_.image_passes(n_valid + n_test, size) if config.finetune_epochs else 0.0,
        **finish_work(n_valid),
    }
    if config.finetune_epochs:
        plan[progress_.LATE_LAYERS] = epochs_work(n_train, n_valid, size, config.finetune_epochs)
    return plan
