"""Fixtures for the Django-free ``ml`` tests: small fake datasets in the real layout."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ml.synthetic import make_fake_pets

# Two cores: torch's own threads, no oversubscription with data-loading workers.
torch.set_num_threads(2)


# The dataset the learning test trains on (and most data tests read).
FAKE_PETS = dict(images_per_class=80, image_size=64, seed=0, test_fraction=0.2)
TRAINVAL_PER_CLASS, TEST_PER_CLASS = 64, 16


@pytest.fixture(scope="session")
def fake_pets(tmp_path_factory) -> Path:
    return make_fake_pets(tmp_path_factory.mktemp("pets"), **FAKE_PETS)


@pytest.fixture(scope="session")
def tiny_pets(tmp_path_factory) -> Path:
    """4 images per breed (3 trainval, 1 test): enough for runs that check mechanics, not learning."""
    return make_fake_pets(tmp_path_factory.mktemp("tiny-pets"), images_per_class=4, image_size=64, seed=1,
                          test_fraction=0.25)


@pytest.fixture
def no_cached_weights(tmp_path, monkeypatch):
    """An empty torch hub folder, and a record of every download attempt (each fails: no network)."""
    attempts = []

    def download(url, *args, **kwargs):
        attempts.append(url)
        raise OSError("no network here")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)  # what torchvision's loader calls
    return attempts
