"""The quick recipe (ml.recipes.quick) and its feature cache (ml.features).

No ImageNet weights exist here, so the body is a seeded random ResNet34: its pooled
features still carry colour and some texture, which a linear head turns into a model
far above chance on the generated breeds. Not-slow tests use a handful of images at
32 px; the learning run on the shared generated dataset is marked slow.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from ml import features as features_
from ml import model as model_
from ml import progress
from ml.breeds import BREED_KEYS, NUM_CLASSES
from ml.checkpoints import load_checkpoint
from ml.config import FULL, QUICK, QuickOptions, RunConfig
from ml.data import load_pet_datasets, load_pet_files, read_split
from ml.features import CacheStats, FeatureCache, ImageViews, body_fingerprint, extract_features, file_digest
from ml.inference import Predictor
from ml.model import WeightsUnavailableError, build_resnet34
from ml.plots import FIGURES
from ml.progress import FROZEN, LATE
from ml.recipes.quick import run_quick, train_head
from ml.runs import choose_recipe
from ml.training import History

slow = pytest.mark.slow


def _random_body(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_resnet34(weights=None)


def _items(tiny_pets, n_files: int = 6, views=(0, 1, 2)):
    files = load_pet_files(tiny_pets, with_test=False).train[:n_files]
    return [(path, file_digest(path), view) for path, _ in files for view in views]


class ForwardCounter:
    """Counts images through the model's first layer: body forward passes, really run."""

    def __init__(self, model: nn.Module) -> None:
        self.images = 0
        model.conv1.register_forward_hook(lambda _m, inputs, _out: self._add(len(inputs[0])))

    def _add(self, n: int) -> None:
        self.images += n


# --- choosing a recipe ---------------------------------------------------------------------

def test_auto_is_quick_on_a_cpu_and_full_on_a_gpu():
    assert choose_recipe("auto", torch.device("cpu"))[0] == QUICK
    assert choose_recipe("auto", torch.device("cuda"))[0] == FULL
    assert "--recipe full" in choose_recipe("auto", torch.device("cpu"))[1]  # says how to get the other
    assert choose_recipe("full", torch.device("cpu"))[0] == FULL
    assert choose_recipe("quick", torch.device("cuda"))[0] == QUICK
    with pytest.raises(ValueError, match="auto, quick, full"):
        choose_recipe("fast", torch.device("cpu"))


# --- files and views ---------------------------------------------------------------------------

def test_files_are_split_as_the_datasets_are(tiny_pets):
    files = load_pet_files(tiny_pets, seed=3, valid_fraction=0.3)
    datasets = load_pet_datasets(tiny_pets, image_size=32, seed=3, valid_fraction=0.3)
    rows = read_split(tiny_pets, "trainval")
    assert [(p.stem, y) for p, y in files.valid] == [rows[i] for i in datasets.valid.indices]
    assert [(p.stem, y) for p, y in files.train] == [rows[i] for i in datasets.train.datasets[0].indices]
    assert len(files.test) == len(datasets.test)
    assert all(p.is_file() for p, _ in files.test + files.train)


def test_views_are_deterministic_per_image_and_view(tiny_pets):
    items = _items(tiny_pets, n_files=2, views=(0, 1, 2, 3))
    views = ImageViews(image_size=32)
    state = torch.random.get_rng_state()
    first = [views(path, digest, view) for path, digest, view in items]
    again = [views(path, digest, view) for path, digest, view in reversed(items)][::-1]
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is untouched
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert torch.equal(first[1], first[0].flip(-1))  # view 1: the centre view mirrored
    assert not torch.equal(first[2], first[3])
    assert not torch.equal(first[2], first[0])
    assert not torch.equal(first[2], first[6])  # another image, same view index: another crop
    assert len({views.description(v) for v in range(4)}) == 4
    assert views.description(2) != ImageViews(image_size=32, crop_scale=(0.5, 1.0)).description(2)


