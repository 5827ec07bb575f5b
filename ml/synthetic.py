"""A small fake Oxford-IIIT Pet dataset, written in the real dataset's exact on-disk layout.

Tests, benchmarks and demos need data that torchvision's ``OxfordIIITPet`` loads
unmodified (so the real loading code is what gets tested) and that a network can
learn quickly on a CPU, without being solvable by looking at a single pixel.

Each breed is a pair (silhouette, fill texture): 5 silhouettes x 8 textures give 40
combinations, of which the first 37 are used. Everything else is random per image:
the colours of the background, the shape and its texture, position, size, a small
rotation, the texture's phase and period, and pixel noise. Every silhouette and
texture looks the same mirrored left-right, so horizontal-flip augmentation never
turns one class into another.

Layout written under ``root/oxford-iiit-pet/``::

    images/<Breed_key>_<n>.jpg            e.g. images/Abyssinian_1.jpg, images/great_pyrenees_7.jpg
    annotations/list.txt                  header comments, then "name class_id species breed_id"
    annotations/trainval.txt              same rows, no header
    annotations/test.txt                  same rows, no header
"""
from __future__ import annotations

import colorsys
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .breeds import BREEDS, CAT

DATASET_DIR = "oxford-iiit-pet"

# The header of the real annotations/list.txt, copied as it is (its typos included).
LIST_HEADER = (
    "#Image CLASS-ID SPECIES BREED ID\n"
    "#ID: 1:37 Class ids\n"
    "#SPECIES: 1:Cat 2:Dog\n"
    "#BREED ID: 1-25:Cat 1:12:Dog\n"
    "#All images with 1st letter as captial are cat images\n"
    "#images with small first letter are dog images\n"
)

# Coat colours: 18 hues 20 degrees apart, and brown. Each breed's body has one of them
# (jittered per image); breeds that share a colour differ in silhouette and texture.
# Colour is the cue a network picks up first, so it makes learning fast enough for a
# CPU test, but alone it leaves every breed with a look-alike: about half right at best.
COAT_COLOURS = tuple(
    tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue / 18, 0.8, 0.9)) for hue in range(18)
) + ((130, 80, 30),)

SHAPES = ("circle", "square", "triangle", "diamond", "plus")
TEXTURES = ("solid", "hstripes", "vstripes", "checker", "spot", "halves", "outline", "rings")


def pattern_of(class_index: int) -> tuple[str, str, int]:
    """(silhouette, texture, coat colour index) of breed number ``class_index`` (0-based)."""
    shape, texture = divmod(class_index, len(TEXTURES))
    return SHAPES[shape], TEXTURES[texture], class_index % len(COAT_COLOURS)


def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Inside-test in the object's own coordinates, where the shape spans about [-1, 1]."""
    if shape == "circle":
        return x * x + y * y <= 1.0
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) <= 0.85
    if shape == "triangle":  # apex up: symmetric under a left-right mirror
        return (y <= 0.85) & (np.abs(x) <= (y + 1.0) * 0.55)
    if shape == "diamond":
        return np.abs(x) + np.abs(y) <= 1.0
    if shape == "plus":
        return (np.maximum(np.abs(x), np.abs(y)) <= 1.0) & (np.minimum(np.abs(x), np.abs(y)) <= 0.38)
    raise ValueError(f"unknown shape {shape!r}")


