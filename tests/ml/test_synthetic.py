"""The fake dataset must be the real dataset's layout, load in torchvision as is, and not be trivial."""
from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import OxfordIIITPet

from ml.breeds import BREED_KEYS, BREEDS, CAT, display_name
from ml.data import LIST_HEADER, read_split
from ml.synthetic import NON_PET_KINDS, make_fake_pets, make_non_pets, pattern_of, render_non_pet

from .conftest import TEST_PER_CLASS, TRAINVAL_PER_CLASS

REAL_LIST_HEADER = """\
#Image CLASS-ID SPECIES BREED ID
#ID: 1:37 Class ids
#SPECIES: 1:Cat 2:Dog
#BREED ID: 1-25:Cat 1:12:Dog
#All images with 1st letter as captial are cat images
#images with small first letter are dog images
"""


def _rows(path):
    return [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]


def test_layout_matches_the_real_dataset(tiny_pets):
    base = tiny_pets / "oxford-iiit-pet"
    list_txt = (base / "annotations" / "list.txt").read_text()
    assert list_txt.startswith(REAL_LIST_HEADER)
    assert LIST_HEADER == REAL_LIST_HEADER

    rows = _rows(base / "annotations" / "list.txt")
    assert len(rows) == 37 * 4
    breed_numbers = {CAT: set(), "dog": set()}
    for name, class_id, species, breed_id in rows:
        breed = BREEDS[int(class_id) - 1]
        assert name.rsplit("_", 1)[0] == breed.key  # exact case: "Abyssinian_1", "beagle_3"
        assert species == ("1" if breed.species == CAT else "2")
        breed_numbers[breed.species].add(int(breed_id))
        assert (base / "images" / f"{name}.jpg").is_file()
    assert breed_numbers[CAT] == set(range(1, 13))
    assert breed_numbers["dog"] == set(range(1, 26))
    assert (base / "images" / "Abyssinian_1.jpg").is_file()
    assert (base / "images" / "yorkshire_terrier_4.jpg").is_file()

    trainval = _rows(base / "annotations" / "trainval.txt")
    test = _rows(base / "annotations" / "test.txt")
    assert len(trainval) == 37 * 3
    assert len(test) == 37
    assert sorted(trainval + test) == sorted(rows)
    assert not (base / "annotations" / "trainval.txt").read_text().startswith("#")


@pytest.mark.parametrize("split", ["trainval", "test"])
def test_torchvision_loads_it_with_correct_labels(fake_pets, split):
    dataset = OxfordIIITPet(fake_pets, split=split, target_types="category")
    assert len(dataset) == 37 * (TRAINVAL_PER_CLASS if split == "trainval" else TEST_PER_CLASS)
    assert dataset.classes == [display_name(key) for key in BREED_KEYS]
    rows = read_split(fake_pets, split)  # our reading of the annotation file, row by row
    for index in range(0, len(dataset), 97):
        image, label = dataset[index]
        name, expected = rows[index]
        assert label == expected
        assert name.rsplit("_", 1)[0] == BREED_KEYS[label]
        assert image.mode == "RGB"
        assert image.size == (64, 64)


def test_same_arguments_write_the_same_files_and_seeds_differ(tmp_path):
    def digest(root):
        files = sorted((root / "oxford-iiit-pet").rglob("*.*"))
        return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()

    a = make_fake_pets(tmp_path / "a", images_per_class=1, image_size=32, seed=3)
    b = make_fake_pets(tmp_path / "b", images_per_class=1, image_size=32, seed=3)
    c = make_fake_pets(tmp_path / "c", images_per_class=1, image_size=32, seed=4)
    assert digest(a) == digest(b) != digest(c)


def test_every_breed_has_its_own_pattern_and_colour_alone_never_decides():
    patterns = [pattern_of(i) for i in range(37)]
    assert len(set(patterns)) == 37
    for a in patterns:
        for b in patterns:
            if a != b and a[2] == b[2]:  # same coat colour: silhouette and texture both differ
                assert a[0] != b[0]
                assert a[1] != b[1]
    assert max(Counter(p[2] for p in patterns).values()) == 2


def test_mean_colour_is_far_from_enough(fake_pets):
    """A trivial classifier (nearest mean colour per breed) stays far below what a CNN must reach.

    Coat colour is a real cue (each colour is shared by two breeds), but the background,
    the markings' hue and the pet's size vary, so the image's mean colour says little.
    """
    def features(split):
        rows = read_split(fake_pets, split)
        images = fake_pets / "oxford-iiit-pet" / "images"
        xs = np.stack([np.asarray(Image.open(images / f"{name}.jpg"), dtype=float).reshape(-1, 3).mean(0)
                       for name, _ in rows])
        return xs, np.array([label for _, label in rows])

    train_x, train_y = features("trainval")
    test_x, test_y = features("test")
    centroids = np.stack([train_x[train_y == c].mean(0) for c in range(37)])
    predicted = np.argmin(((test_x[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == test_y).mean() < 0.3


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="images_per_class must be at least 1"):
        make_fake_pets(tmp_path, images_per_class=0)
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\)"):
        make_fake_pets(tmp_path, test_fraction=1.0)


def test_non_pets_come_in_every_kind_and_repeat_with_their_seed():
    images = make_non_pets(per_kind=3, image_size=48, seed=7)
    assert [kind for kind, _ in images] == [kind for kind in NON_PET_KINDS for _ in range(3)]
    assert all(image.mode == "RGB" and image.size == (48, 48) for _, image in images)
    again = make_non_pets(per_kind=3, image_size=48, seed=7)
    other = make_non_pets(per_kind=3, image_size=48, seed=8)
    pixels = [np.asarray(image) for _, image in images]
    assert all(np.array_equal(a, np.asarray(b)) for a, (_, b) in zip(pixels, again, strict=True))
    assert not all(np.array_equal(a, np.asarray(b)) for a, (_, b) in zip(pixels, other, strict=True))
    assert len({a.tobytes() for a in pixels}) == len(pixels)  # no two alike


def test_non_pets_look_like_their_kind():
    rng = np.random.default_rng(0)
    noise, gradient, shapes, text = (np.asarray(render_non_pet(kind, rng, 64), dtype=float) for kind in NON_PET_KINDS)
    def roughness(pixels):  # mean change between neighbouring pixels
        return np.abs(np.diff(pixels, axis=1)).mean()
    assert roughness(gradient) < 3 < roughness(noise)
    for drawn in (shapes, text):  # a light plain background covers most of the picture
        background = np.all(drawn == drawn[0, 0], axis=-1).mean() if drawn[0, 0].mean() > 190 else 0.0
        assert background > 0.4
    assert text.min() < 90  # dark ink
    with pytest.raises(ValueError, match="unknown non-pet kind"):
        render_non_pet("cat", rng)
