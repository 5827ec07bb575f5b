"""Registering, activating and loading model versions: the Django side of ``ml``.

PyTorch is imported inside the functions that need it (registering, loading a
Predictor), which run in commands and workers: the web process never loads it.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from .breeds import BREED_KEYS
from .models import ModelVersion
from .signals import model_activated

if TYPE_CHECKING:
    from .inference import Predictor

NO_ACTIVE_MODEL = (
    "No active model. Train one with `python manage.py train --data PATH --activate` "
    "or import one with `python manage.py import_model FILE --activate`."
)


class NoActiveModel(LookupError):
    def __init__(self) -> None:
        super().__init__(NO_ACTIVE_MODEL)


def active_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def require_active_version() -> ModelVersion:
    version = active_version()
    if version is None:
        raise NoActiveModel()
    return version


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _store_figures(folder: Path, prefix: str) -> dict[str, str]:
    """Copy every PNG of ``folder`` into media storage under ``prefix``: figure name -> storage path."""
    figures = {}
    for png in sorted(folder.glob("*.png")):  # a missing folder globs to nothing
        with png.open("rb") as f:
            figures[png.stem] = default_storage.save(f"{prefix}/{png.name}", File(f))
    return figures


def register_model(
    checkpoint_path: str | os.PathLike,
    *,
    name: str | None = None,
    activate: bool = False,
    run_dir: str | os.PathLike | None = None,
    notes: str = "",
) -> ModelVersion:
    """Copy a checkpoint (and, from a training run directory, its metrics, history and
    figures) into media storage and record it as a ModelVersion.

    The checkpoint is loaded, built and run once first, so a corrupt or foreign file,
    other classes than the 37 breeds or weights that do not fit are refused before
    anything is stored.
    """
    from .checkpoints import load_checkpoint

    checkpoint_path = Path(checkpoint_path)
    checkpoint = load_checkpoint(checkpoint_path)
    checkpoint.verify(BREED_KEYS)
    name = slugify(name or f"{checkpoint.arch}-{timezone.now():%Y%m%d-%H%M%S}")
    if ModelVersion.objects.filter(name=name).exists():
        raise ValueError(f"A model version named {name!r} exists already; choose another --name.")
    run_dir = Path(run_dir) if run_dir else None
    metrics = _read_json(run_dir / "metrics.json") if run_dir else {}
    history = _read_json(run_dir / "history.json") if run_dir else {}

    figures = _store_figures(run_dir / "figures", f"models/{name}/figures") if run_dir else {}

    with checkpoint_path.open("rb") as f:
        version = ModelVersion(
            name=name,
            classes=checkpoint.classes,
            image_size=checkpoint.image_size,
            metrics=metrics or checkpoint.metrics,
            training_args=checkpoint.training_args,
            history=history,
            figures=figures,
            notes=notes,
        )
        version.file.save(f"{name}/model.pt", File(f), save=False)
    version.save()
    if activate:
        activate_version(version)
    return version


def record_evaluation(version: ModelVersion, metrics: dict, figures_dir: str | os.PathLike) -> None:
    """Keep an evaluation of ``version`` on one split: metrics under ``evaluations[split]``,
    figures as ``<split>_<figure>``, beside those of its training run."""
    split = metrics["split"]
    stored = _store_figures(Path(figures_dir), f"models/{version.name}/evaluations/{split}")
    version.figures.update({f"{split}_{key}": path for key, path in stored.items()})
    version.metrics.setdefault("evaluations", {})[split] = metrics
    version.save(update_fields=["metrics", "figures"])


def activate_version(version: ModelVersion) -> None:
    """Make ``version`` the only active one; listeners hear of it once the change is committed."""
    with transaction.atomic():
        ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
        version.is_active = True
        transaction.on_commit(lambda: model_activated.send(sender=ModelVersion, version=version))


@contextlib.contextmanager
def local_checkpoint(version: ModelVersion) -> Iterator[Path]:
    """A local file path of the version's checkpoint, for code that needs one (training).

    On local storage it is the stored file itself; on S3 a temporary copy, removed after.
    """
    try:
        local = Path(version.file.path)
    except NotImplementedError:  # remote storage has no local path
        local = None
    if local is not None:
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="petsite-model-") as tmp:
        path = Path(tmp) / "model.pt"
        with version.file.open("rb") as src, path.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        yield path


@functools.lru_cache(maxsize=2)
def _cached_predictor(pk: int, file_name: str) -> Predictor:
    from django.conf import settings

    from .inference import Predictor

    with default_storage.open(file_name, "rb") as f:
        return Predictor(
            f.read(), device=settings.PETSITE_INFERENCE_DEVICE, backend=settings.PETSITE_INFERENCE_BACKEND,
            backend_cache_dir=settings.PETSITE_BACKEND_CACHE_DIR,
        )


def predictor_for(version: ModelVersion) -> Predictor:
    """The Predictor for ``version``, loaded once per process (per worker child)."""
    return _cached_predictor(version.pk, version.file.name)