# --- the cache ------------------------------------------------------------------------------

def test_a_second_extraction_reads_everything_from_the_cache(tiny_pets, tmp_path):
    model, items, views = _random_body(), _items(tiny_pets), ImageViews(image_size=32)
    counter = ForwardCounter(model)
    cache = FeatureCache(tmp_path, body_fingerprint(model))
    stats = CacheStats()
    first = extract_features(model, items, views, cache, batch_size=8, progress=False, stats=stats)
    assert first.shape == (len(items), 512)
    assert stats == CacheStats(cached=0, computed=len(items))
    assert counter.images == len(items)

    stats = CacheStats()
    second = extract_features(model, items, views, FeatureCache(tmp_path, body_fingerprint(model)),
                              batch_size=8, progress=False, stats=stats)
    assert stats == CacheStats(cached=len(items), computed=0)
    assert counter.images == len(items)
    assert torch.equal(first, second)

    # what the model itself computes for an image: the cached value is the fc input
    path, digest, view = items[1]
    with torch.inference_mode():
        from ml.model import features_and_logits
        direct, _ = features_and_logits(model.eval(), views(path, digest, view)[None])
    assert torch.allclose(second[1], direct[0], atol=1e-5)


def test_the_cache_key_holds_file_content_view_and_body(tiny_pets, tmp_path):
    model, views = _random_body(), ImageViews(image_size=32)
    items = _items(tiny_pets, n_files=2, views=(0,))
    extract_features(model, items, views, FeatureCache(tmp_path, body_fingerprint(model)), progress=False)

    # the same bytes under another name: found again
    copy = tmp_path / "renamed.jpg"
    copy.write_bytes(items[0][0].read_bytes())
    stats = CacheStats()
    extract_features(model, [(copy, file_digest(copy), 0)], views,
                     FeatureCache(tmp_path, body_fingerprint(model)), progress=False, stats=stats)
    assert stats.computed == 0

    # another view, another body: computed
    for other_model, other_items in [(model, [(p, d, 1) for p, d, _ in items]), (_random_body(seed=1), items)]:
        stats = CacheStats()
        extract_features(other_model, other_items, views, FeatureCache(tmp_path, body_fingerprint(other_model)),
                         progress=False, stats=stats)
        assert stats.computed == len(other_items)


def test_features_from_another_backend_are_kept_apart(tiny_pets, tmp_path):
    from ml.backends import make_backend

    model, items, views = _random_body(), _items(tiny_pets, n_files=2, views=(0,)), ImageViews(image_size=32)
    key = body_fingerprint(model)
    eager = extract_features(model, items, views, FeatureCache(tmp_path, key), progress=False)
    stats = CacheStats()
    backend = make_backend("channels_last", model.eval())
    other = extract_features(model, items, views, FeatureCache(tmp_path, key, backend.name), progress=False,
                             stats=stats, forward=backend)
    assert stats.computed == len(items)
    assert torch.allclose(eager, other, atol=1e-4)
    assert len({p.parent.parent.parent for p in tmp_path.rglob("*.npy")}) == 2  # one folder per body and backend


def test_the_body_key_follows_the_body_and_not_the_head():
    model = _random_body()
    key = body_fingerprint(model)
    model.fc = nn.Linear(512, 3)
    assert body_fingerprint(model) == key
    model.layer4[2].bn2.running_mean += 1  # statistics change what the body computes
    assert body_fingerprint(model) != key


