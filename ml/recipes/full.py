"""The full recipe (``train --recipe full``): fastai's fine-tuning recipe in plain PyTorch.

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
epoch loop is ``ml.training``'s, shared with the quick recipe.
A model trained from random weights (``weights=None``, for tests) starts with
zero-initialised residual branches (see :func:`ml.model.build_resnet34`).

The end (calibration, metrics, figures, the checkpoint) is ``ml.outputs.finish_run``'s.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import progress as progress_
from ..config import RunConfig
from ..data import load_pet_datasets, make_loader
from ..evaluation import evaluate
from ..model import freeze_body, unfreeze
from ..outputs import RunResult, finish_run, finish_work
from ..precision import AUTO, FP16, resolve_precision, sample_image_size, steps_to_measure, uses_channels_last
from ..progress import FROZEN, UNFROZEN, Progress, Reporter
from ..training import (
    EpochLoop,
    History,
    Log,
    StageSteps,
    epochs_work,
    initial_model,
    make_optimizer,
    make_scheduler,
    prepare_run,
    stage_lrs,
)

STAGES = {FROZEN: progress_.HEAD, UNFROZEN: progress_.ALL_LAYERS}  # the progress stage of each training stage


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
    model.to(device)
    precision = _training_precision(model, train_loader, device, precision, log, Reporter(on_progress))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    loop = EpochLoop(model, train_loader, valid_loader, device, History(precision=precision),
                     torch.amp.GradScaler("cuda", enabled=precision == FP16), log, progress, on_progress)
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
        steps = StageSteps(Reporter(on_progress), STAGES[stage], stage_epochs, freeze_epochs + epochs,
                           len(train_loader), len(valid_loader))
        loop.run(steps, stage, stage_epochs, optimizer, scheduler)
    unfreeze(model)
    return loop.history


def _training_precision(model: nn.Module, train_loader: DataLoader, device: torch.device, precision: str, log: Log,
                        report: Reporter) -> str:
    """``precision`` resolved (``auto`` measures, as the stage ``TIMING``), and the model in
    the memory layout it runs fastest in."""
    image_size, batch_size = sample_image_size(train_loader.dataset), train_loader.batch_size or 64
    timing_steps = steps_to_measure(precision, device, image_size, batch_size)
    if timing_steps:
        report.stage(progress_.TIMING, timing_steps)
    precision = resolve_precision(precision, device, model, image_size, batch_size, log,
                                  on_step=lambda done, steps: report.step(done, steps))
    if uses_channels_last(precision, device):
        model.to(memory_format=torch.channels_last)
    return precision


def run_full(
    config: RunConfig, out_dir: str | os.PathLike, log: Log = print, on_progress: Progress | None = None
) -> RunResult:
    """Train, evaluate, and write a complete run directory (``ml.outputs``), with the base of
    ``config`` and its ``full`` part.

    Ctrl-C at any point, or an exception from ``on_progress``, leaves no ``model.pt`` (it
    is written last, atomically), so an interrupted run is never mistaken for a finished one.
    """
    report = Reporter(on_progress)
    report.plan({progress_.PREPARING: progress_.PREPARING_COST})
    report.stage(progress_.PREPARING, 2)
    device = prepare_run(config)
    model = initial_model(config)  # first: missing weights should stop a run before anything else
    report.step(1, 2)
    datasets, loaders = _data(config, device)
    report.step(2, 2)
    options = config.full
    log(f"{len(datasets.train)} training, {len(datasets.valid)} validation"
        + (f", {len(datasets.test)} test" if datasets.test is not None else "")
        + f" images; device {device}; {options.freeze_epochs} frozen + {options.epochs} unfrozen epochs")
    report.plan(_plan(config, device, len(datasets.train), len(datasets.valid),
                      len(datasets.test) if datasets.test is not None else 0))

    train_loader, valid_loader, test_loader = loaders
    history = fit(
        model, train_loader, valid_loader, freeze_epochs=options.freeze_epochs, epochs=options.epochs,
        lr=options.lr, lr_mult=options.lr_mult, weight_decay=config.weight_decay, device=device,
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
    training_args = {**config.to_dict("full"), "num_train_images": len(datasets.train),
                     "num_valid_images": len(datasets.valid), "precision_used": history.precision}
    return finish_run(Path(out_dir), model, history.to_dict(), valid, headline, split, dataset,
                      image_size=config.image_size, training_args=training_args, seed=config.seed, log=log,
                      on_progress=on_progress)


def _data(config: RunConfig, device: torch.device):
    """(the datasets, (training, validation, test loader or None))."""
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
    return datasets, (train_loader, valid_loader, test_loader)


def _plan(config: RunConfig, device: torch.device, n_train: int, n_valid: int, n_test: int) -> dict[str, float]:
    """The work of a full run's stages after PREPARING (``ml.progress`` units)."""
    size, timing = config.image_size, steps_to_measure(config.precision, device, config.image_size, config.batch_size)
    return {
        progress_.TIMING: progress_.image_passes(timing * min(config.batch_size, 8), size, training=True),
        progress_.HEAD: epochs_work(n_train, n_valid, size, config.full.freeze_epochs),
        progress_.ALL_LAYERS: epochs_work(n_train, n_valid, size, config.full.epochs),
        progress_.EVALUATING: progress_.image_passes(n_valid + n_test, size),
        **finish_work(n_valid),
    }
