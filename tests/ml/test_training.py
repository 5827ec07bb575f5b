"""Training: one real run shared by most tests (it must learn), plus short runs for mechanics.

The shared run trains ResNet34 from scratch (no pretrained weights exist here) on the
generated dataset at 32 pixels. It is the module's one expensive fixture; everything
it produces is checked by the tests that use it.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from ml import training
from ml.breeds import BREED_KEYS
from ml.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from ml.config import FullOptions, RunConfig
from ml.data import load_pet_datasets, make_loader, read_split
from ml.evaluation import collect_logits
from ml.inference import Predictor
from ml.model import WeightsUnavailableError, build_resnet34, layer_groups
from ml.outputs import run_evaluation
from ml.plots import FIGURES
from ml.progress import FROZEN, UNFROZEN
from ml.recipes import full
from ml.recipes.full import fit, run_full
from ml.training import make_optimizer, stage_lrs

from .test_evaluation import assert_valid_png

# The shared learning run takes about three minutes on two cores; the first test pays for it.
# Every test that trains is marked slow: `-m "not slow"` trains nothing.
pytestmark = pytest.mark.timeout(600)
slow = pytest.mark.slow

LEARNING_CONFIG = dict(
    weights=None, image_size=32, batch_size=64, freeze_epochs=1, epochs=4, lr=8e-3, lr_mult=3.0,
    crop_scale=(0.7, 1.0), workers=0, seed=0, threads=2, progress=True,
)



def full_config(data, **options) -> RunConfig:
    """A RunConfig from flat options: those of the full part (FullOptions) go there."""
    names = {f.name for f in dataclasses.fields(FullOptions)}
    part = {name: options.pop(name) for name in list(options) if name in names}
    return RunConfig(data=str(data), **options, full=FullOptions(**part))


@pytest.fixture(scope="module")
def run(fake_pets, tmp_path_factory):
    config = full_config(fake_pets, **LEARNING_CONFIG)
    lines: list[str] = []
    result = run_full(config, tmp_path_factory.mktemp("run"), log=lines.append)
    return config, result, lines


# --- the shared run -----------------------------------------------------------------------

@slow
def test_learning_is_real(run):
    config, result, _ = run
    final = result.history["epochs"][-1]
    assert final["accuracy"] >= 0.90, result.history["epochs"]
    assert result.metrics["valid"]["accuracy"] == pytest.approx(final["accuracy"])
    assert result.metrics["split"] == "test"
    assert result.metrics["accuracy"] >= 0.85
    first_unfrozen = next(row for row in result.history["epochs"] if row["stage"] == UNFROZEN)
    assert final["valid_loss"] < first_unfrozen["valid_loss"]


@slow
def test_run_directory_layout(run):
    _, result, _ = run
    out = result.out_dir
    assert {p.name for p in out.iterdir()} == {"model.pt", "history.json", "metrics.json", "figures"}
    assert result.checkpoint == out / "model.pt"
    assert not list(out.rglob("*.tmp*")), "temporary files left behind"


@slow
def test_every_figure_is_a_valid_png(run):
    _, result, _ = run
    assert sorted(p.name for p in (result.out_dir / "figures").iterdir()) == sorted(f"{f}.png" for f in FIGURES)
    for name in FIGURES:
        assert result.figures[name] == result.out_dir / "figures" / f"{name}.png"
        assert_valid_png(result.figures[name])


@slow
def test_metrics_json_is_consistent_with_its_confusion_matrix(run, fake_pets):
    _, result, _ = run
    metrics = json.loads((result.out_dir / "metrics.json").read_text())
    assert metrics == result.metrics
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (37, 37)
    assert metrics["classes"] == BREED_KEYS
    test_labels = [label for _, label in read_split(fake_pets, "test")]
    assert metrics["num_images"] == matrix.sum() == len(test_labels)
    assert matrix.sum(axis=1).tolist() == np.bincount(test_labels, minlength=37).tolist()
    assert metrics["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert metrics["error_rate"] == pytest.approx(1 - metrics["accuracy"])
    assert metrics["accuracy"] <= metrics["top5_accuracy"] <= 1
    for i, row in enumerate(metrics["per_class"]):
        assert row["class"] == BREED_KEYS[i]
        assert row["support"] == matrix[i].sum()
        assert row["recall"] == pytest.approx(matrix[i, i] / matrix[i].sum())
        predicted = matrix[:, i].sum()
        assert row["precision"] == pytest.approx(matrix[i, i] / predicted if predicted else 0.0)
    off_diagonal = matrix - np.diag(np.diag(matrix))
    counts = [pair["count"] for pair in metrics["most_confused"]]
    assert counts == sorted(counts, reverse=True)
    assert counts[:1] == ([off_diagonal.max()] if off_diagonal.any() else [])
    for pair in metrics["most_confused"]:
        assert matrix[BREED_KEYS.index(pair["actual"]), BREED_KEYS.index(pair["predicted"])] == pair["count"]


@slow
def test_checkpoint_loads_in_the_predictor_and_agrees_with_the_evaluation(run, fake_pets):
    config, result, _ = run
    checkpoint = load_checkpoint(result.checkpoint)
    assert checkpoint.classes == BREED_KEYS
    assert checkpoint.image_size == 32
    assert checkpoint.metrics == result.metrics
    assert checkpoint.training_args["weights"] is None
    assert checkpoint.training_args["seed"] == 0
    assert {k: checkpoint.training_args[k] for k in config.to_dict("full")} == config.to_dict("full")

    predictor = Predictor(checkpoint)
    rows = read_split(fake_pets, "test")
    images = [fake_pets / "oxford-iiit-pet" / "images" / f"{name}.jpg" for name, _ in rows]
    top1 = [r.top_k[0].label for r in predictor.classify_batch(images, k=1)]
    accuracy = np.mean([label == BREED_KEYS[actual] for label, (_, actual) in zip(top1, rows, strict=True)])
    # Same preprocessing as evaluation, so exactly the same predictions.
    assert accuracy == pytest.approx(result.metrics["accuracy"], abs=1e-6)


@slow
def test_evaluating_the_saved_model_reproduces_the_run_metrics(run, fake_pets, tmp_path):
    """run_evaluation (the evaluate command's core) on the checkpoint alone gives the same numbers."""
    _, result, _ = run
    metrics, figures = run_evaluation(result.checkpoint, fake_pets, tmp_path, split="test", workers=0,
                                      progress=False)
    expected = {k: v for k, v in result.metrics.items() if k != "valid"}
    assert metrics.keys() == expected.keys()
    assert metrics["confusion_matrix"] == expected["confusion_matrix"]
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"])
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    for path in figures.values():
        assert_valid_png(path)


@slow
def test_history_per_epoch_and_per_step(run):
    config, result, lines = run
    epochs, steps = result.history["epochs"], result.history["steps"]
    assert [row["stage"] for row in epochs] == [FROZEN] * config.full.freeze_epochs + [UNFROZEN] * config.full.epochs
    for row in epochs:
        assert set(row) >= {"epoch", "train_loss", "valid_loss", "accuracy", "error_rate", "time"}
        assert row["error_rate"] == pytest.approx(1 - row["accuracy"])
        assert row["time"] > 0
    steps_per_epoch = {sum(s["epoch"] == e["epoch"] for s in steps) for e in epochs}
    assert len(steps_per_epoch) == 1
    assert steps_per_epoch.pop() == len(steps) // len(epochs)
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    assert all(len(s["lr"]) == 3 and s["loss"] > 0 for s in steps)
    summaries = [line for line in lines if line.startswith("epoch ")]
    assert len(summaries) == len(epochs)
    assert "accuracy" in summaries[-1]
    assert "valid_loss" in summaries[-1]


@slow
def test_one_cycle_with_discriminative_learning_rates(run):
    config, result, _ = run
    steps = result.history["steps"]
    for stage in (FROZEN, UNFROZEN):
        lrs = np.array([s["lr"] for s in steps if s["stage"] == stage])
        peaks = lrs.max(axis=0)
        assert peaks == pytest.approx(stage_lrs(config.full.lr, stage, config.full.lr_mult), rel=0.02)
        assert lrs[0, -1] < peaks[-1] / 4
        assert lrs[-1, -1] < peaks[-1] / 100
    head, late, early = (np.array([s["lr"][g] for s in steps if s["stage"] == UNFROZEN]) for g in (2, 1, 0))
    assert np.allclose(head / early, config.full.lr_mult)
    assert np.allclose(head / late, config.full.lr_mult ** 0.5)


def test_stage_learning_rates_follow_fastai():
    assert stage_lrs(2e-3, FROZEN) == pytest.approx([2e-4, 2e-4, 2e-3])
    assert stage_lrs(2e-3, UNFROZEN, lr_mult=100) == pytest.approx([1e-5, 1e-4, 1e-3])


def test_optimizer_param_groups_hold_the_layer_groups_and_their_rates():
    model = build_resnet34(weights=None)
    lrs = stage_lrs(1e-3, UNFROZEN, lr_mult=100)
    optimizer = make_optimizer(model, lrs, weight_decay=0.01)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(lrs)
    for group, params in zip(optimizer.param_groups, layer_groups(model), strict=True):
        assert [id(p) for p in group["params"]] == [id(p) for p in params]
        assert group["weight_decay"] == 0.01


# --- short runs on the tiny dataset --------------------------------------------------------

def _tiny_loaders(tiny_pets, seed=0):
    datasets = load_pet_datasets(tiny_pets, image_size=32, seed=seed, with_test=False)
    train = make_loader(Subset(datasets.train, range(32)), 16, train=True, seed=seed)
    return train, make_loader(datasets.valid, 32, train=False)


@slow
def test_freezing_really_freezes(tiny_pets):
    torch.manual_seed(0)
    model = build_resnet34(weights=None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, valid = _tiny_loaders(tiny_pets)
    history = fit(model, train, valid, freeze_epochs=1, epochs=0, lr=1e-2, progress=False, log=lambda _: None)
    after = model.state_dict()
    convs = [k for k in before if "conv" in k or "downsample.0" in k]
    assert len(convs) == 33 + 3  # 33 convolutions on the main path, 3 in downsampling shortcuts
    assert all(torch.equal(before[k], after[k]) for k in convs), "a body convolution moved while frozen"
    assert not torch.equal(before["fc.weight"], after["fc.weight"])
    assert not torch.equal(before["fc.bias"], after["fc.bias"])
    assert not torch.equal(before["bn1.weight"], after["bn1.weight"])  # BatchNorm trains (fastai's train_bn)
    assert len(history.epochs) == 1
    assert history.epochs[0]["stage"] == FROZEN
    assert all(p.requires_grad for p in model.parameters())  # handed back unfrozen


@slow
def test_seeded_cpu_runs_are_deterministic(tiny_pets):
    def short_run(seed):
        torch.manual_seed(seed)
        model = build_resnet34(weights=None)
        train, valid = _tiny_loaders(tiny_pets, seed)
        history = fit(model, train, valid, freeze_epochs=1, epochs=1, lr=1e-3, progress=False, log=lambda _: None)
        return model.state_dict(), [s["loss"] for s in history.steps]

    (a, losses_a), (b, losses_b), (_, losses_c) = short_run(1), short_run(1), short_run(2)
    assert losses_a == losses_b
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert losses_a != losses_c


def _tiny_config(tiny_pets, **overrides):
    return full_config(tiny_pets, **{**LEARNING_CONFIG, "epochs": 1, "batch_size": 16, **overrides})


@slow
def test_fine_tuning_starts_from_an_existing_checkpoint(run, tiny_pets, tmp_path):
    _, result, _ = run
    # The tiny dataset comes from the same generator, so the trained model knows its breeds;
    # with a negligible learning rate the first epoch shows where the run started.
    config = _tiny_config(
        tiny_pets, init_checkpoint=str(result.checkpoint), freeze_epochs=0, lr=1e-9, evaluate_test=False
    )
    tuned = run_full(config, tmp_path, log=lambda _: None)
    assert tuned.history["epochs"][0]["accuracy"] >= 0.7
    assert load_checkpoint(tuned.checkpoint).training_args["init_checkpoint"] == str(result.checkpoint)
    _, valid = _tiny_loaders(tiny_pets)
    logits, targets = collect_logits(build_resnet34(weights=None), valid)  # where a new model starts
    assert (logits.argmax(1) == targets).float().mean() < 0.3


def test_checkpoint_for_other_classes_cannot_be_fine_tuned(tiny_pets, tmp_path):
    other = save_checkpoint(tmp_path / "other.pt", build_resnet34(num_classes=2, weights=None), classes=["cat", "dog"])
    with pytest.raises(CheckpointError, match="cannot be fine-tuned"):
        run_full(_tiny_config(tiny_pets, init_checkpoint=str(other)), tmp_path / "out", log=lambda _: None)
    assert not (tmp_path / "out" / "model.pt").exists()


@pytest.mark.parametrize("weights", ["imagenet", "missing.pth"])
def test_missing_weights_stop_the_run_before_training(tiny_pets, tmp_path, monkeypatch, weights):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    monkeypatch.setattr(
        "torchvision.models._api.load_state_dict_from_url", lambda *a, **k: (_ for _ in ()).throw(OSError("no network"))
    )
    monkeypatch.setattr(full, "fit", lambda *a, **k: pytest.fail("training started"))
    path = weights if weights == "imagenet" else str(tmp_path / weights)
    with pytest.raises(WeightsUnavailableError, match="--no-pretrained"):
        run_full(_tiny_config(tiny_pets, weights=path), tmp_path / "out", log=lambda _: None)
    assert not (tmp_path / "out" / "model.pt").exists()


@slow
def test_interrupted_training_leaves_no_checkpoint(tiny_pets, tmp_path, monkeypatch):
    calls = []
    real = training.train_one_epoch

    def interrupt_in_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", interrupt_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_full(_tiny_config(tiny_pets), tmp_path, log=lambda _: None)
    assert not (tmp_path / "model.pt").exists()


@slow
def test_interrupt_while_saving_leaves_no_half_written_checkpoint(tiny_pets, tmp_path, monkeypatch):
    def save_half_then_interrupt(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr("ml.checkpoints.torch.save", save_half_then_interrupt)
    monkeypatch.setattr("ml.plots.save_evaluation_figures", lambda *a, **k: {})  # not what is tested here
    with pytest.raises(KeyboardInterrupt):
        run_full(_tiny_config(tiny_pets, freeze_epochs=0, evaluate_test=False), tmp_path, log=lambda _: None)
    assert not (tmp_path / "model.pt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.pt")]
