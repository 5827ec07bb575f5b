"""Pooled body features on disk: the frozen network runs once per image and view, ever.

The quick recipe (``ml.recipes.quick``) trains only the classification layer on the features a
frozen ResNet34 body gives (the 512 numbers ``model.fc`` reads). Computing them is the
expensive part, so every result is kept in a cache folder, one small ``.npy`` file per
(image, view), under a path made of three keys:

    <cache>/<body key>/<view key>/<hash[:2]>/<hash>.npy

- body key: a SHA-256 of the body's weights (every tensor except ``fc``), so features
  of other weights (ImageNet, a fine-tuned model, another random seed) never mix;
- view key: a SHA-256 of the view's description (:meth:`ImageViews.description`: the
  preprocessing, its numbers, the view index and the torchvision version);
- hash: the SHA-256 of the image file's bytes, so a renamed or copied file is found
  again and an edited one is not.

Each file is written atomically (``ml.files.atomic_path``) as soon as its batch is
computed: an interrupted run keeps everything finished so far and never leaves half a
file, and the next run computes only what is missing.

Views: view 0 is the evaluation view (resize, centre crop, as the Predictor sees a
photo), view 1 the same mirrored, and views 2, 3, ... augmented ones (ml.data's training
transform: random resized crop, flip, light colour jitter) drawn from a generator seeded
by the file's hash and the view index, so a view is the same image on every run.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from tqdm.auto import tqdm

from .data import IMAGENET_MEAN, IMAGENET_STD, eval_transform, open_image, resize_size_for, train_transform
from .files import atomic_path
from .model import features_and_logits

CACHE_FORMAT = 1  # bump when what a cached file means changes
EVAL_VIEW, FLIP_VIEW = 0, 1

Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def body_fingerprint(model: nn.Module) -> str:
    """SHA-256 of every tensor of the model except the classification layer ``fc``.

    BatchNorm running statistics count: they change what the body computes.
    """
    digest = hashlib.sha256(f"cache-format {CACHE_FORMAT}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith("fc."):
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class ImageViews:
    """The views of an image the quick recipe looks at (module docstring), each deterministic."""

    def __init__(
        self,
        image_size: int = 224,
        crop_scale: tuple[float, float] = (0.35, 1.0),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.image_size = image_size
        self.crop_scale = tuple(crop_scale)
        self.mean, self.std = tuple(mean), tuple(std)
        self._eval = eval_transform(image_size, mean=mean, std=std)
        self._train = train_transform(image_size, mean=mean, std=std, crop_scale=self.crop_scale)

    def description(self, view: int) -> str:
        """Everything that decides the pixels of ``view``: what the cache's view key hashes."""
        numbers = f"size={self.image_size} mean={list(self.mean)} std={list(self.std)}"
        if view == EVAL_VIEW:
            kind = f"eval resize={resize_size_for(self.image_size)} centre-crop"
        elif view == FLIP_VIEW:
            kind = f"eval resize={resize_size_for(self.image_size)} centre-crop hflip"
        else:
            kind = f"train view={view} random-resized-crop scale={list(self.crop_scale)} hflip colour-jitter=0.2"
        return f"format={CACHE_FORMAT} torchvision={torchvision.__version__} open_image {kind} {numbers}"

    def __call__(self, path: str | os.PathLike, digest: str, view: int) -> torch.Tensor:
        image = open_image(path)  # upright RGB, as training and the Predictor open a file
        if view == EVAL_VIEW:
            return self._eval(image)
        if view == FLIP_VIEW:
            return v2.functional.horizontal_flip(self._eval(image))
        seed = int(hashlib.sha256(f"{digest}:{view}".encode()).hexdigest()[:15], 16)
        with torch.random.fork_rng(devices=[]):  # the global generator is left as it was
            torch.manual_seed(seed)
            return self._train(image)


