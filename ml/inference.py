"""Fast inference: load a checkpoint once, then classify images one by one or in batches."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import BinaryIO, NamedTuple

import torch

from .checkpoints import Checkpoint, load_checkpoint
from .data import ImageSource, eval_transform, open_image


class Prediction(NamedTuple):
    label: str  # a class name from the checkpoint (a breed key for Petsite models)
    probability: float


class Predictor:
    """Holds one model in eval mode with the preprocessing it was trained with.

    Build it once per process (it costs a checkpoint read) and reuse it: ``predict``
    runs under ``torch.inference_mode()`` and never touches the weights.
    """

    def __init__(self, checkpoint: Checkpoint | str | os.PathLike | BinaryIO | bytes, device: str = "cpu"):
        if not isinstance(checkpoint, Checkpoint):
            checkpoint = load_checkpoint(checkpoint)
        self.checkpoint = checkpoint
        self.classes = list(checkpoint.classes)
        self.device = torch.device(device)
        self.model = checkpoint.build_model().to(self.device)
        self.transform = eval_transform(
            checkpoint.image_size, checkpoint.resize_size, checkpoint.mean, checkpoint.std
        )

    def preprocess(self, image: ImageSource) -> torch.Tensor:
        """The model's input tensor for one image. The image is decoded no larger than the
        transform needs (``open_image``'s ``min_size``): memory stays small for huge photos."""
        return self.transform(open_image(image, min_size=self.checkpoint.resize_size))

    def predict(self, image: ImageSource, k: int = 5) -> list[Prediction]:
        """The ``k`` most likely classes, most likely first."""
        return self.predict_batch([image], k=k)[0]

    def predict_batch(self, images: Sequence[ImageSource], k: int = 5, batch_size: int = 32) -> list[list[Prediction]]:
        """Top-``k`` for each image, in input order, ``batch_size`` images per forward pass."""
        results: list[list[Prediction]] = []
        for start in range(0, len(images), batch_size):
            tensors = [self.preprocess(image) for image in images[start:start + batch_size]]
            results.extend(self.predict_preprocessed(tensors, k=k))
        return results

    def predict_preprocessed(self, tensors: Sequence[torch.Tensor], k: int = 5) -> list[list[Prediction]]:
        """Top-``k`` for images already through :meth:`preprocess`, in one forward pass.

        Callers that must survive unreadable images preprocess one by one themselves,
        then send the good ones here together.
        """
        k = min(k, len(self.classes))
        with torch.inference_mode():
            probs = torch.softmax(self.model(torch.stack(list(tensors)).to(self.device)), dim=1)
            top_p, top_i = probs.topk(k, dim=1)
        return [
            [Prediction(self.classes[i], p) for p, i in zip(ps, idxs, strict=True)]
            for ps, idxs in zip(top_p.tolist(), top_i.tolist(), strict=True)
        ]
