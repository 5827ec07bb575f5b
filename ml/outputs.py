"""What a run leaves behind, whatever recipe trained it: the run directory, and the
evaluation of a saved checkpoint.

A run writes into one directory (what ``ml.services.register_model`` copies)::

    out_dir/history.json   per epoch and per step
    out_dir/metrics.json   see ml.evaluation.Evaluation.to_metrics, plus "valid", and
                           "verdicts" and "calibration" (see verdict_metrics)
    out_dir/figures/*.png  see ml.plots.FIGURES
    out_dir/model.pt       written last, atomically: its presence means the run finished

At the end (:func:`finish_run`), the validation images' logits and penultimate features
are what ``ml.calibration`` fits the verdict thresholds on (confident, unsure, not a pet);
the calibration goes into the checkpoint.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from . import calibration as calibration_
from . import plots
from . import progress as progress_
from .breeds import BREED_KEYS, NUM_CLASSES
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .data import IMAGENET_MEAN, IMAGENET_STD, eval_transform, load_split, make_loader, with_open_image
from .evaluation import Evaluation, evaluate, write_json
from .progress import Progress, Reporter
from .training import Log, resolve_device


@dataclass
class RunResult:
    out_dir: Path
    checkpoint: Path
    metrics: dict[str, Any]
    history: dict[str, Any]
    figures: dict[str, Path]


def finish_work(valid_images: int) -> dict[str, float]:
    """The work of :func:`finish_run`'s stages."""
    figures = len(plots.FIGURES) * progress_.FIGURE_COST
    return {progress_.CALIBRATING: valid_images * progress_.CALIBRATION_COST, progress_.FIGURES: figures,
            progress_.SAVING: progress_.SAVING_COST}


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
