"""Images in, tensors out: the preprocessing shared by training, evaluation and inference.

Evaluation and the Predictor must see an image exactly as validation did during
training, so both take their transform from :func:`eval_transform` here and the
numbers it needs (image size, resize size, normalisation) travel in the checkpoint.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from PIL import Image, ImageOps
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset
from torchvision.datasets import OxfordIIITPet
from torchvision.transforms import v2

from .breeds import BREED_KEYS, BREEDS, CAT, DOG
from .layout import (  # noqa: F401 - the layout is torch-free; ml.data is where training code looks for it
    DATASET_DIR,
    DATASET_URLS,
    SPLITS,
    DatasetError,
    check_dataset,
    how_to_get,
    read_split,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageSource = str | os.PathLike | BinaryIO | Image.Image


def resize_size_for(image_size: int) -> int:
    """Shorter side before the centre crop: 256 for 224, the ImageNet convention."""
    return int(round(image_size * 256 / 224))


REDUCING_GAP = 2.0  # reduce() keeps at least this many times the size the transform resizes to
# Modes whose pixels Image.reduce can average (palette and 1-bit ones it cannot).
_REDUCIBLE_MODES = {"L", "LA", "I", "F", "RGB", "RGBA", "CMYK", "YCbCr"}


def open_image(source: ImageSource, min_size: int | None = None) -> Image.Image:
    """An RGB PIL image, rotated as its EXIF orientation says (phone photos need this).

    With ``min_size`` (the shorter side the transform resizes to), a large image is made
    smaller first, so that a 40-megapixel photo never exists at full size in memory: a
    JPEG is decoded by libjpeg at 1/2, 1/4 or 1/8 scale (``draft``) with its shorter side
    still >= ``min_size``; other images are averaged down by a whole factor (``reduce``)
    to no less than ``REDUCING_GAP * min_size``. Only then are they turned upright and
    converted to RGB, copying a small image. The transform's own resize then does the
    rest, so the tensor barely changes (the same top-1 on ordinary photos). Without it,
    the image comes at full size, as training has always loaded it.
    """
    image = source if isinstance(source, Image.Image) else Image.open(source)
    if min_size:
        image = _reduced(image, min_size)
    image = ImageOps.exif_transpose(image)
    return image.convert("RGB")


def _reduced(image: Image.Image, min_size: int) -> Image.Image:
    """``image``, or a smaller version whose shorter side is still >= ``min_size``."""
    image.draft(None, (min_size, min_size))  # JPEG not yet decoded: scale in libjpeg; others ignore it
    factor = int(min(image.size) // (min_size * REDUCING_GAP))
    if factor < 2:
        return image
    if image.mode not in _REDUCIBLE_MODES:
        # Palette or 1-bit pixels are indexes, which cannot be averaged: first the colours
        # (or greys) that the conversion to RGB would give anyway, then the reduction.
        # (``convert`` and ``reduce`` keep ``info``: exif_transpose still finds the orientation.)
        image = image.convert("L" if image.mode == "1" else "RGB")
    return image.reduce(factor)


def eval_transform(
    image_size: int = 224,
    resize_size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Resize the shorter side, centre-crop, scale to [0, 1], normalise."""
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(resize_size or resize_size_for(image_size), antialias=True),
        v2.CenterCrop(image_size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ])


def train_transform(
    image_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    crop_scale: tuple[float, float] = (0.35, 1.0),
) -> v2.Compose:
    """Augmentation for training: random resized crop, horizontal flip, light colour jitter."""
    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ])


# --- The Oxford-IIIT Pet dataset on disk -------------------------------------------------
#
# Loading goes through torchvision's ``OxfordIIITPet`` so that the real dataset needs no
# conversion. Everything below only adds what torchvision leaves out: a check that says
# exactly what is missing (ml.layout), a seeded stratified validation split, extra data roots, and
# DataLoaders.

