"""Dataset loading: official splits through torchvision, stratified validation, clear errors."""
from __future__ import annotations

import shutil
from collections import Counter

import pytest
import torch

from ml.data import (
    DATASET_URLS,
    DatasetError,
    check_dataset,
    eval_transform,
    load_pet_datasets,
    load_split,
    make_loader,
    open_image,
    read_split,
    stratified_split,
)
from ml.synthetic import make_fake_pets

from .conftest import TEST_PER_CLASS, TRAINVAL_PER_CLASS


def _copy(root, tmp_path):
    """A private copy of a generated dataset, for tests that break it."""
    return shutil.copytree(root, tmp_path / "copy")


def test_official_splits_and_stratified_validation(fake_pets):
    datasets = load_pet_datasets(fake_pets, image_size=32, valid_fraction=0.2, seed=7)
    trainval = read_split(fake_pets, "trainval")
    assert len(datasets.train) + len(datasets.valid) == len(trainval) == 37 * TRAINVAL_PER_CLASS
    assert len(datasets.test) == 37 * TEST_PER_CLASS

    valid_indices = datasets.valid.indices
    train_indices = datasets.train.datasets[0].indices
    assert not set(valid_indices) & set(train_indices)
    per_class = Counter(trainval[i][1] for i in valid_indices)
    assert set(per_class.values()) == {round(TRAINVAL_PER_CLASS * 0.2)}  # every breed, the same share
    image, label = datasets.valid[0]
    assert image.shape == (3, 32, 32)
    assert image.dtype == torch.float32
    assert label == trainval[valid_indices[0]][1]


def test_validation_split_is_seeded():
    labels = [i % 5 for i in range(100)]
    assert stratified_split(labels, 0.2, seed=1) == stratified_split(labels, 0.2, seed=1)
    assert stratified_split(labels, 0.2, seed=1) != stratified_split(labels, 0.2, seed=2)
    train, valid = stratified_split([0, 0, 1, 1, 1, 2], 0.1, seed=0)
    assert sorted(train + valid) == list(range(6))
    assert {[0, 0, 1, 1, 1, 2][i] for i in valid} == {0, 1}  # a class of one image stays in train


def test_validation_and_test_images_are_prepared_like_the_predictor(fake_pets):
    """Same tensor as Predictor.preprocess: open_image (EXIF, RGB) then eval_transform."""
    test = load_pet_datasets(fake_pets, image_size=32).test
    name, _ = read_split(fake_pets, "test")[5]
    expected = eval_transform(32)(open_image(fake_pets / "oxford-iiit-pet" / "images" / f"{name}.jpg"))
    assert torch.equal(test[5][0], expected)


def test_extra_roots_only_add_training_images(fake_pets, tiny_pets):
    plain = load_pet_datasets(fake_pets, image_size=32, seed=3)
    extended = load_pet_datasets(fake_pets, image_size=32, seed=3, extra_roots=[tiny_pets])
    assert len(extended.train) == len(plain.train) + len(read_split(tiny_pets, "trainval"))
    assert extended.valid.indices == plain.valid.indices
    assert len(extended.test) == len(plain.test)
    assert extended.train[len(plain.train)][1] == read_split(tiny_pets, "trainval")[0][1]


def test_extra_root_needs_only_trainval(fake_pets, tmp_path):
    extra = make_fake_pets(tmp_path / "reviewed", images_per_class=1, image_size=32, test_fraction=0.0)
    (extra / "oxford-iiit-pet" / "annotations" / "test.txt").unlink()
    datasets = load_pet_datasets(fake_pets, image_size=32, extra_roots=[extra])
    assert len(datasets.train.datasets[1]) == 37


def test_loaders_drop_the_last_partial_training_batch_and_shuffle_by_seed(tiny_pets):
    datasets = load_pet_datasets(tiny_pets, image_size=32, seed=0)
    n_train = len(datasets.train)
    first = [y.tolist() for _, y in make_loader(datasets.train, 16, train=True, seed=5)]
    again = [y.tolist() for _, y in make_loader(datasets.train, 16, train=True, seed=5)]
    other = [y.tolist() for _, y in make_loader(datasets.train, 16, train=True, seed=6)]
    assert first == again != other
    assert len(first) == n_train // 16
    assert all(len(batch) == 16 for batch in first)
    ordered = [y for _, ys in make_loader(datasets.valid, 16, train=False) for y in ys.tolist()]
    assert ordered == [datasets.valid[i][1] for i in range(len(datasets.valid))]


