"""A small fake Oxford-IIIT Pet dataset, written in the real dataset's exact on-disk layout.

Tests, benchmarks and demos need data that torchvision's ``OxfordIIITPet`` loads
unmodified (so the real loading code is what gets tested) and that a ResNet34 trained
from random weights learns within a couple of CPU minutes, without any single cheap
statistic giving the answer.

Each breed is a coloured silhouette with a marking (see :func:`pattern_of`): its coat
colour is shared with exactly one other breed, which has another silhouette and another
kind of marking, so colour gets a classifier to about half right and the rest needs
shape or texture. Everything else is random per image: background lightness and
gradient, marking colour, position, size, a small rotation, stripe period and phase,
and pixel noise. Every silhouette and marking looks the same mirrored left-right, so
horizontal-flip augmentation never turns one breed into another.

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

from .breeds import BREEDS
from .data import DATASET_DIR, write_annotations

# Coat colours: 18 hues 20 degrees apart, and brown. Each breed's body has one of them
# (jittered per image); breeds that share a colour differ in silhouette and texture.
# Colour is the cue a network picks up first, so it makes learning fast enough for a
# CPU test, but alone it leaves every breed with a look-alike: about half right at best.
COAT_COLOURS = tuple(
    tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue / 18, 0.8, 0.9)) for hue in range(18)
) + ((130, 80, 30),)

SHAPES = ("circle", "square", "triangle", "diamond", "plus")
# Two families of markings: a few large areas, or many edges. The two breeds that share a
# coat colour always take one of each, and differ in silhouette as well.
AREA_TEXTURES = ("solid", "spot", "halves", "outline")
EDGE_TEXTURES = ("hstripes", "vstripes", "checker", "rings")
TEXTURES = AREA_TEXTURES + EDGE_TEXTURES


def pattern_of(class_index: int) -> tuple[str, str, int]:
    """(silhouette, texture, coat colour index) of breed number ``class_index`` (0-based).

    Breeds ``i`` and ``i + 19`` share a coat colour; the first has an area marking, the
    second an edge marking and a silhouette two steps further along ``SHAPES``.
    """
    colour = class_index % len(COAT_COLOURS)
    second = class_index >= len(COAT_COLOURS)
    textures = EDGE_TEXTURES if second else AREA_TEXTURES
    shape = (colour // len(textures) + (2 if second else 0)) % len(SHAPES)
    return SHAPES[shape], textures[colour % len(textures)], colour


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
    rng: np.random.Generator, *others: np.ndarray, min_distance: float = 90.0,
    lightness: tuple[float, float] = (0, 255), tint: float = 25.0,
) -> np.ndarray:
    """A random colour at least ``min_distance`` away from each of ``others``.

    Its mean channel value lies in ``lightness``; the channels differ from it by up to
    ``tint`` (0 gives a grey).
    """
    while True:
        colour = np.clip(rng.uniform(*lightness) + rng.uniform(-tint, tint, size=3), 0, 255)
        if all(np.linalg.norm(colour - o) >= min_distance for o in others):
            return colour


def render_pet(class_index: int, rng: np.random.Generator, image_size: int = 64) -> Image.Image:
    """One fake photo of breed ``class_index``: a textured silhouette on a noisy background."""
    shape, texture, coat = pattern_of(class_index)
    n = image_size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5

    body = np.clip(np.array(COAT_COLOURS[coat], dtype=float) + rng.normal(0, 8, size=3), 0, 255)
    background = _distinct_colour(rng, body, lightness=(60, 200), tint=25.0)
    # Area markings are dark, edge markings light; their hue is random.
    marking = _distinct_colour(rng, body, lightness=(0, 80) if texture in AREA_TEXTURES else (180, 255), tint=60.0)

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
    images_dir = root / DATASET_DIR / "images"
    images_dir.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    n_trainval = max(1, round(images_per_class * (1.0 - test_fraction)))
    trainval: list[tuple[str, int]] = []
    test: list[tuple[str, int]] = []
    for class_index, breed in enumerate(BREEDS):
        for number in range(1, images_per_class + 1):
            name = f"{breed.key}_{number}"
            render_pet(class_index, rng, image_size).save(images_dir / f"{name}.jpg", quality=92)
            (trainval if number <= n_trainval else test).append((name, class_index))
    write_annotations(root, trainval, test)
    return root


# --- Things that are not pets ---------------------------------------------------------------
#
# Out-of-distribution checks need images that a pet classifier must refuse. Each kind is
# chosen to be unlike every fake pet in a different way: no object at all (noise, a
# gradient), many small flat objects on a clean background (clip art), or writing.

NON_PET_KINDS = ("noise", "gradient", "shapes", "text")
_WORDS = ("invoice", "total", "meeting", "notes", "the", "quarterly", "report", "hello", "world", "page",
          "receipt", "due", "summary", "draft", "agenda", "2026", "item", "price", "signed", "thanks")


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Colour noise, smoothed at a random scale (from pixel noise to large blotches)."""
    cells = int(rng.integers(max(2, n // 8), n + 1))
    coarse = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse, mode="RGB").resize((n, n), Image.Resampling.BILINEAR), dtype=float)


def _gradient(rng: np.random.Generator, n: int) -> np.ndarray:
    """A smooth linear or radial blend between two random colours: a sky, a wall, a blur."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) + 0.5
    else:
        cx, cy = rng.uniform(0, 1, size=2)
        t = np.hypot(xx - cx, yy - cy) / np.sqrt(2)
    a, b = rng.uniform(0, 255, size=(2, 3))
    return a + np.clip(t, 0, 1)[..., None] * (b - a)


def _shapes(rng: np.random.Generator, n: int) -> Image.Image:
    """Clip art: several small flat rectangles, ellipses and lines on a plain light background."""
    from PIL import ImageDraw

    image = Image.new("RGB", (n, n), tuple(int(c) for c in rng.uniform(200, 255, size=3)))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 9))):
        x0, y0 = rng.uniform(0, 0.8 * n, size=2)
        w, h = rng.uniform(0.08 * n, 0.3 * n, size=2)
        colour = tuple(int(c) for c in rng.uniform(0, 255, size=3))
        box = (x0, y0, x0 + w, y0 + h)
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle(box, fill=colour)
        elif kind == 1:
            draw.ellipse(box, fill=colour)
        else:
            draw.line(box, fill=colour, width=max(1, n // 32))
    return image


def _text(rng: np.random.Generator, n: int) -> Image.Image:
    """Dark lines of words on paper: a screenshot or a scanned page."""
    from PIL import ImageDraw, ImageFont

    paper = rng.uniform(215, 255)
    image = Image.new("RGB", (n, n), tuple(int(c) for c in np.clip(paper + rng.uniform(-10, 10, size=3), 0, 255)))
    draw = ImageDraw.Draw(image)
    size = max(6, int(n * rng.uniform(0.09, 0.16)))
    font = ImageFont.load_default(size=size)
    ink = tuple(int(c) for c in rng.uniform(0, 70, size=3))
    y = rng.uniform(0, size)
    while y < n - size // 2:
        words = rng.choice(_WORDS, size=int(rng.integers(2, 6)))
        draw.text((rng.uniform(0, 0.1 * n), y), " ".join(words), fill=ink, font=font)
        y += size * rng.uniform(1.2, 1.6)
    return image


def render_non_pet(kind: str, rng: np.random.Generator, image_size: int = 64) -> Image.Image:
    """One image of ``kind`` (one of ``NON_PET_KINDS``) that shows no pet at all."""
    n = image_size
    if kind == "noise":
        pixels = _noise(rng, n)
    elif kind == "gradient":
        pixels = _gradient(rng, n) + rng.normal(0, 2, size=(n, n, 3))
    elif kind == "shapes":
        return _shapes(rng, n)
    elif kind == "text":
        return _text(rng, n)
    else:
        raise ValueError(f"unknown non-pet kind {kind!r}; expected one of {NON_PET_KINDS}")
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def make_non_pets(per_kind: int = 10, image_size: int = 64, seed: int = 0) -> list[tuple[str, Image.Image]]:
    """(kind, image) pairs, ``per_kind`` of each of ``NON_PET_KINDS``; the same arguments give the same images."""
    rng = np.random.default_rng(seed)
    return [(kind, render_non_pet(kind, rng, image_size)) for kind in NON_PET_KINDS for _ in range(per_kind)]