def test_an_interrupted_extraction_keeps_finished_batches_and_no_half_file(tiny_pets, tmp_path, monkeypatch):
    model, items, views = _random_body(), _items(tiny_pets, n_files=4, views=(0,)), ImageViews(image_size=32)
    real_save, saved = np.save, []

    def interrupt_on_the_third(f, array, **kwargs):
        if len(saved) == 2:
            f.write(b"half a file")
            raise KeyboardInterrupt
        saved.append(1)
        real_save(f, array, **kwargs)

    monkeypatch.setattr(features_.np, "save", interrupt_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        extract_features(model, items, views, FeatureCache(tmp_path, body_fingerprint(model)), batch_size=2,
                         progress=False)
    monkeypatch.setattr(features_.np, "save", real_save)
    npy = sorted(tmp_path.rglob("*.npy"))
    assert len(npy) == 2
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp.npy")]

    stats = CacheStats()
    extract_features(model, items, views, FeatureCache(tmp_path, body_fingerprint(model)), progress=False, stats=stats)
    assert stats == CacheStats(cached=2, computed=2)


def test_an_unreadable_cache_file_is_computed_again(tiny_pets, tmp_path):
    model, items, views = _random_body(), _items(tiny_pets, n_files=1, views=(0,)), ImageViews(image_size=32)
    cache = FeatureCache(tmp_path, body_fingerprint(model))
    good = extract_features(model, items, views, cache, progress=False)
    next(tmp_path.rglob("*.npy")).write_bytes(b"garbage")
    stats = CacheStats()
    again = extract_features(model, items, views, cache, progress=False, stats=stats)
    assert stats.computed == 1
    assert torch.equal(good, again)


# --- the head -------------------------------------------------------------------------------

def test_the_head_learns_and_is_folded_for_raw_features():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(NUM_CLASSES, 64, generator=generator) * 3
    scales = torch.rand(64, generator=generator) * 50 + 0.1  # columns of very different scales
    targets = torch.arange(NUM_CLASSES).repeat(20)
    features = (centres[targets] + torch.randn(len(targets), 64, generator=generator)) * scales + 7
    valid_targets = torch.arange(NUM_CLASSES).repeat(4)
    valid = (centres[valid_targets] + torch.randn(len(valid_targets), 64, generator=generator)) * scales + 7
    history = History()
    head = train_head(features, targets, valid, valid_targets, epochs=15, lr=3e-3, weight_decay=0.01,
                      batch_size=64, seed=0, history=history, log=lambda _: None)
    accuracy = (head(valid).argmax(1) == valid_targets).float().mean().item()
    assert accuracy > 0.9
    assert history.epochs[-1]["accuracy"] == pytest.approx(accuracy)  # the history measured the folded head
    assert [row["epoch"] for row in history.epochs] == list(range(1, 16))
    assert {s["stage"] for s in history.steps} == {FROZEN}
    assert all(len(s["lr"]) == 1 for s in history.steps)


# --- weights: nothing downloaded unless asked ---------------------------------------------

def test_imagenet_weights_are_not_downloaded_unless_asked(no_cached_weights, tmp_path):
    with pytest.raises(WeightsUnavailableError) as error:
        build_resnet34(weights="imagenet")
    message = str(error.value)
    assert no_cached_weights == []
    assert "--download" in message
    assert "--weights PATH" in message
    assert "--no-pretrained" in message
    assert str(tmp_path / "empty-hub" / "checkpoints" / "resnet34-b627a593.pth") in message
    with pytest.raises(WeightsUnavailableError, match="--download"):
        model_.fetch_imagenet_weights()
    assert no_cached_weights == []

    with pytest.raises(WeightsUnavailableError, match="could not be loaded"):
        build_resnet34(weights="imagenet", download=True)
    assert no_cached_weights == [model_.ResNet34_Weights.IMAGENET1K_V1.url]


def test_cached_imagenet_weights_load_without_download(no_cached_weights, tmp_path):
    imagenet_like = build_resnet34(num_classes=1000, weights=None)
    path = model_.imagenet_weights_cache_path()
    path.parent.mkdir(parents=True)
    torch.save(imagenet_like.state_dict(), path)
    model = build_resnet34(weights="imagenet")
    assert torch.equal(model.conv1.weight, imagenet_like.conv1.weight)
    assert no_cached_weights == []
    assert model_.fetch_imagenet_weights() == path


def quick_config(data, **options) -> RunConfig:
    """A RunConfig from flat options: those of the quick part (QuickOptions) go there."""
    names = {f.name for f in dataclasses.fields(QuickOptions)}
    part = {name: options.pop(name) for name in list(options) if name in names}
    return RunConfig(data=str(data), **options, quick=QuickOptions(**part))


def test_a_quick_run_without_weights_stops_before_any_work(no_cached_weights, tiny_pets, tmp_path):
    config = quick_config(tiny_pets, cache_dir=str(tmp_path / "cache"), image_size=32, workers=0,
                          progress=False)
    with pytest.raises(WeightsUnavailableError, match="--download"):
        run_quick(config, tmp_path / "out", log=lambda _: None)
    assert no_cached_weights == []
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "cache").exists()


