"""Fixtures for the Django-free ``ml`` tests: small fake datasets in the real layout."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ml.synthetic import make_fake_pets

# Two cores: torch's own threads, no oversubscription with data-loading workers.
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def fake_pets(tmp_path_factory) -> Path:
    """The dataset the learning test trains on: 48 images per breed, a quarter of them test."""
    return make_fake_pets(tmp_path_factory.mktemp("pets"), images_per_class=48, image_size=64, seed=0,
                          test_fraction=0.25)


@pytest.fixture(scope="session")
def tiny_pets(tmp_path_factory) -> Path:
    """4 images per breed (3 trainval, 1 test): enough for runs that check mechanics, not learning."""
    return make_fake_pets(tmp_path_factory.mktemp("tiny-pets"), images_per_class=4, image_size=32, seed=1,
                          test_fraction=0.25)
