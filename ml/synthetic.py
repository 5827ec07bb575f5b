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

# Coat colours: each breed's body colour is one of these (jittered per image). Ten
# colours for 37 breeds, assigned so that breeds sharing a colour differ in both
# silhouette and texture: colour narrows a breed down, as in real pets, but never decides.
COAT_COLOURS = (
    (220, 40, 40), (240, 150, 30), (235, 225, 60), (50, 170, 60), (60, 200, 210),
    (40, 70, 200), (140, 60, 190), (240, 240, 240), (30, 30, 30), (130, 80, 40),
)

SHAPES = ("circle", "square", "triangle", "diamond", "plus")
TEXTURES = ("solid", "hstripes", "vstripes", "checker", "diagonal_checker", "dots", "rings", "grid")


def pattern_of(class_index: int) -> tuple[str, str, int]:
    """(silhouette, texture, coat colour index) of breed number ``class_index`` (0-based).

    Any two of the three identify the breed; none does alone.
    """
    shape, texture = divmod(class_index, len(TEXTURES))
    return SHAPES[shape], TEXTURES[texture], (shape + texture) % len(COAT_COLOURS)


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


def _texture_mask(texture: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """Where the second colour goes; ``u``, ``v`` are pixel offsets in the object's frame."""
    a, b = u / period, v / period
    if texture == "solid":
        return np.zeros(u.shape, dtype=bool)
    if texture == "hstripes":
        return np.floor(b) % 2 == 0
    if texture == "vstripes":
        return np.floor(a) % 2 == 0
    if texture == "checker":
        return (np.floor(a) + np.floor(b)) % 2 == 0
    if texture == "diagonal_checker":
        return (np.floor((a + b) * 0.75) + np.floor((a - b) * 0.75)) % 2 == 0
    if texture == "dots":
        return (a - np.round(a)) ** 2 + (b - np.round(b)) ** 2 <= 0.09
    if texture == "rings":
        return np.floor(np.hypot(a, b) * 1.2) % 2 == 0
    if texture == "grid":
        return (np.abs(a - np.round(a)) <= 0.17) | (np.abs(b - np.round(b)) <= 0.17)
    raise ValueError(f"unknown texture {texture!r}")


def _distinct_colour(rng: np.random.Generator, *others: np.ndarray, min_distance: float = 90.0) -> np.ndarray:
    """A random RGB colour at least ``min_distance`` away from each of ``others``."""
    while True:
        colour = rng.uniform(0, 255, size=3)
        if all(np.linalg.norm(colour - o) >= min_distance for o in others):
            return colour


def render_pet(class_index: int, rng: np.random.Generator, image_size: int = 64) -> Image.Image:
    """One fake photo of breed ``class_index``: a textured silhouette on a noisy background."""
    shape, texture, coat = pattern_of(class_index)
    n = image_size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5

    body = np.clip(np.array(COAT_COLOURS[coat], dtype=float) + rng.normal(0, 15, size=3), 0, 255)
    background = _distinct_colour(rng, body)
    marking = _distinct_colour(rng, body, min_distance=80.0)

    radius = rng.uniform(0.28, 0.42) * n
    cx, cy = (rng.uniform(radius, n - radius) for _ in range(2))
    angle = np.deg2rad(rng.uniform(-12, 12))
    cos, sin = np.cos(angle), np.sin(angle)
    u = cos * (xx - cx) + sin * (yy - cy)  # pixel offsets, rotated into the object's frame
    v = -sin * (xx - cx) + cos * (yy - cy)

    inside = _shape_mask(shape, u / radius, v / radius)
    period = n / 8 * rng.uniform(0.85, 1.15)
    phase_u, phase_v = rng.uniform(0, period, size=2)
    marked = _texture_mask(texture, u + phase_u * (texture != "rings"), v + phase_v * (texture != "rings"), period)

    # A soft left-to-right background gradient, so the background is not one flat colour.
    gradient = (xx / n - 0.5)[..., None] * rng.uniform(-60, 60, size=3)
    pixels = np.broadcast_to(background, (n, n, 3)) + gradient
    pixels = np.where(inside[..., None], np.where(marked[..., None], marking, body), pixels)
    pixels = pixels + rng.normal(0, 12, size=pixels.shape)
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