# --- whole runs -----------------------------------------------------------------------------

QUICK_LEARNING = dict(weights=None, image_size=64, views=2, head_epochs=30, workers=0, seed=0, threads=2,
                      progress=False)


@pytest.fixture(scope="module")
def quick_runs(fake_pets, tmp_path_factory):
    """The same quick run twice on the shared generated dataset, sharing one feature cache."""
    cache = tmp_path_factory.mktemp("feature-cache")
    config = quick_config(fake_pets, cache_dir=str(cache), **QUICK_LEARNING)
    first = run_quick(config, tmp_path_factory.mktemp("quick1"), log=lambda _: None)
    lines: list[str] = []
    second = run_quick(config, tmp_path_factory.mktemp("quick2"), log=lines.append)
    return config, first, second, lines


@slow
def test_the_quick_recipe_learns(quick_runs):
    config, first, _, _ = quick_runs
    chance = 1 / NUM_CLASSES
    assert first.metrics["split"] == "test", first.metrics
    assert first.metrics["accuracy"] >= 0.4 > 10 * chance, first.metrics
    assert first.metrics["top5_accuracy"] >= 0.75
    assert first.metrics["valid"]["accuracy"] == pytest.approx(first.history["epochs"][-1]["accuracy"])
    assert len(first.history["epochs"]) == config.quick.head_epochs
    assert first.history["epochs"][-1]["valid_loss"] < first.history["epochs"][0]["valid_loss"]


@slow
def test_a_second_run_does_no_body_passes_and_gives_the_same_model(quick_runs, fake_pets):
    config, first, second, lines = quick_runs
    files = load_pet_files(fake_pets, seed=config.seed)
    n_features = len(files.train) * config.quick.views + len(files.valid) + len(files.test)
    assert first.history["features"] == {"cached": 0, "computed": n_features}
    assert second.history["features"] == {"cached": n_features, "computed": 0}
    assert any(f"body features: 0 computed, {n_features} read from the cache" in line for line in lines)
    a, b = load_checkpoint(first.checkpoint).state_dict, load_checkpoint(second.checkpoint).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)


@slow
def test_the_quick_run_writes_what_a_full_run_writes(quick_runs, fake_pets):
    config, first, _, _ = quick_runs
    out = first.out_dir
    assert set(first.figures) == set(FIGURES)
    assert all((out / "figures" / f"{n}.png").is_file() for n in FIGURES)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "per_class", "confusion_matrix", "most_confused", "valid", "verdicts", "calibration"} <= set(
        metrics)
    assert json.loads((out / "history.json").read_text())["param_groups"] == ["head (fc)"]

    checkpoint = load_checkpoint(first.checkpoint)
    checkpoint.verify(BREED_KEYS)  # what registering a model checks
    assert checkpoint.training_args["recipe"] == QUICK
    assert checkpoint.image_size == config.image_size
    assert checkpoint.calibration["class_means"].shape == (NUM_CLASSES, 512)

    # The checkpoint as the Predictor runs it agrees with the run's own test numbers.
    test = load_pet_files(fake_pets).test[::4]
    predictions = [r.top_k for r in Predictor(first.checkpoint).classify_batch([path for path, _ in test], k=1)]
    hits = sum(top[0].label == BREED_KEYS[label] for top, (_, label) in zip(predictions, test, strict=True))
    assert hits / len(test) >= 0.4


