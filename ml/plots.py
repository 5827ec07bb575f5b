"""The figures a practitioner looks at after training, as PNG files.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, no
display, no global state), so this works in a Celery worker, a management command
or a notebook alike. Every figure has a title and labelled axes and is readable
without zooming.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch.utils.data import Dataset

from .breeds import display_name
from .evaluation import ConfusedPair, Evaluation
from .files import atomic_path

# File names (without .png) of the figures of a run, in the order a report shows them.
TRAINING_FIGURES = ("loss", "accuracy", "lr_schedule")
EVALUATION_FIGURES = ("confusion_matrix", "top_losses", "sample_predictions", "most_confused")
FIGURES = TRAINING_FIGURES + EVALUATION_FIGURES

CORRECT_COLOUR, WRONG_COLOUR = "#1a7f37", "#cf222e"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG, atomically (see :func:`ml.files.atomic_path`)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def _epoch_axis(history: dict[str, Any]) -> tuple[list[int], list[int]]:
    """Epoch numbers, and the step at which each epoch ends (to share the step axis)."""
    epochs = [row["epoch"] for row in history["epochs"]]
    ends = []
    for epoch in epochs:
        steps = [row["step"] for row in history["steps"] if row["epoch"] == epoch]
        ends.append(max(steps) if steps else 0)
    return epochs, ends


def _mark_unfreeze(ax, history: dict[str, Any], x: str) -> None:
    """A dashed line where stage 2 (all layers trained) starts."""
    key = "epoch" if x == "epoch" else "step"
    rows = history["epochs"] if x == "epoch" else history["steps"]
    frozen = [row[key] for row in rows if row["stage"] == "frozen"]
    if frozen and len(frozen) < len(rows):
        ax.axvline(max(frozen) + (0.5 if x == "epoch" else 0), color="grey", linestyle="--", linewidth=1,
                   label="body unfrozen")


def plot_losses(history: dict[str, Any]) -> Figure:
    """Training loss per step (raw and smoothed), and train/validation loss per epoch."""
    fig = _figure(9, 4.5)
    ax = fig.add_subplot()
    steps = [row["step"] for row in history["steps"]]
    losses = np.array([row["loss"] for row in history["steps"]])
    if len(losses):
        ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=1, label="train loss (per batch)")
        window = max(1, len(losses) // 20)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, color="tab:blue", linewidth=1.5, label="train loss (smoothed)")
    _, ends = _epoch_axis(history)
    ax.plot(ends, [row["train_loss"] for row in history["epochs"]], "o-", color="tab:blue",
            label="train loss (epoch mean)")
    ax.plot(ends, [row["valid_loss"] for row in history["epochs"]], "s-", color="tab:orange",
            label="validation loss")
    _mark_unfreeze(ax, history, "step")
    ax.set(title="Loss", xlabel="training step (batch)", ylabel="cross-entropy loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_accuracy(history: dict[str, Any]) -> Figure:
    """Validation accuracy and error rate per epoch (and training accuracy)."""
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    epochs = [row["epoch"] for row in history["epochs"]]
    ax.plot(epochs, [row["accuracy"] for row in history["epochs"]], "o-", color=CORRECT_COLOUR,
            label="validation accuracy")
    ax.plot(epochs, [row["error_rate"] for row in history["epochs"]], "s-", color=WRONG_COLOUR,
            label="validation error rate")
    ax.plot(epochs, [row["train_accuracy"] for row in history["epochs"]], "^--", color="tab:blue",
            alpha=0.6, label="training accuracy (augmented)")
    _mark_unfreeze(ax, history, "epoch")
    ax.set(title="Accuracy and error rate", xlabel="epoch", ylabel="fraction of images", ylim=(0, 1.02))
    ax.set_xticks(epochs)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_lr_schedule(history: dict[str, Any]) -> Figure:
    """Learning rate of every parameter group at every step (log scale)."""
    fig = _figure(9, 4.5)
    ax = fig.add_subplot()
    steps = [row["step"] for row in history["steps"]]
    lrs = [row["lr"] for row in history["steps"]]
    names = history.get("param_groups", ["early layers", "late layers", "head"])
    for g, name in enumerate(names):
        ax.plot(steps, [lr[g] if g < len(lr) else np.nan for lr in lrs], label=name)
    _mark_unfreeze(ax, history, "step")
    ax.set(title="Learning-rate schedule (one cycle per stage)", xlabel="training step (batch)",
           ylabel="learning rate", yscale="log")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


def plot_confusion_matrix(matrix: np.ndarray, classes: Sequence[str]) -> Figure:
    """Counts, rows = actual breed, columns = predicted breed; zero cells left blank."""
    n = len(classes)
    size = max(6.0, 0.3 * n + 3)
    fig = _figure(size, size)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    names = [display_name(c) for c in classes]
    ax.set_xticks(range(n), names, rotation=90, fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=6,
                    color="white" if count > threshold else "black")
    ax.set(title="Confusion matrix", xlabel="predicted breed", ylabel="actual breed")
    fig.colorbar(image, ax=ax, shrink=0.6, label="images")
    return fig


def plot_image_grid(images: Sequence[np.ndarray], titles: Sequence[str], colours: Sequence[str], title: str) -> Figure:
    """Images (H x W x 3, floats in [0, 1]) in a square-ish grid with a coloured title each."""
    columns = max(1, int(np.ceil(np.sqrt(len(images)))))
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig = _figure(3.2 * columns, 3.4 * rows)
    fig.suptitle(title, fontsize=13)
    for k in range(rows * columns):
        ax = fig.add_subplot(rows, columns, k + 1)
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k])
            ax.set_title(titles[k], fontsize=9, color=colours[k])
    return fig


def plot_most_confused(pairs: Sequence[ConfusedPair], limit: int = 15) -> Figure:
    """Horizontal bars: how often breed A was taken for breed B, most frequent on top."""
    pairs = list(pairs)[:limit]
    fig = _figure(9, max(3.0, 0.4 * len(pairs) + 1.5))
    ax = fig.add_subplot()
    if pairs:
        labels = [f"{display_name(p.actual)} → {display_name(p.predicted)}" for p in pairs]
        ax.barh(range(len(pairs)), [p.count for p in pairs], color="tab:orange")
        ax.set_yticks(range(len(pairs)), labels, fontsize=9)
        ax.invert_yaxis()
    else:
        ax.text(0.5, 0.5, "no confusions", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set(title="Most confused pairs (actual → predicted)", xlabel="images", ylabel="actual → predicted")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def _show(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised CHW tensor back to an H x W x 3 image in [0, 1]: what the model saw."""
    image = tensor.float() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    return image.clamp(0, 1).permute(1, 2, 0).numpy()


