"""Fast inference: load a checkpoint once, then classify images one by one or in batches.

The forward pass runs through an inference backend (``ml.backends``): eager FP32 by
default, or a named one, or ``"auto"``, the fastest that agrees with eager FP32 on this
machine (measured once per model and machine, then cached). A worker builds its
Predictor on eager FP32 and switches (:meth:`Predictor.use_backend`) once ``ml.warmup``
has chosen and exported off the path of a user's photo.

``classify`` and ``classify_batch`` give each image its top-k, a verdict
(``ml.calibration.CONFIDENT``, ``UNSURE`` or ``NOT_A_PET``) and the scores behind it, from
the same single forward pass that gives the top-k; ``preprocess`` is the model's input for
one image, for callers that read images themselves.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, BinaryIO, NamedTuple

import torch

from . import calibration as calibration_
from .backend_choice import resolve_backend
from .backends import AUTO, make_backend
from .checkpoints import Checkpoint, load_checkpoint
from .data import ImageSource, eval_transform, open_image
from .machine import weights_key


class Prediction(NamedTuple):
    label: str  # a class name from the checkpoint (a breed key for Petsite models)
    probability: float


class Result(NamedTuple):
    """One image's classification: what the model thinks, and how far to trust it."""

    top_k: list[Prediction]  # most likely first
    verdict: str  # ml.calibration.CONFIDENT, UNSURE or NOT_A_PET
    # top_probability, probability_threshold, ood_method, ood_score, ood_threshold
    # (floats and a string; the ood_* are None for a checkpoint without calibration)
    scores: dict[str, Any]


class Predictor:
    """Holds one model in eval mode with the preprocessing it was trained with.

    Build it once per process (it costs a checkpoint read) and reuse it: ``classify``
    runs under ``torch.inference_mode()`` and never touches the weights.

    ``backend`` is an ``ml.backends`` name (``"eager"``, ``"channels_last"``, ``"bf16"``,
    ``"compile"``, ``"onnx"``) or ``"auto"``: measure the candidates briefly (a few seconds
    at 224 px) unless ``backend_cache_dir`` (default ``~/.cache/petsite``) already holds the
    choice for these weights on this machine (the ONNX export is cached there too).
    ``backend_report`` keeps the figures (None unless ``"auto"``). A backend may change
    ``model``'s memory layout, never its values; :meth:`use_backend` changes backend later.
    """

    def __init__(
        self,
        checkpoint: Checkpoint | str | os.PathLike | BinaryIO | bytes,
        device: str = "cpu",
        backend: str = "eager",
        backend_cache_dir: str | os.PathLike | None = None,
    ):
        if not isinstance(checkpoint, Checkpoint):
            checkpoint = load_checkpoint(checkpoint)
        self.checkpoint = checkpoint
        self.classes = list(checkpoint.classes)
        self.device = torch.device(device)
        self.model = checkpoint.build_model().to(self.device)
        self.backend_cache_dir = backend_cache_dir
        self.backend, self.backend_report = resolve_backend(
            backend, self.model, checkpoint.image_size, cache_dir=backend_cache_dir,
            model_key=weights_key(checkpoint.state_dict) if backend == AUTO else None,
        )
        self.calibration = checkpoint.calibration  # empty for checkpoints from before calibration
        self.transform = eval_transform(
            checkpoint.image_size, checkpoint.resize_size, checkpoint.mean, checkpoint.std
        )

    def use_backend(self, name: str, report: dict[str, Any] | None = None) -> None:
        """Run the model through backend ``name`` from the next call on (``report``: the
        figures it was chosen by). A worker serving eager FP32 switches so once the warm-up
        has chosen; the ONNX file must exist already, or this exports it first (seconds to
        minutes). Raises, keeping the current backend, if ``name`` cannot be built here."""
        self.backend = make_backend(name, self.model, self.backend_cache_dir)
        self.backend_report = report

    def preprocess(self, image: ImageSource) -> torch.Tensor:
        """The model's input tensor for one image. The image is decoded no larger than the
        transform needs (``open_image``'s ``min_size``): memory stays small for huge photos."""
        return self.transform(open_image(image, min_size=self.checkpoint.resize_size))

    def classify(self, image: ImageSource | torch.Tensor, k: int = 5) -> Result:
        """Top-``k`` (most likely first), verdict and scores of one image."""
        return self.classify_batch([image], k=k)[0]

    def classify_batch(self, images: Sequence[ImageSource | torch.Tensor], k: int = 5,
                       batch_size: int = 32) -> list[Result]:
        """:meth:`classify` for many images, in input order, ``batch_size`` per forward pass.

        An image may be a tensor already through :meth:`preprocess`: callers that must
        survive unreadable images preprocess one by one themselves, then send the good
        ones here together.
        """
        results: list[Result] = []
        for start in range(0, len(images), batch_size):
            tensors = [image if isinstance(image, torch.Tensor) else self.preprocess(image)
                       for image in images[start:start + batch_size]]
            results.extend(self._classify_tensors(tensors, k))
        return results

    def _classify_tensors(self, tensors: Sequence[torch.Tensor], k: int) -> list[Result]:
        """One forward pass gives both the logits and the penultimate features that the
        out-of-distribution score may need (``ml.model.features_and_logits``)."""
        k = min(k, len(self.classes))
        with torch.inference_mode():
            features, logits = self.backend(torch.stack(list(tensors)).to(self.device))
            top_p, top_i = torch.softmax(logits, dim=1).topk(k, dim=1)
            verdicts = calibration_.verdicts(self.calibration, logits, features)
        return [
            Result([Prediction(self.classes[i], p) for p, i in zip(ps, idxs, strict=True)], v.verdict, v.scores)
            for ps, idxs, v in zip(top_p.tolist(), top_i.tolist(), verdicts, strict=True)
        ]
