"""The quick recipe: a good model in minutes on a CPU (``train --recipe quick``).

The full recipe (``ml.recipes.full``) fine-tunes every layer; on a 2-core CPU
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
a plain loop. Its options are ``ml.config.QuickOptions`` (``RunConfig.quick``); which
recipe ``train --recipe auto`` runs is ``ml.runs.choose_recipe``'s answer.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR

from .. import progress as progress_
from ..backend_choice import choose_backend, summary, timed_calls
from ..backends import AUTO, BF16, CHANNELS_LAST, EAGER, Backend, make_backend
from ..breeds import BREED_KEYS, NUM_CLASSES
from ..config import QUICK, RunConfig
from ..data import ImageFiles, LabelledFile, PetFiles, eval_transform, load_pet_files, make_loader, train_transform
from ..evaluation import Evaluation, evaluate
from ..features import CacheStats, FeatureCache, ImageViews, body_fingerprint, extract_features, file_digest
from ..model import layer_groups
from ..outputs import RunResult, finish_run, finish_work
from ..precision import FP16, resolve_precision, uses_channels_last
from ..progress import FROZEN, LATE, UNFROZEN, Progress, Reporter
from ..training import (
    EpochLoop,
    History,
    Log,
    StageSteps,
    epoch_row,
    epochs_work,
    initial_model,
    log_epoch,
    make_scheduler,
    prepare_run,
)

HEAD_GROUPS = ["head (fc)", "late body (layer3, layer4)"]  # the quick recipe's learning-rate groups
BODY_CANDIDATES = (EAGER, CHANNELS_LAST, BF16)  # for --backend auto (see body_backend)
DIGESTS_PER_REPORT = 200  # files read (hashed) between two progress reports

Labelled = tuple[torch.Tensor, torch.Tensor]  # (features, targets)


# --- the head on fixed features -------------------------------------------------------------

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
    first, total_steps = len(history.epochs), epochs * steps_per_epoch
    last = first + epochs
    for epoch in range(first + 1, last + 1):
        start, done = time.perf_counter(), (epoch - first - 1) * steps_per_epoch
        train_loss, train_acc = _head_epoch(
            head, x, targets, torch.randperm(len(x), generator=generator).split(batch_size), optimizer, scheduler,
            history, epoch, on_step=lambda n, loss, acc, done=done, epoch=epoch: report.step(
                done + n, total_steps, epoch=epoch, epochs=last, loss=loss, accuracy=acc))
        with torch.no_grad():
            valid_logits = head.eval()(valid_x)
        history.epochs.append(epoch_row(epoch, FROZEN, train_loss, train_acc, valid_logits, valid_targets,
                                        time.perf_counter() - start))
        report({"history": history.epochs})
        if epoch == last or (epoch - first) % max(1, epochs // 5) == 0:
            log_epoch(history.epochs[-1], last, log)
    with torch.no_grad():
        folded = nn.Linear(features.shape[1], NUM_CLASSES)
        folded.weight.copy_(head.weight / std)
        folded.bias.copy_(head.bias - (head.weight * (mean / std)).sum(dim=1))
    return folded


def _head_epoch(head: nn.Linear, x: torch.Tensor, targets: torch.Tensor, batches: tuple[torch.Tensor, ...],
                optimizer: torch.optim.Optimizer, scheduler: OneCycleLR, history: History, epoch: int,
                on_step: Callable[[int, float, float], None]) -> tuple[float, float]:
    """One epoch of the head over ``batches`` (indexes into ``x``): (mean loss, accuracy)."""
    head.train()
    total_loss, correct, seen = 0.0, 0, 0
    for number, batch in enumerate(batches, 1):
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
        on_step(number, total_loss / seen, correct / seen)
    return total_loss / len(x), correct / len(x)


# --- the late layers on images --------------------------------------------------------------

def finetune_late_layers(
    model: nn.Module,
    train_files: list[LabelledFile],
    valid_files: list[LabelledFile],
    config: RunConfig,
    device: torch.device,
    history: History,
    log: Log = print,
    on_progress: Progress | None = None,
) -> None:
    """``config.quick.finetune_epochs`` epochs of layer3, layer4 and the head on augmented images.

    The early body (conv1 .. layer2) keeps its weights; its BatchNorm statistics adapt,
    as in the full recipe's frozen stage. Head and late body get one cycle each, the late
    body at a tenth of the head's rate (discriminative learning rates).
    """
    options = config.quick
    early, late, head = layer_groups(model)
    for p in early:
        p.requires_grad = False
    lrs = [options.finetune_lr, options.finetune_lr / 10]  # in HEAD_GROUPS order
    optimizer = torch.optim.AdamW([{"params": head, "lr": lrs[0]}, {"params": late, "lr": lrs[1]}],
                                  lr=lrs[0], weight_decay=config.weight_decay)
    cuda = device.type == "cuda"
    train_tf = train_transform(config.image_size, crop_scale=config.crop_scale)
    train_loader = make_loader(ImageFiles(train_files, train_tf), config.batch_size, train=True,
                               workers=config.workers, seed=config.seed, pin_memory=cuda)
    valid_loader = _eval_loader(valid_files, config, cuda)
    scheduler = make_scheduler(optimizer, lrs, options.finetune_epochs * len(train_loader), UNFROZEN)
    model.to(device)
    steps = StageSteps(Reporter(on_progress), progress_.LATE_LAYERS, options.finetune_epochs,
                       len(history.epochs) + options.finetune_epochs, len(train_loader), len(valid_loader))
    history.precision = resolve_precision(config.precision, device, model, config.image_size, config.batch_size, log,
                                          on_step=lambda _done, _steps: steps.report.step(0, steps.steps))
    if uses_channels_last(history.precision, device):
        model.to(memory_format=torch.channels_last)
    loop = EpochLoop(model, train_loader, valid_loader, device, history,
                     torch.amp.GradScaler("cuda", enabled=history.precision == FP16), log, config.progress, on_progress)
    loop.run(steps, LATE, options.finetune_epochs, optimizer, scheduler)
    for p in early:
        p.requires_grad = True


def _eval_loader(files: list[LabelledFile], config: RunConfig, pin: bool):
    dataset = ImageFiles(files, eval_transform(config.image_size))
    return make_loader(dataset, config.batch_size * 2, train=False, workers=config.workers, pin_memory=pin)


# --- the body's one pass --------------------------------------------------------------------

def timing_batch(batch_size: int) -> int:
    """The batch size :func:`body_backend` times its candidates at, and the body's pass runs at."""
    return min(batch_size, 32)