# --- one clear error for a missing or incomplete dataset ---------------------------------

def _assert_actionable(error: DatasetError, *needles: str) -> None:
    message = str(error)
    for needle in needles:
        assert needle in message, f"{needle!r} not in: {message}"
    assert DATASET_URLS[0] in message
    assert DATASET_URLS[1] in message
    assert "--download" in message


def test_missing_directory(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_pet_datasets(tmp_path / "nowhere")
    _assert_actionable(info.value, "nowhere does not exist")


def test_directory_without_the_dataset(tmp_path):
    with pytest.raises(DatasetError) as info:
        check_dataset(tmp_path)
    _assert_actionable(info.value, "has no oxford-iiit-pet/ directory")


def test_pointing_at_the_dataset_folder_itself_suggests_its_parent(tiny_pets):
    with pytest.raises(DatasetError) as info:
        check_dataset(tiny_pets / "oxford-iiit-pet")
    _assert_actionable(info.value, f"its parent {tiny_pets} is the data folder")


def test_missing_images_directory(tiny_pets, tmp_path):
    root = _copy(tiny_pets, tmp_path)
    shutil.rmtree(root / "oxford-iiit-pet" / "images")
    with pytest.raises(DatasetError) as info:
        load_pet_datasets(root)
    _assert_actionable(info.value, "images is missing (from images.tar.gz)")


def test_missing_split_file(tiny_pets, tmp_path):
    root = _copy(tiny_pets, tmp_path)
    (root / "oxford-iiit-pet" / "annotations" / "trainval.txt").unlink()
    with pytest.raises(DatasetError) as info:
        load_pet_datasets(root)
    _assert_actionable(info.value, "annotations/trainval.txt is missing (from annotations.tar.gz)")


def test_images_listed_but_missing(tiny_pets, tmp_path):
    root = _copy(tiny_pets, tmp_path)
    (root / "oxford-iiit-pet" / "images" / "beagle_2.jpg").unlink()
    (root / "oxford-iiit-pet" / "images" / "Sphynx_4.jpg").unlink()  # a test image
    with pytest.raises(DatasetError) as info:
        check_dataset(root)
    _assert_actionable(info.value, "1 of the 111 images listed in trainval.txt are missing", "beagle_2.jpg",
                       "1 of the 37 images listed in test.txt", "Sphynx_4.jpg")


def test_wrong_layout_rows(tiny_pets, tmp_path):
    root = _copy(tiny_pets, tmp_path)
    annotations = root / "oxford-iiit-pet" / "annotations"
    (annotations / "test.txt").write_text("Abyssinian_4 2 1 1\n")  # the class id of another breed
    (annotations / "trainval.txt").write_text("Abyssinian_1,1,1,1\n")  # not space separated
    with pytest.raises(DatasetError) as info:
        check_dataset(root)
    _assert_actionable(info.value, "trainval.txt, line 1: expected 'name class_id species breed_id'",
                       "class id that does not match the breed", "Abyssinian_4 (class 2)")


def test_torchvision_error_is_never_what_the_user_sees(tmp_path):
    """torchvision alone says only 'Dataset not found'; load_split checks first."""
    (tmp_path / "oxford-iiit-pet" / "annotations").mkdir(parents=True)
    with pytest.raises(DatasetError, match="images is missing"):
        load_split(tmp_path, "test")


def test_a_split_that_would_leave_validation_empty_is_refused_with_the_reason():
    with pytest.raises(DatasetError, match="Too few images to hold out a validation split"):
        stratified_split([0, 1, 2], valid_fraction=0.2, seed=0)  # one image per breed
    assert stratified_split([0, 0, 1], valid_fraction=0.2, seed=0)[1]  # one breed with two is enough