class FeatureCache:
    """The cache folder of one body (layout in the module docstring)."""

    def __init__(self, root: str | os.PathLike, body_key: str, backend: str = "eager") -> None:
        """``backend``: how the body ran (``ml.backends``); BF16's features differ slightly from FP32's."""
        self.root = Path(root)
        self.folder = self.root / (body_key[:32] if backend == "eager" else f"{body_key[:32]}-{backend}")
        self._view_keys: dict[str, str] = {}

    def view_key(self, description: str) -> str:
        key = self._view_keys.get(description)
        if key is None:
            key = self._view_keys[description] = hashlib.sha256(description.encode()).hexdigest()[:32]
            readme = self.folder / key / "view.json"
            if not readme.is_file():  # for a person looking at the folder
                with atomic_path(readme) as tmp:
                    tmp.write_text(json.dumps({"description": description}) + "\n")
        return key

    def path(self, digest: str, description: str) -> Path:
        return self.folder / self.view_key(description) / digest[:2] / f"{digest}.npy"

    def get(self, digest: str, description: str) -> np.ndarray | None:
        path = self.path(digest, description)
        try:
            return np.load(path, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError):  # absent, or unreadable: compute it again
            return None

    def put(self, digest: str, description: str, features: np.ndarray) -> None:
        with atomic_path(self.path(digest, description)) as tmp, tmp.open("wb") as f:
            np.save(f, np.ascontiguousarray(features, dtype=np.float32), allow_pickle=False)


@dataclass
class CacheStats:
    """How many (image, view) features came from the cache and how many the body computed."""

    cached: int = 0
    computed: int = 0


class _Views(Dataset):
    def __init__(self, items: Sequence[tuple[Path, str, int]], views: ImageViews) -> None:
        self.items, self.views = list(items), views

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, digest, view = self.items[index]
        return self.views(path, digest, view), index


def _read_cached(items: Sequence[tuple[Path, str, int]], views: ImageViews,
                 cache: FeatureCache) -> tuple[dict[int, np.ndarray], list[int]]:
    """({item index: its cached features}, the indexes of the items not in the cache)."""
    found: dict[int, np.ndarray] = {}
    missing: list[int] = []
    for i, (_, digest, view) in enumerate(items):
        features = cache.get(digest, views.description(view))
        if features is None:
            missing.append(i)
        else:
            found[i] = features
    return found, missing


def extract_features(
    model: nn.Module,
    items: Sequence[tuple[Path, str, int]],
    views: ImageViews,
    cache: FeatureCache,
    *,
    batch_size: int = 64,
    workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    stats: CacheStats | None = None,
    forward: Forward | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Features (float32, N x 512) of (file, file digest, view) items, in order.

    Cached ones are read; the rest go through the frozen body in batches, and each batch
    is stored before the next starts. The model is put in eval mode (BatchNorm uses its
    running statistics, as at inference). ``forward``: an ``ml.backends`` backend of the
    model (images -> features, logits); default the model itself, in FP16 autocast on CUDA.
    ``on_batch(computed, to_compute)`` is called once the cache was read (with 0 computed),
    then after each stored batch: a training run's progress, which a cancelled run stops.
    """
    stats = stats if stats is not None else CacheStats()
    found, missing = _read_cached(items, views, cache)
    stats.cached += len(found)
    if on_batch is not None:
        on_batch(0, len(missing))
    if missing:
        device = torch.device(device)
        model.to(device).eval()
        cuda = device.type == "cuda"
        loader = DataLoader(_Views([items[i] for i in missing], views), batch_size=batch_size,
                            num_workers=workers, pin_memory=cuda)
        bar = tqdm(loader, desc="body features", leave=False, disable=not progress, dynamic_ncols=True)
        done = 0
        with torch.inference_mode():
            for images, positions in bar:
                images = images.to(device, non_blocking=True)
                if cuda:
                    images = images.contiguous(memory_format=torch.channels_last)
                if forward is not None:
                    batch, _ = forward(images)
                else:
                    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=cuda):
                        batch, _ = features_and_logits(model, images)
                for position, row in zip(positions.tolist(), batch.float().cpu().numpy(), strict=True):
                    i = missing[position]
                    _, digest, view = items[i]
                    cache.put(digest, views.description(view), row)
                    found[i] = row
                stats.computed += len(positions)
                done += len(positions)
                if on_batch is not None:
                    on_batch(done, len(missing))
    if not items:
        return torch.zeros(0, 0)
    return torch.from_numpy(np.stack([found[i] for i in range(len(items))]))