@slow
def test_late_layers_fine_tune_moves_only_the_late_body(tiny_pets, tmp_path):
    config = quick_config(tiny_pets, cache_dir=str(tmp_path / "cache"), finetune_epochs=1,
                         batch_size=16, evaluate_test=False, precision="bf16",
                         **{**QUICK_LEARNING, "head_epochs": 3, "image_size": 32})
    updates = []
    result = run_quick(config, tmp_path / "out", log=lambda _: None, on_progress=updates.append)
    assert progress.stages_in(updates) == [
        progress.PREPARING, progress.FEATURES_TRAIN, progress.FEATURES_EVAL, progress.HEAD_ON_FEATURES,
        progress.LATE_LAYERS, progress.EVALUATING, progress.CALIBRATING, progress.FIGURES, progress.SAVING]
    stage_of, stage = [], None
    for update in updates:
        stage = update.get("stage", stage)
        stage_of.append(stage)
    features = [u for u, s in zip(updates, stage_of, strict=True) if s == progress.FEATURES_TRAIN and "step" in u]
    assert features[0] == {"stage": progress.FEATURES_TRAIN, "step": 0, "steps": 2 * 74}  # a step per image and view
    assert features[-1] == {"step": 2 * 74, "steps": 2 * 74}
    late = [u for u, s in zip(updates, stage_of, strict=True) if s == progress.LATE_LAYERS and "epoch" in u]
    assert late[-1]["epoch"] == late[-1]["epochs"] == 4  # numbered as in the history: 3 head epochs, then this
    late_end = [u for u, s in zip(updates, stage_of, strict=True) if s == progress.LATE_LAYERS and "steps" in u][-1]
    assert late_end["step"] == late_end["steps"]  # training, then validation batches: all counted
    assert {"history": result.history["epochs"]} in updates  # the whole table, before evaluating
    assert result.history["precision"] == "bf16"  # the fine-tune runs under the precision asked for
    before, after = _random_body(seed=0).state_dict(), load_checkpoint(result.checkpoint).state_dict
    assert torch.equal(before["conv1.weight"], after["conv1.weight"])
    assert torch.equal(before["layer2.0.conv1.weight"], after["layer2.0.conv1.weight"])
    assert not torch.equal(before["layer4.0.conv1.weight"], after["layer4.0.conv1.weight"])
    assert [row["stage"] for row in result.history["epochs"]] == [FROZEN] * 3 + [LATE]
    assert result.history["param_groups"] == ["head (fc)", "late body (layer3, layer4)"]
    late_steps = [s for s in result.history["steps"] if s["stage"] == LATE]
    assert late_steps
    assert all(s["lr"][1] == pytest.approx(s["lr"][0] / 10) for s in late_steps)
    assert result.metrics["split"] == "valid"
    assert set(result.figures) == set(FIGURES)


@slow
def test_an_exception_from_progress_leaves_no_model(tiny_pets, tmp_path):
    def cancel(update):
        if update.get("stage") == progress.EVALUATING:
            raise RuntimeError("cancelled")

    config = quick_config(tiny_pets, cache_dir=str(tmp_path / "cache"),
                         **{**QUICK_LEARNING, "image_size": 32, "head_epochs": 2})
    with pytest.raises(RuntimeError, match="cancelled"):
        run_quick(config, tmp_path / "out", log=lambda _: None, on_progress=cancel)
    assert not (tmp_path / "out" / "model.pt").exists()
    assert list((tmp_path / "cache").rglob("*.npy"))
