"""How good is a model: the numbers and tables a practitioner reads after training.

Everything is computed from one pass of the model over a DataLoader (logits and
targets), so the metrics, the confusion matrix and the top losses always describe the
same predictions, and ``metrics.json`` agrees with the confusion matrix by construction.
The names follow fastai's ``ClassificationInterpretation``: top losses, most confused.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .breeds import display_name
from .files import atomic_path
from .model import features_and_logits


@torch.inference_mode()
def collect_outputs(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str = "cpu",
    progress: bool = False,
    with_features: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """(penultimate features, logits, targets) of the whole loader, from one pass.

    Float32 and int64 on the CPU, in loader order. The features (the input of
    ``model.fc``, what ``ml.calibration`` fits its statistics on) are None without
    ``with_features``, which any model can do. Leaves the model in eval mode; training
    code puts it back into train mode itself. ``on_batch(done, batches)`` after each batch
    (a training run's progress; what it raises stops the pass).
    """
    device = torch.device(device)
    model.eval()
    cuda = device.type == "cuda"
    features, logits, targets = [], [], []
    for done, (images, labels) in enumerate(tqdm(loader, desc="evaluating", leave=False, disable=not progress), 1):
        images = images.to(device, non_blocking=True)
        if cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=cuda):
            if with_features:
                batch_features, output = features_and_logits(model, images)
                features.append(batch_features.float().cpu())
            else:
                output = model(images)
        logits.append(output.float().cpu())
        targets.append(torch.as_tensor(labels))
        if on_batch is not None:
            on_batch(done, len(loader))
    return (torch.cat(features) if with_features else None), torch.cat(logits), torch.cat(targets).long()


def collect_logits(
    model: nn.Module, loader: DataLoader, device: torch.device | str = "cpu", progress: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, targets) of the whole loader (see :func:`collect_outputs`)."""
    _, logits, targets = collect_outputs(model, loader, device, progress, with_features=False, on_batch=on_batch)
    return logits, targets


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return (logits.argmax(dim=1) == targets).float().mean().item()


def error_rate(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return 1.0 - accuracy(logits, targets)


def top_k_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int = 5) -> float:
    """Share of images whose true class is among the ``k`` highest scores."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == targets[:, None]).any(dim=1).float().mean().item()


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> np.ndarray:
    """Counts with rows = actual class, columns = predicted class (fastai's orientation)."""
    flat = targets.long() * num_classes + predictions.long()
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).numpy()


def per_class_metrics(matrix: np.ndarray, classes: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class, read off the confusion matrix.

    A class that is never predicted (or never present) gets 0.0 rather than NaN, so the
    result is valid JSON.
    """
    true_positives = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    actual = matrix.sum(axis=1).astype(float)
    rows = []
    for i, name in enumerate(classes):
        precision = true_positives[i] / predicted[i] if predicted[i] else 0.0
        recall = true_positives[i] / actual[i] if actual[i] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({
            "class": name, "name": display_name(name), "precision": precision,
            "recall": recall, "f1": f1, "support": int(actual[i]),
        })
    return rows


class ConfusedPair(NamedTuple):
    actual: str
    predicted: str
    count: int


def most_confused(
    matrix: np.ndarray, classes: Sequence[str], min_count: int = 1, limit: int = 20
) -> list[ConfusedPair]:
    """Off-diagonal cells with at least ``min_count`` images, largest first."""
    off_diagonal = matrix.copy()
    np.fill_diagonal(off_diagonal, 0)
    actual, predicted = np.nonzero(off_diagonal >= min_count)
    pairs = [
        ConfusedPair(classes[a], classes[p], int(off_diagonal[a, p])) for a, p in zip(actual, predicted, strict=True)
    ]
    pairs.sort(key=lambda pair: (-pair.count, pair.actual, pair.predicted))
    return pairs[:limit]


class TopLoss(NamedTuple):
    index: int  # position in the evaluated dataset
    loss: float
    predicted: int
    actual: int
    probability: float  # of the predicted class, as fastai's plot_top_losses shows
    actual_probability: float


def top_losses(logits: torch.Tensor, targets: torch.Tensor, k: int = 9) -> list[TopLoss]:
    """The ``k`` images the model got most wrong (highest cross-entropy), worst first."""
    losses = F.cross_entropy(logits, targets, reduction="none")
    probabilities = logits.softmax(dim=1)
    worst = losses.topk(min(k, len(losses))).indices.tolist()
    return [
        TopLoss(
            index=i,
            loss=losses[i].item(),
            predicted=int(probabilities[i].argmax()),
            actual=int(targets[i]),
            probability=probabilities[i].max().item(),
            actual_probability=probabilities[i, targets[i]].item(),
        )
        for i in worst
    ]


@dataclass
class Evaluation:
    """One model's predictions on one dataset, and everything derived from them."""

    logits: torch.Tensor
    targets: torch.Tensor
    classes: list[str]
    features: torch.Tensor | None = None  # penultimate features, for ml.calibration

    @cached_property
    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(dim=1)

    @cached_property
    def confusion_matrix(self) -> np.ndarray:
        return confusion_matrix(self.predictions, self.targets, len(self.classes))

    @property
    def loss(self) -> float:
        return F.cross_entropy(self.logits, self.targets).item()

    @property
    def accuracy(self) -> float:
        return accuracy(self.logits, self.targets)

    @property
    def error_rate(self) -> float:
        return error_rate(self.logits, self.targets)

    def top_losses(self, k: int = 9) -> list[TopLoss]:
        return top_losses(self.logits, self.targets, k)

    def most_confused(self, min_count: int = 1, limit: int = 20) -> list[ConfusedPair]:
        return most_confused(self.confusion_matrix, self.classes, min_count, limit)

    def summary(self) -> dict[str, Any]:
        """The headline numbers, small enough for a table row or a log line."""
        return {
            "num_images": len(self.targets),
            "loss": self.loss,
            "accuracy": self.accuracy,
            "error_rate": self.error_rate,
            "top5_accuracy": top_k_accuracy(self.logits, self.targets, 5),
        }

    def to_metrics(self, split: str) -> dict[str, Any]:
        """The content of ``metrics.json``: headline numbers, per-class table, confusion matrix."""
        return {
            "split": split,
            **self.summary(),
            "classes": list(self.classes),
            "per_class": per_class_metrics(self.confusion_matrix, self.classes),
            "most_confused": [pair._asdict() for pair in self.most_confused()],
            "confusion_matrix": self.confusion_matrix.tolist(),
        }


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    classes: Sequence[str],
    device: torch.device | str = "cpu",
    progress: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
) -> Evaluation:
    features, logits, targets = collect_outputs(model, loader, device, progress=progress, on_batch=on_batch)
    return Evaluation(logits, targets, list(classes), features)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return Path(path)