def timing_calls(batch_size: int) -> int:
    """At most how many calls of the body :func:`body_backend` makes to choose (the plan)."""
    return 1 + len(BODY_CANDIDATES) + timed_calls(len(BODY_CANDIDATES), [timing_batch(batch_size)])


def body_backend(name: str, model: nn.Module, image_size: int, batch_size: int, body_key: str,
                 cache_dir: str | os.PathLike | None, log: Log = print,
                 on_call: Callable[[int, int], None] | None = None) -> tuple[Backend, float]:
    """The ``ml.backends`` backend the body's one pass runs on (CPU), and how many times
    faster than eager FP32 it measured (1.0 when not measured); ``auto`` measures eager,
    channels_last and BF16 at the pass's batch size (once per body and machine: the choice
    is cached) and takes the fastest that agrees with eager FP32. ONNX is left out: its
    export costs more than it saves on a single pass. ``on_call``: see ``choose_backend``."""
    model.eval()
    speedup = 1.0
    if name == AUTO:
        name, report = choose_backend(model, image_size, candidates=BODY_CANDIDATES,
                                      batch_sizes=(timing_batch(batch_size),), cache_dir=cache_dir,
                                      model_key=body_key, on_call=on_call)
        log(f"body backend: {name} ({summary(report)})")
        speedup = report["candidates"].get(name, {}).get("speedup_vs_eager") or 1.0
    return make_backend(name, model, cache_dir), speedup