def _texture_mask(texture: str, shape: str, x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where the marking colour goes.

    ``x``, ``y``: the object's own coordinates (the silhouette spans about [-1, 1]);
    ``u``, ``v``: the same in texture periods, with a random phase. Patterns are coarse
    (a few periods across the pet) so that they survive downscaling to 32 pixels.
    """
    if texture == "solid":
        return np.zeros(x.shape, dtype=bool)
    if texture == "hstripes":
        return np.floor(v) % 2 == 0
    if texture == "vstripes":
        return np.floor(u) % 2 == 0
    if texture == "checker":
        return (np.floor(u) + np.floor(v)) % 2 == 0
    if texture == "spot":
        return x * x + y * y <= 0.2
    if texture == "halves":
        return y < 0
    if texture == "outline":  # a band along the silhouette's edge
        return ~_shape_mask(shape, x / 0.6, y / 0.6)
    if texture == "rings":
        return np.floor(np.hypot(x, y) * 3.0) % 2 == 1
    raise ValueError(f"unknown texture {texture!r}")


def _distinct_colour(
    rng: np.random.Generator, *others: np.ndarray, min_distance: float = 90.0, tint: float | None = None
) -> np.ndarray:
    """A random RGB colour at least ``min_distance`` away from each of ``others``.

    With ``tint``, a grey of random lightness whose channels differ by at most ``tint``.
    """
    while True:
        if tint is None:
            colour = rng.uniform(0, 255, size=3)
        else:
            colour = np.clip(rng.uniform(0, 255) + rng.uniform(-tint, tint, size=3), 0, 255)
        if all(np.linalg.norm(colour - o) >= min_distance for o in others):
            return colour


def render_pet(class_index: int, rng: np.random.Generator, image_size: int = 64) -> Image.Image:
    """One fake photo of breed ``class_index``: a textured silhouette on a noisy background."""
    shape, texture, coat = pattern_of(class_index)
    n = image_size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5

    body = np.clip(np.array(COAT_COLOURS[coat], dtype=float) + rng.normal(0, 8, size=3), 0, 255)
    background = _distinct_colour(rng, body, tint=25.0)
    marking = _distinct_colour(rng, body, min_distance=100.0)

    radius = rng.uniform(0.3, 0.45) * n
    cx, cy = (rng.uniform(radius, n - radius) for _ in range(2))
    angle = np.deg2rad(rng.uniform(-10, 10))
    cos, sin = np.cos(angle), np.sin(angle)
    u = cos * (xx - cx) + sin * (yy - cy)  # pixel offsets, rotated into the object's frame
    v = -sin * (xx - cx) + cos * (yy - cy)

    x, y = u / radius, v / radius
    inside = _shape_mask(shape, x, y)
    period = radius * rng.uniform(0.6, 0.8)  # about three stripes across the pet
    phase_u, phase_v = rng.uniform(0, 1, size=2)
    marked = _texture_mask(texture, shape, x, y, u / period + phase_u, v / period + phase_v)

    # A soft left-to-right background gradient, so the background is not one flat colour.
    gradient = (xx / n - 0.5)[..., None] * rng.uniform(-60, 60, size=3)
    pixels = np.broadcast_to(background, (n, n, 3)) + gradient
    pixels = np.where(inside[..., None], np.where(marked[..., None], marking, body), pixels)
    pixels = pixels + rng.normal(0, 8, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def make_fake_pets(
    root: str | os.PathLike,
    images_per_class: int = 20,
    image_size: int = 64,
    seed: int = 0,
    test_fraction: float = 0.5,
) -> Path:
    """Write a fake Oxford-IIIT Pet dataset under ``root/oxford-iiit-pet``; returns ``root``.

    ``root`` is what ``OxfordIIITPet(root)`` and ``ml.data`` take. The first
    ``round(images_per_class * (1 - test_fraction))`` images of every breed go to
    ``trainval.txt``, the rest to ``test.txt``, as the real dataset splits each breed
    about in half. The same arguments always write the same files.
    """
    if images_per_class < 1:
        raise ValueError("images_per_class must be at least 1")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError("test_fraction must be in [0, 1)")
    root = Path(root)
    base = root / DATASET_DIR
    images_dir = base / "images"
    annotations_dir = base / "annotations"
    images_dir.mkdir(parents=True, exist_ok=True)
    annotations_dir.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    n_trainval = max(1, round(images_per_class * (1.0 - test_fraction)))
    breed_ids = {CAT: 0, "dog": 0}
    all_rows: list[str] = []
    trainval_rows: list[str] = []
    test_rows: list[str] = []
    for class_index, breed in enumerate(BREEDS):
        breed_ids[breed.species] += 1  # the real list.txt numbers breeds within each species
        species_id = 1 if breed.species == CAT else 2
        for number in range(1, images_per_class + 1):
            name = f"{breed.key}_{number}"
            render_pet(class_index, rng, image_size).save(images_dir / f"{name}.jpg", quality=92)
            row = f"{name} {class_index + 1} {species_id} {breed_ids[breed.species]}\n"
            all_rows.append(row)
            (trainval_rows if number <= n_trainval else test_rows).append(row)

    (annotations_dir / "list.txt").write_text(LIST_HEADER + "".join(all_rows))
    (annotations_dir / "trainval.txt").write_text("".join(trainval_rows))
    (annotations_dir / "test.txt").write_text("".join(test_rows))
    return root
