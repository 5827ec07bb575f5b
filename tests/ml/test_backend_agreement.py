"""Every inference backend this machine offers gives a TRAINED model's answers on real image
files: top-1 identical to eager FP32, probabilities within the backend's tolerance.

A random-weight model (the other backend tests) has flat probabilities, where any backend
agrees within 1e-4 by accident; a trained head makes them peaked and the logits large,
which is where reduced precision shows. The model here is ResNet34 at 64 px whose head
(the body stays as initialised) is fitted on fake pets (``ml.synthetic``) until it is
clearly better than chance, saved with ``ml.checkpoints`` like any other model.
"""
from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from ml import backends, calibration
from ml.breeds import BREED_KEYS
from ml.checkpoints import load_checkpoint, save_checkpoint
from ml.data import DATASET_DIR, read_split
from ml.inference import Predictor
from ml.model import build_resnet34, features_and_logits
from ml.synthetic import make_fake_pets, make_non_pets

IMAGE_SIZE = 64
WEIGHT_DECAY = 0.2  # logits within about +-16, as a trained ResNet's
# torch.compile takes 5-15 s per batch shape on two cores, the ONNX export of this model
# 5-10 s (tests/ml/test_backends.py exports one in the quick run): only in the slow run.
AVAILABLE = [
    pytest.param(name, marks=pytest.mark.slow) if name in (backends.COMPILE, backends.ONNX) else name
    for name in backends.available_backends()
    if name != backends.EAGER
]


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory):
    """(checkpoint path, held-out accuracy, held-out image files with labels)."""
    root = make_fake_pets(tmp_path_factory.mktemp("agreement-pets"), images_per_class=8, image_size=IMAGE_SIZE,
                          seed=3, test_fraction=0.25)
    images = root / DATASET_DIR / "images"
    train = [(images / f"{name}.jpg", label) for name, label in read_split(root, "trainval")]
    test = [(images / f"{name}.jpg", label) for name, label in read_split(root, "test")]

    torch.manual_seed(0)
    model = build_resnet34(num_classes=len(BREED_KEYS), weights=None).eval()
    path = tmp_path_factory.mktemp("agreement-model") / "model.pt"
    save_checkpoint(path, model, classes=BREED_KEYS, image_size=IMAGE_SIZE)
    predictor = Predictor(path)  # its preprocessing: what the backends will see

    def features(rows):
        tensors = torch.stack([predictor.preprocess(p) for p, _ in rows])
        with torch.no_grad():
            feats, _ = features_and_logits(model, tensors)
        return feats, torch.tensor([label for _, label in rows])

    train_x, train_y = features(train)
    test_x, test_y = features(test)
    # The body's features are fixed (eval mode, frozen), so fitting the head is a linear
    # classifier on 512 numbers: full-batch AdamW, well under a second. One scale for all
    # features and weight decay keep the weights and logits as moderate as a trained
    # model's (per-feature scaling would give some near-constant features huge weights).
    scale = train_x.std()
    head = torch.nn.Linear(512, len(BREED_KEYS))
    optimizer = torch.optim.AdamW(head.parameters(), lr=0.05, weight_decay=WEIGHT_DECAY)
    for _ in range(300):
        optimizer.zero_grad()
        F.cross_entropy(head(train_x / scale), train_y).backward()
        optimizer.step()
    with torch.no_grad():  # fold the scale into the model's own fc
        model.fc.weight.copy_(head.weight / scale)
        model.fc.bias.copy_(head.bias)
        logits = model.fc(test_x)
    accuracy = (logits.argmax(1) == test_y).float().mean().item()
    fitted = calibration.fit_calibration(train_x, model.fc(train_x).detach(), train_y, seed=0)
    save_checkpoint(path, model, classes=BREED_KEYS, image_size=IMAGE_SIZE, calibration=fitted,
                    metrics={"accuracy": accuracy})
    return path, accuracy, test


@pytest.fixture(scope="module")
def photos(trained_checkpoint):
    """The held-out fake pets as files, and a few things that are not pets, as JPEG bytes."""
    _, _, test = trained_checkpoint
    others = []
    for _, image in make_non_pets(per_kind=1, image_size=96, seed=5):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        others.append(io.BytesIO(buffer.getvalue()))
    return [path for path, _ in test] + others


@pytest.fixture(scope="module")
def reference(trained_checkpoint, photos):
    predictor = Predictor(trained_checkpoint[0])
    tensors = [predictor.preprocess(photo) for photo in photos]
    for photo in photos:
        if isinstance(photo, io.BytesIO):
            photo.seek(0)
    return tensors, predictor.classify_batch(tensors, k=len(BREED_KEYS))


def test_the_model_is_trained(trained_checkpoint, reference):
    _, accuracy, test = trained_checkpoint
    assert accuracy >= 10 / len(BREED_KEYS)  # chance is 1/37; fitted heads reach far more
    _, results = reference
    # Peaked probabilities, as a trained model gives: where reduced precision can show.
    assert max(r.top_k[0].probability for r in results) > 0.5
    assert load_checkpoint(trained_checkpoint[0]).calibration  # verdicts from a fitted calibration


@pytest.mark.parametrize("name", AVAILABLE)
def test_backend_agrees_with_eager_fp32_on_a_trained_model(trained_checkpoint, reference, name, tmp_path):
    tensors, expected = reference
    predictor = Predictor(trained_checkpoint[0], backend=name, backend_cache_dir=tmp_path)
    tolerance = predictor.backend.tolerance
    assert tolerance == (backends.BF16_TOLERANCE if name == backends.BF16 else backends.FP32_TOLERANCE)

    results = predictor.classify_batch(tensors, k=len(BREED_KEYS))
    worst = 0.0
    for got, want in zip(results, expected, strict=True):
        assert got.top_k[0].label == want.top_k[0].label
        got_p = dict(got.top_k)
        worst = max(worst, max(abs(got_p[label] - p) for label, p in want.top_k))
        if tolerance == backends.FP32_TOLERANCE:
            assert got.verdict == want.verdict
    assert worst <= tolerance, f"{name}: probabilities differ by up to {worst:.2g} (tolerance {tolerance:g})"
