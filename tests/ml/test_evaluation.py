"""Metrics on hand-made logits whose right answers are known, and the figures drawn from them."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ml import plots
from ml.evaluation import (
    Evaluation,
    accuracy,
    atomic_path,
    collect_logits,
    confusion_matrix,
    error_rate,
    evaluate,
    most_confused,
    per_class_metrics,
    top_k_accuracy,
    top_losses,
    write_json,
)
from ml.model import build_resnet34

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_valid_png(path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        assert min(image.size) >= 200


def _logits(predicted, n_classes=4, confidence=3.0):
    """Logits whose top-1 is ``predicted`` (and second choice is the next class)."""
    logits = torch.zeros(len(predicted), n_classes)
    for row, p in enumerate(predicted):
        logits[row, p] = confidence
        logits[row, (p + 1) % n_classes] = confidence / 2
    return logits


# actual:    0  0  1  1  1  2  2  3
# predicted: 0  1  1  1  0  2  1  1
TARGETS = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3])
PREDICTED = [0, 1, 1, 1, 0, 2, 1, 1]
CLASSES = ["Abyssinian", "beagle", "pug", "Sphynx"]


def test_accuracy_error_rate_and_top5():
    logits = _logits(PREDICTED)
    assert accuracy(logits, TARGETS) == pytest.approx(4 / 8)
    assert error_rate(logits, TARGETS) == pytest.approx(4 / 8)
    assert top_k_accuracy(logits, TARGETS, k=1) == pytest.approx(4 / 8)
    # top-2 adds rows whose target is predicted+1: (0 -> 1) actual 1, (1 -> 2) actual 2... counted below
    top2 = [t in (p, (p + 1) % 4) for p, t in zip(PREDICTED, TARGETS.tolist(), strict=True)]
    assert top_k_accuracy(logits, TARGETS, k=2) == pytest.approx(sum(top2) / 8)
    assert top_k_accuracy(logits, TARGETS, k=5) == 1.0  # k larger than the classes: everything


def test_confusion_matrix_rows_are_actual_columns_predicted():
    matrix = confusion_matrix(torch.tensor(PREDICTED), TARGETS, 4)
    assert matrix.tolist() == [
        [1, 1, 0, 0],
        [1, 2, 0, 0],
        [0, 1, 1, 0],
        [0, 1, 0, 0],
    ]


def test_per_class_precision_recall_f1():
    matrix = confusion_matrix(torch.tensor(PREDICTED), TARGETS, 4)
    rows = {row["class"]: row for row in per_class_metrics(matrix, CLASSES)}
    assert rows["beagle"]["precision"] == pytest.approx(2 / 5)
    assert rows["beagle"]["recall"] == pytest.approx(2 / 3)
    assert rows["beagle"]["f1"] == pytest.approx(2 * (2 / 5) * (2 / 3) / (2 / 5 + 2 / 3))
    assert rows["beagle"]["support"] == 3
    assert rows["beagle"]["name"] == "Beagle"
    assert rows["pug"]["precision"] == 1.0
    assert rows["pug"]["recall"] == 0.5
    assert rows["Sphynx"] == {"class": "Sphynx", "name": "Sphynx", "precision": 0.0, "recall": 0.0,
                              "f1": 0.0, "support": 1}  # never predicted: 0, not NaN


def test_most_confused_pairs_largest_first():
    matrix = np.array([[5, 3, 0], [1, 4, 2], [3, 0, 9]])
    pairs = most_confused(matrix, ["a", "b", "c"])
    assert [tuple(p) for p in pairs] == [("a", "b", 3), ("c", "a", 3), ("b", "c", 2), ("b", "a", 1)]
    assert [tuple(p) for p in most_confused(matrix, ["a", "b", "c"], min_count=3)] == [("a", "b", 3), ("c", "a", 3)]


def test_top_losses_are_the_worst_predictions():
    logits = _logits(PREDICTED)
    worst = top_losses(logits, TARGETS, k=3)
    losses = torch.nn.functional.cross_entropy(logits, TARGETS, reduction="none")
    assert [t.loss for t in worst] == pytest.approx(sorted(losses.tolist(), reverse=True)[:3])
    assert all(t.predicted != t.actual for t in worst)
    first = worst[0]
    probabilities = logits[first.index].softmax(0)
    assert first.probability == pytest.approx(probabilities.max().item())
    assert first.actual_probability == pytest.approx(probabilities[first.actual].item())
    assert first.loss == pytest.approx(-math.log(first.actual_probability), rel=1e-5)


def test_metrics_json_agrees_with_its_confusion_matrix(tmp_path):
    evaluation = Evaluation(_logits(PREDICTED), TARGETS, CLASSES)
    metrics = json.loads(write_json(tmp_path / "metrics.json", evaluation.to_metrics("test")).read_text())
    matrix = np.array(metrics["confusion_matrix"])
    assert metrics["split"] == "test"
    assert metrics["num_images"] == matrix.sum() == 8
    assert metrics["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert metrics["error_rate"] == pytest.approx(1 - metrics["accuracy"])
    for i, row in enumerate(metrics["per_class"]):
        assert row["support"] == matrix[i].sum()
        assert row["recall"] == pytest.approx(matrix[i, i] / matrix[i].sum())
    for pair in metrics["most_confused"]:
        assert matrix[CLASSES.index(pair["actual"]), CLASSES.index(pair["predicted"])] == pair["count"]


def test_collect_logits_keeps_loader_order_and_switches_to_eval_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.Dropout(0.5))
    images, labels = torch.randn(10, 3, 2, 2), torch.arange(10) % 4
    logits, targets = collect_logits(model.train(), DataLoader(TensorDataset(images, labels), batch_size=3))
    assert not model.training
    assert torch.equal(targets, labels)
    with torch.no_grad():
        assert torch.allclose(logits, model(images))  # eval mode: dropout off, same as one big batch


def test_evaluate_keeps_the_features_the_head_saw():
    """The penultimate features come from the same pass as the logits: the head maps one to the other."""
    torch.manual_seed(0)
    model = build_resnet34(num_classes=5, weights=None)
    images, labels = torch.randn(6, 3, 32, 32), torch.arange(6) % 5
    evaluation = evaluate(model, DataLoader(TensorDataset(images, labels), batch_size=4), [str(i) for i in range(5)])
    assert evaluation.features.shape == (6, 512)
    with torch.no_grad():
        assert torch.allclose(model.fc(evaluation.features), evaluation.logits, atol=1e-5)
    assert not model.fc._forward_pre_hooks


def test_atomic_path_leaves_nothing_behind_when_interrupted(tmp_path):
    target = tmp_path / "metrics.json"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:  # noqa: PT012  (the interruption is the point)
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert list(tmp_path.iterdir()) == [target]


def test_every_figure_is_a_readable_png(tmp_path):
    """All figures from a small fake history and evaluation (the real run is in test_training)."""
    history = {
        "param_groups": ["early", "late", "head"],
        "epochs": [
            {"epoch": e, "stage": "frozen" if e == 1 else "unfrozen", "train_loss": 2 / e, "valid_loss": 2.2 / e,
             "accuracy": 0.3 * e, "error_rate": 1 - 0.3 * e, "train_accuracy": 0.25 * e, "time": 1.0}
            for e in (1, 2, 3)
        ],
        "steps": [
            {"step": s, "epoch": (s - 1) // 4 + 1, "stage": "frozen" if s <= 4 else "unfrozen",
             "lr": [1e-4 * s, 1e-3 * s, 1e-2 * s], "loss": 3 / s} for s in range(1, 13)
        ],
    }
    classes = [f"breed_{i}" for i in range(37)]
    targets = torch.arange(74) % 37
    evaluation = Evaluation(_logits(((targets + (targets % 5 == 0)) % 37).tolist(), 37), targets, classes)
    images = TensorDataset(torch.rand(74, 3, 32, 32), targets)
    written = {**plots.save_training_figures(history, tmp_path),
               **plots.save_evaluation_figures(evaluation, images, tmp_path, (0.5,) * 3, (0.25,) * 3)}
    assert set(written) == set(plots.FIGURES)
    for name, path in written.items():
        assert path == tmp_path / f"{name}.png"
        assert_valid_png(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.png" for name in plots.FIGURES)
