"""One entry for training (ml.runs.run), one configuration (ml.config), and training
modules whose imports point one way."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ml import progress, runs
from ml.config import FULL, QUICK, FullOptions, QuickOptions, RunConfig

ML = Path(runs.__file__).resolve().parent

# The training_args keys a checkpoint keeps, as TrainConfig and QuickConfig wrote them before
# they were one configuration: registered versions and the site's pages read these.
FULL_KEYS = {
    "data", "extra_data", "download", "epochs", "freeze_epochs", "lr", "lr_mult", "weight_decay", "batch_size",
    "image_size", "crop_scale", "valid_fraction", "workers", "device", "seed", "weights", "init_checkpoint",
    "evaluate_test", "threads", "precision", "progress",
}
QUICK_KEYS = {
    "data", "extra_data", "download", "cache_dir", "views", "head_epochs", "lr", "weight_decay", "head_batch_size",
    "finetune_epochs", "finetune_lr", "batch_size", "image_size", "crop_scale", "valid_fraction", "workers",
    "device", "seed", "weights", "init_checkpoint", "evaluate_test", "threads", "progress", "backend",
    "backend_cache_dir", "precision", "recipe",
}


def test_to_dict_is_the_base_and_the_part_that_runs_flat():
    config = RunConfig(data=Path("/data"), crop_scale=[0.5, 1.0], full=FullOptions(lr=1e-3),
                       quick=QuickOptions(lr=4e-3, cache_dir=Path("/cache")))
    full, quick = config.to_dict(FULL), config.to_dict(QUICK)
    assert set(full) == FULL_KEYS
    assert set(quick) == QUICK_KEYS
    assert (full["lr"], quick["lr"], quick["recipe"]) == (1e-3, 4e-3, QUICK)
    assert full["crop_scale"] == quick["crop_scale"] == [0.5, 1.0]  # plain JSON types
    assert (full["data"], quick["cache_dir"]) == ("/data", "/cache")
    with pytest.raises(ValueError, match="recipe that runs"):
        config.to_dict("auto")


@pytest.mark.parametrize(("make", "message"), [
    (lambda: RunConfig(data="d", valid_fraction=1.0), "valid_fraction"),
    (lambda: FullOptions(epochs=0, freeze_epochs=0), "not both 0"),
    (lambda: QuickOptions(views=0), "views and head_epochs"),
    (lambda: QuickOptions(finetune_epochs=-1), "finetune_epochs"),
])
def test_each_part_checks_its_own_fields(make, message):
    with pytest.raises(ValueError, match=message):
        make()


class _StopAtPlan(Exception):
    pass


@pytest.mark.parametrize(("recipe", "ran", "stage"), [
    ("auto", QUICK, progress.FEATURES_TRAIN),  # auto on a CPU: the quick recipe
    ("full", FULL, progress.ALL_LAYERS),
])
def test_run_resolves_the_recipe_says_so_and_records_settings_before_any_work(tiny_pets, tmp_path, recipe, ran,
                                                                             stage):
    config = RunConfig(data=tiny_pets, device="cpu", weights=None, image_size=32, workers=0, progress=False,
                       quick=QuickOptions(cache_dir=str(tmp_path / "cache")))
    events, lines = [], []

    def on_progress(update):
        events.append("progress")
        if stage in update.get("plan", {}):  # the recipe's own plan, once its data are read
            raise _StopAtPlan

    with pytest.raises(_StopAtPlan):
        runs.run(recipe, config, tmp_path / "out", log=lines.append, on_progress=on_progress,
                 on_start=lambda settings: events.append(settings))
    settings = events[0]
    assert settings["recipe"] == ran
    assert settings["why"]
    assert lines[0] == f"Recipe: {ran} ({settings['why']})."
    assert settings == {**config.to_dict(ran), "recipe": ran, "why": settings["why"]}
    assert "progress" in events[1:]
    assert not (tmp_path / "out" / "model.pt").exists()


def test_an_unknown_recipe_stops_before_anything_starts(tmp_path):
    started = []
    with pytest.raises(ValueError, match="auto, quick, full"):
        runs.run("fast", RunConfig(data=tmp_path), tmp_path / "out", on_start=started.append)
    assert started == []
    assert not (tmp_path / "out").exists()


# The training modules, lowest first: each may import only those before it.
TRAINING_MODULES = ["ml.config", "ml.training", "ml.outputs", "ml.recipes.full", "ml.recipes.quick", "ml.runs"]


def _ml_imports(module: str) -> set[str]:
    """Every ml module that ``module`` imports, at the top or inside a function."""
    path = ML.parent / (module.replace(".", "/") + ".py")
    package = module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
            found.update(name for name in names if name.startswith("ml"))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("ml"))
    return found


def test_training_modules_import_one_way():
    for position, module in enumerate(TRAINING_MODULES):
        later = TRAINING_MODULES[position + 1:]
        assert not [name for name in _ml_imports(module) if name in later], module
    assert "ml.recipes.quick" not in _ml_imports("ml.recipes.full")  # the two recipes do not know each other