class _Extractor:
    """The body's features of labelled files through the feature cache, a progress step per
    (image, view); each file is hashed once, however many passes ask for it."""

    def __init__(self, model: nn.Module, config: RunConfig, device: torch.device, backend: Backend | None,
                 cache: FeatureCache, report: Reporter):
        self.model, self.config, self.device, self.backend, self.cache = model, config, device, backend, cache
        self.report, self.stats, self.digests = report, CacheStats(), {}
        self.views = ImageViews(config.image_size, config.crop_scale)

    def __call__(self, labelled: list[LabelledFile], view_indexes: range, steps: int, offset: int = 0) -> Labelled:
        """Features of ``labelled`` in ``view_indexes``; the stage's steps counted from ``offset``."""
        for number, (path, _) in enumerate(labelled, 1):
            if path not in self.digests:
                self.digests[path] = file_digest(path)
            if number % DIGESTS_PER_REPORT == 0:
                self.report.step(offset, steps)  # reading files: no step done yet, but alive (and cancellable)
        items = [(path, self.digests[path], view) for path, _ in labelled for view in view_indexes]

        def on_batch(computed: int, to_compute: int) -> None:
            self.report.step(offset + len(items) - to_compute + computed, steps)  # the cached ones are done

        # Batches of the size the backend was timed at: what it was chosen for, and a
        # progress report (and a chance to cancel) every few seconds even on a busy CPU.
        features = extract_features(self.model, items, self.views, self.cache,
                                    batch_size=timing_batch(self.config.batch_size), workers=self.config.workers,
                                    device=self.device, progress=self.config.progress, stats=self.stats,
                                    forward=self.backend, on_batch=on_batch)
        targets = torch.tensor([label for _, label in labelled for _ in view_indexes], dtype=torch.long)
        return features, targets


def body_features(model: nn.Module, files: PetFiles, config: RunConfig, device: torch.device, log: Log,
                  report: Reporter) -> tuple[Labelled, Labelled, Labelled | None, CacheStats]:
    """The frozen body's features of the training images (every view), the validation and
    the test images (the evaluation view): the stages ``TIMING`` (``auto`` on a CPU),
    ``FEATURES_TRAIN`` and ``FEATURES_EVAL``."""
    options, n_test = config.quick, len(files.test) if files.test is not None else 0
    body_key = body_fingerprint(model)
    backend = None  # on CUDA: the model in FP16 autocast
    if device.type == "cpu":
        if options.backend == AUTO:
            report.stage(progress_.TIMING, timing_calls(config.batch_size))
        backend, speedup = body_backend(options.backend, model, config.image_size, config.batch_size, body_key,
                                        options.backend_cache_dir, log, on_call=report.step)
        plan = _quick_plan(config, device, len(files.train), len(files.valid), n_test)
        report.plan({stage: plan[stage] / speedup for stage in (progress_.FEATURES_TRAIN, progress_.FEATURES_EVAL)})
    cache = FeatureCache(options.cache_dir, body_key, backend.name if backend is not None else "eager")
    extract = _Extractor(model, config, device, backend, cache, report)
    start = time.perf_counter()
    steps = len(files.train) * options.views
    report.stage(progress_.FEATURES_TRAIN, steps)
    train = extract(files.train, range(options.views), steps)
    steps = len(files.valid) + n_test
    report.stage(progress_.FEATURES_EVAL, steps)
    valid = extract(files.valid, range(1), steps)
    test = extract(files.test, range(1), steps, len(files.valid)) if files.test is not None else None
    log(f"body features: {extract.stats.computed} computed, {extract.stats.cached} read from the cache "
        f"{cache.folder} ({time.perf_counter() - start:.1f}s)")
    return train, valid, test, extract.stats


# --- the run --------------------------------------------------------------------------------