def _save_all(figures: dict[str, Callable[[], Figure]], out_dir: Path,
              on_figure: Callable[[], None] | None) -> dict[str, Path]:
    """Draw and write each figure in turn; ``on_figure()`` after each (a training run's progress)."""
    paths = {}
    for name, draw in figures.items():
        paths[name] = save_figure(draw(), out_dir / f"{name}.png")
        if on_figure is not None:
            on_figure()
    return paths


def save_training_figures(history: dict[str, Any], out_dir: str | os.PathLike,
                          on_figure: Callable[[], None] | None = None) -> dict[str, Path]:
    """loss.png, accuracy.png and lr_schedule.png from a training history."""
    figures = {"loss": lambda: plot_losses(history), "accuracy": lambda: plot_accuracy(history),
               "lr_schedule": lambda: plot_lr_schedule(history)}
    return _save_all(figures, Path(out_dir), on_figure)


def save_evaluation_figures(
    evaluation: Evaluation,
    dataset: Dataset,
    out_dir: str | os.PathLike,
    mean: Sequence[float],
    std: Sequence[float],
    grid_size: int = 9,
    seed: int = 0,
    on_figure: Callable[[], None] | None = None,
) -> dict[str, Path]:
    """Confusion matrix, top losses, sample predictions and most confused pairs.

    ``dataset`` must be the one that was evaluated (same order); images are shown as
    the model saw them after preprocessing, which is what explains a prediction.
    """
    classes = evaluation.classes
    probabilities = evaluation.logits.softmax(dim=1)

    def top_losses() -> Figure:
        worst = evaluation.top_losses(grid_size)
        return plot_image_grid(
            [_show(dataset[t.index][0], mean, std) for t in worst],
            [f"{display_name(classes[t.predicted])} / {display_name(classes[t.actual])}\n"
             f"loss {t.loss:.2f} / p {t.probability:.2f}" for t in worst],
            [CORRECT_COLOUR if t.predicted == t.actual else WRONG_COLOUR for t in worst],
            "Top losses: predicted / actual, loss / probability of prediction",
        )

    def sample_predictions() -> Figure:
        generator = torch.Generator().manual_seed(seed)
        sample = torch.randperm(len(evaluation.targets), generator=generator)[:grid_size].tolist()
        return plot_image_grid(
            [_show(dataset[i][0], mean, std) for i in sample],
            [f"{display_name(classes[int(evaluation.predictions[i])])} ({probabilities[i].max().item():.2f})\n"
             f"actual: {display_name(classes[int(evaluation.targets[i])])}" for i in sample],
            [CORRECT_COLOUR if evaluation.predictions[i] == evaluation.targets[i] else WRONG_COLOUR
             for i in sample],
            "Sample predictions: predicted (probability), actual",
        )

    figures = {
        "confusion_matrix": lambda: plot_confusion_matrix(evaluation.confusion_matrix, classes),
        "top_losses": top_losses,
        "sample_predictions": sample_predictions,
        "most_confused": lambda: plot_most_confused(evaluation.most_confused()),
    }
    return _save_all(figures, Path(out_dir), on_figure)