def with_open_image(transform: v2.Transform) -> v2.Compose:
    """``transform`` preceded by :func:`open_image`, exactly as the Predictor prepares an image.

    torchvision's dataset opens files without applying their EXIF orientation; this puts
    training and evaluation on the same footing as inference.
    """
    return v2.Compose([v2.Lambda(open_image, Image.Image), transform])


def load_split(
    root: str | os.PathLike,
    split: str,
    transform: v2.Transform | None = None,
    download: bool = False,
):
    """torchvision's ``OxfordIIITPet`` for one official split, checked first."""
    prepare_split(root, split, download)
    return OxfordIIITPet(root, split=split, target_types="category", transform=transform)


def prepare_split(root: str | os.PathLike, split: str, download: bool = False) -> None:
    """Download ``split`` if asked (and missing), then check it (see :func:`check_dataset`)."""
    if download:  # torchvision skips the download when the folders already exist
        try:
            OxfordIIITPet(root, split=split, download=True)
        except OSError as exc:  # URLError is an OSError
            how = how_to_get(root)
            raise DatasetError(f"Could not download the Oxford-IIIT Pet dataset: {exc}. {how}") from exc
    check_dataset(root, splits=(split,))


def stratified_split(labels: Sequence[int], valid_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, valid indices) with ``valid_fraction`` of every class in valid.

    Seeded so that a run can be repeated, and stratified so that every breed is
    measured, however few images it has (each class with 2+ images gives at least one).
    """
    generator = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    train, valid = [], []
    for label in sorted(by_class):
        indices = by_class[label]
        order = torch.randperm(len(indices), generator=generator).tolist()
        n_valid = round(len(indices) * valid_fraction)
        if valid_fraction > 0 and len(indices) >= 2:
            n_valid = min(max(n_valid, 1), len(indices) - 1)
        valid += [indices[i] for i in order[:n_valid]]
        train += [indices[i] for i in order[n_valid:]]
    if valid_fraction > 0 and not valid:
        raise DatasetError(
            f"Too few images to hold out a validation split ({len(labels)} training images, at most one per "
            "breed): validation measures the model and calibrates its verdicts, so at least one breed needs 2 "
            "or more images. Add images (the Oxford-IIIT Pet dataset has about 100 per breed)."
        )
    return sorted(train), sorted(valid)


@dataclass
class PetDatasets:
    """The datasets of a training run; ``test`` is None when it was not asked for."""

    train: Dataset
    valid: Dataset
    test: Dataset | None
    classes: list[str]  # breed keys; index = class id - 1


def load_pet_datasets(
    root: str | os.PathLike,
    *,
    image_size: int = 224,
    valid_fraction: float = 0.2,
    seed: int = 42,
    extra_roots: Sequence[str | os.PathLike] = (),
    with_test: bool = True,
    download: bool = False,
    crop_scale: tuple[float, float] = (0.35, 1.0),
) -> PetDatasets:
    """Official trainval/test split of ``root``; validation is a stratified part of trainval.

    Extra roots (same layout, e.g. exported reviewed photos) add every image of their
    ``trainval.txt`` to the training set only, so validation and test numbers stay
    comparable between model versions.
    """
    train_tf = with_open_image(train_transform(image_size, crop_scale=crop_scale))
    eval_tf = with_open_image(eval_transform(image_size))
    train_full = load_split(root, "trainval", train_tf, download=download)
    valid_full = load_split(root, "trainval", eval_tf)
    labels = [label for _, label in read_split(root, "trainval")]
    train_idx, valid_idx = stratified_split(labels, valid_fraction, seed)
    extra = [load_split(extra_root, "trainval", train_tf) for extra_root in extra_roots]
    return PetDatasets(
        train=ConcatDataset([Subset(train_full, train_idx), *extra]),
        valid=Subset(valid_full, valid_idx),
        test=load_split(root, "test", eval_tf) if with_test else None,
        classes=list(BREED_KEYS),
    )


# --- The same images as files: for code that keys work by file (the feature cache) ----------

LabelledFile = tuple[Path, int]


def split_files(root: str | os.PathLike, split: str) -> list[LabelledFile]:
    """(image file, class index) per row of ``split``, in torchvision's order."""
    images = Path(root) / DATASET_DIR / "images"
    return [(images / f"{name}.jpg", label) for name, label in read_split(root, split)]