def run_quick(
    config: RunConfig, out_dir: str | os.PathLike, log: Log = print, on_progress: Progress | None = None
) -> RunResult:
    """Train with the quick recipe (the base of ``config`` and its ``quick`` part) and write a
    complete run directory, as ``ml.recipes.full.run_full`` does.

    ``on_progress`` gets what ``run_full`` reports (``ml.progress``): the stages
    ``PREPARING``, ``TIMING`` (the body's backend, ``auto`` on a CPU), ``FEATURES_TRAIN`` and
    ``FEATURES_EVAL`` (a step per image, cached or computed), ``HEAD_ON_FEATURES`` (epochs
    and steps), optionally ``LATE_LAYERS``, then ``EVALUATING`` and ``finish_run``'s.
    Ctrl-C at any point, or an exception from ``on_progress``, leaves no ``model.pt``; the
    features computed so far stay cached.
    """
    report, options = Reporter(on_progress), config.quick
    report.plan({progress_.PREPARING: progress_.PREPARING_COST})
    report.stage(progress_.PREPARING, 2)
    device = prepare_run(config)
    model = initial_model(config)  # first: missing weights stop a run before any work
    report.step(1, 2)
    files = load_pet_files(
        config.data, valid_fraction=config.valid_fraction, seed=config.seed, extra_roots=config.extra_data,
        with_test=config.evaluate_test, download=config.download,
    )
    report.step(2, 2)
    log(f"{len(files.train)} training images x {options.views} views, {len(files.valid)} validation"
        + (f", {len(files.test)} test" if files.test is not None else "")
        + f" images; device {device}; quick recipe: {options.head_epochs} head epochs"
        + (f" + {options.finetune_epochs} late-layer epochs" if options.finetune_epochs else ""))
    n_test = len(files.test) if files.test is not None else 0
    report.plan(_quick_plan(config, device, len(files.train), len(files.valid), n_test))
    train, valid_xy, test_xy, stats = body_features(model, files, config, device, log, report)

    report.stage(progress_.HEAD_ON_FEATURES, options.head_epochs * math.ceil(len(train[0]) / options.head_batch_size))
    history = History()
    model.fc = train_head(
        *train, *valid_xy, epochs=options.head_epochs, lr=options.lr, weight_decay=config.weight_decay,
        batch_size=options.head_batch_size, seed=config.seed, history=history, log=log, on_progress=on_progress,
    )
    if options.finetune_epochs:
        finetune_late_layers(model, files.train, files.valid, config, device, history, log, on_progress)
    valid, headline = _evaluate(model, files, valid_xy, test_xy, config, device, report)
    split, split_files = ("test", files.test) if files.test is not None else ("valid", files.valid)

    history_dict = {**history.to_dict(), "param_groups": HEAD_GROUPS[:2 if options.finetune_epochs else 1],
                    "features": asdict(stats)}
    training_args = {**config.to_dict(QUICK), "num_train_images": len(files.train),
                     "num_valid_images": len(files.valid)}
    return finish_run(Path(out_dir), model, history_dict, valid, headline, split,
                      ImageFiles(split_files, eval_transform(config.image_size)), image_size=config.image_size,
                      training_args=training_args, seed=config.seed, log=log, on_progress=on_progress)


def _evaluate(model: nn.Module, files: PetFiles, valid_xy: Labelled, test_xy: Labelled | None, config: RunConfig,
              device: torch.device, report: Reporter) -> tuple[Evaluation, Evaluation]:
    """(validation, headline) evaluations, the stage ``EVALUATING``: from the cached features
    when the body is the cached one, with real passes over the images when it changed."""
    classes = list(BREED_KEYS)
    if not config.quick.finetune_epochs:  # the body is the cached one: its features give the logits
        report.stage(progress_.EVALUATING)
        with torch.no_grad():
            valid = Evaluation(model.fc(valid_xy[0]), valid_xy[1], classes, valid_xy[0])
            headline = Evaluation(model.fc(test_xy[0]), test_xy[1], classes, test_xy[0]) if test_xy else valid
        return valid, headline
    cuda = device.type == "cuda"
    valid_loader = _eval_loader(files.valid, config, cuda)
    test_loader = _eval_loader(files.test, config, cuda) if files.test is not None else None
    batches = len(valid_loader) + (len(test_loader) if test_loader is not None else 0)
    report.stage(progress_.EVALUATING, batches)
    valid = evaluate(model, valid_loader, classes, device, on_batch=report.counter(batches))
    headline = (evaluate(model, test_loader, classes, device, config.progress,
                         on_batch=report.counter(batches, len(valid_loader)))
                if test_loader is not None else valid)
    return valid, headline


def _quick_plan(config: RunConfig, device: torch.device, n_train: int, n_valid: int,
                n_test: int) -> dict[str, float]:
    """The work of a quick run's stages after PREPARING (``ml.progress`` units): the most it
    can be, as if no feature were cached yet, with the body in eager FP32 (once the backend
    is chosen, the features' work is divided by its measured speed-up)."""
    size, options = config.image_size, config.quick
    head_steps = options.head_epochs * math.ceil(n_train * options.views / options.head_batch_size)
    timing = device.type == "cpu" and options.backend == AUTO
    plan = {
        progress_.TIMING: progress_.image_passes(timing_calls(config.batch_size) * timing_batch(config.batch_size),
                                                 size) if timing else 0.0,
        progress_.FEATURES_TRAIN: progress_.image_passes(n_train * options.views, size),
        progress_.FEATURES_EVAL: progress_.image_passes(n_valid + n_test, size),
        progress_.HEAD_ON_FEATURES: head_steps * progress_.HEAD_STEP_COST,
        progress_.EVALUATING: progress_.image_passes(n_valid + n_test, size) if options.finetune_epochs else 0.0,
        **finish_work(n_valid),
    }
    if options.finetune_epochs:
        plan[progress_.LATE_LAYERS] = epochs_work(n_train, n_valid, size, options.finetune_epochs)
    return plan
