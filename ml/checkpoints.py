"""One self-describing checkpoint file per model.

Everything needed to use a model travels with its weights: class names, the
preprocessing numbers, the architecture, the verdict calibration, metrics and training
arguments. A checkpoint written before calibration existed loads with an empty one (its
verdicts come from the probability alone; see ``ml.calibration.verdicts``). A file is
written to a temporary name and renamed, so an interrupted save never leaves a
half-written checkpoint behind.
"""
from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from .data import IMAGENET_MEAN, IMAGENET_STD, resize_size_for
from .files import atomic_path
from .model import ARCH, build_resnet34

FORMAT = "petsite-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """The file is not a Petsite checkpoint, or does not fit the model it describes."""


@dataclass
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    classes: list[str]
    arch: str = ARCH
    image_size: int = 224
    resize_size: int = 256
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    metrics: dict[str, Any] = field(default_factory=dict)
    # ml.calibration.fit_calibration's result: verdict thresholds, Mahalanobis statistics.
    calibration: dict[str, Any] = field(default_factory=dict)
    training_args: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    torch_version: str = ""

    def build_model(self) -> nn.Module:
        """The model in eval mode with these weights; a mismatch is a CheckpointError."""
        if self.arch != ARCH:
            raise CheckpointError(f"Unsupported architecture {self.arch!r}; this version knows {ARCH!r}.")
        model = build_resnet34(num_classes=len(self.classes), weights=None)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            raise CheckpointError(f"Checkpoint weights do not fit {self.arch}: {exc}") from exc
        return model.eval()

    def verify(self, expected_classes: Sequence[str]) -> None:
        """Refuse a checkpoint that would break every upload later: other classes than
        ``expected_classes`` (in that order), weights that do not load, or a forward
        pass that does not give one finite score per class."""
        if list(self.classes) != list(expected_classes):
            unknown = sorted(set(self.classes) - set(expected_classes))[:5]
            missing = sorted(set(expected_classes) - set(self.classes))[:5]
            detail = f"unknown {unknown}, missing {missing}" if unknown or missing else "the order differs"
            raise CheckpointError(
                f"The checkpoint's {len(self.classes)} classes are not the {len(expected_classes)} expected ({detail})."
            )
        model = self.build_model()
        with torch.inference_mode():
            scores = model(torch.zeros(1, 3, self.image_size, self.image_size))
        if scores.shape != (1, len(expected_classes)) or not torch.isfinite(scores).all():
            expected = (1, len(expected_classes))
            raise CheckpointError(f"A test forward pass gave {tuple(scores.shape)} scores, not {expected} finite ones.")
        self._verify_calibration(model)

    def _verify_calibration(self, model: nn.Module) -> None:
        """Mahalanobis statistics must fit the model: one mean per class, one value per feature."""
        means, precision = self.calibration.get("class_means"), self.calibration.get("precision")
        if means is None and precision is None:
            return
        width = model.fc.in_features
        if (
            not isinstance(means, torch.Tensor) or not isinstance(precision, torch.Tensor)
            or tuple(means.shape) != (len(self.classes), width) or tuple(precision.shape) != (width, width)
        ):
            shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in (means, precision)]
            raise CheckpointError(
                f"The checkpoint's calibration does not fit its model: class means and precision are {shapes}, "
                f"expected {(len(self.classes), width)} and {(width, width)}."
            )


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as plain JSON types: numpy scalars (float64 passes json, not torch's
    safe loader) would make the checkpoint unloadable with ``weights_only=True``."""
    return json.loads(json.dumps(data))


def _plain_calibration(calibration: dict[str, Any]) -> dict[str, Any]:
    """Tensors stay tensors (on the CPU, contiguous); everything else becomes plain JSON types."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in calibration.items() if isinstance(v, torch.Tensor)}
    rest = _plain({k: v for k, v in calibration.items() if k not in tensors})
    return {**rest, **tensors}


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    classes: Sequence[str],
    image_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    metrics: dict[str, Any] | None = None,
    training_args: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its description to ``path`` atomically; returns the path."""
    checkpoint = Checkpoint(
        state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
        classes=list(classes),
        image_size=image_size,
        resize_size=resize_size_for(image_size),
        mean=list(mean),
        std=list(std),
        metrics=_plain(metrics or {}),
        calibration=_plain_calibration(calibration or {}),
        training_args=_plain(training_args or {}),
        created_at=datetime.now(UTC).isoformat(),
        torch_version=str(torch.__version__),
    )
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(checkpoint)}, f)
    return Path(path)


def load_checkpoint(source: str | os.PathLike | BinaryIO | bytes) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`, checking that it is one."""
    name = getattr(source, "name", None) or (str(source) if isinstance(source, (str, os.PathLike)) else "<bytes>")
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        data = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"Checkpoint file {name} does not exist.") from None
    except Exception as exc:
        raise CheckpointError(f"{name} is not a readable checkpoint (corrupt or not a PyTorch file): {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{name} is not a Petsite checkpoint (a bare state dict?). "
            "Create one with `python manage.py train` or ml.checkpoints.save_checkpoint()."
        )
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{name} has checkpoint format {data.get('format_version')}; expected {FORMAT_VERSION}.")
    data = {k: v for k, v in data.items() if k not in ("format", "format_version")}
    try:
        checkpoint = Checkpoint(**data)
    except TypeError as exc:
        raise CheckpointError(f"{name} has unexpected fields: {exc}") from exc
    if not checkpoint.classes:
        raise CheckpointError(f"{name} lists no classes.")
    return checkpoint