@dataclass
class PetFiles:
    """The images of a run as file lists, split exactly as :func:`load_pet_datasets` splits them."""

    train: list[LabelledFile]
    valid: list[LabelledFile]
    test: list[LabelledFile] | None


def load_pet_files(
    root: str | os.PathLike,
    *,
    valid_fraction: float = 0.2,
    seed: int = 42,
    extra_roots: Sequence[str | os.PathLike] = (),
    with_test: bool = True,
    download: bool = False,
) -> PetFiles:
    """:func:`load_pet_datasets`'s train, validation and test images, as (file, class index) lists."""
    prepare_split(root, "trainval", download)
    if with_test:
        prepare_split(root, "test", download)
    for extra_root in extra_roots:
        prepare_split(extra_root, "trainval")
    trainval = split_files(root, "trainval")
    train_idx, valid_idx = stratified_split([label for _, label in trainval], valid_fraction, seed)
    return PetFiles(
        train=[trainval[i] for i in train_idx] + [f for extra in extra_roots for f in split_files(extra, "trainval")],
        valid=[trainval[i] for i in valid_idx],
        test=split_files(root, "test") if with_test else None,
    )


class ImageFiles(Dataset):
    """(transform(image), class index) for a list of (file, class index): a dataset over files.

    Each file is opened with :func:`open_image` (upright, RGB), as the Predictor opens one.
    """

    def __init__(self, files: Sequence[LabelledFile], transform: v2.Transform) -> None:
        self.files = list(files)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[index]
        return self.transform(open_image(path)), label


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    workers: int = 0,
    seed: int | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """Shuffled (seeded) batches for training, ordered batches for evaluation.

    Training drops the last incomplete batch: a batch of one breaks BatchNorm, and
    equal batches keep the one-cycle schedule's step count exact.
    """
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train and len(dataset) > batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
        generator=generator,
    )


LIST_HEADER = (  # the header of the real annotations/list.txt, its typos included
    "#Image CLASS-ID SPECIES BREED ID\n"
    "#ID: 1:37 Class ids\n"
    "#SPECIES: 1:Cat 2:Dog\n"
    "#BREED ID: 1-25:Cat 1:12:Dog\n"
    "#All images with 1st letter as captial are cat images\n"
    "#images with small first letter are dog images\n"
)


def write_annotations(
    root: str | os.PathLike, trainval: Sequence[tuple[str, int]], test: Sequence[tuple[str, int]] = ()
) -> Path:
    """Write ``list.txt``, ``trainval.txt`` and ``test.txt`` for (image name, class index) rows.

    Rows are ``name class_id species breed_id`` as in the real dataset: class ids count
    from 1, species is 1 for cats and 2 for dogs, breed ids count within each species.
    Anything that writes the layout (fake data, exported reviews) goes through here, so
    ``read_split`` and torchvision read it back.
    """
    breed_ids, species_ids = {}, {}
    counters = {CAT: 0, DOG: 0}
    for breed in BREEDS:
        counters[breed.species] += 1
        breed_ids[breed.key] = counters[breed.species]
        species_ids[breed.key] = 1 if breed.species == CAT else 2

    def lines(rows: Sequence[tuple[str, int]]) -> str:
        return "".join(
            f"{name} {label + 1} {species_ids[BREED_KEYS[label]]} {breed_ids[BREED_KEYS[label]]}\n"
            for name, label in rows
        )

    annotations = Path(root) / DATASET_DIR / "annotations"
    annotations.mkdir(parents=True, exist_ok=True)
    (annotations / "list.txt").write_text(LIST_HEADER + lines([*trainval, *test]))
    (annotations / "trainval.txt").write_text(lines(trainval))
    (annotations / "test.txt").write_text(lines(test))
    return Path(root)
