"""Registering, activating, warming up and loading model versions: the Django side of ``ml``.

PyTorch is imported inside the functions that need it (registering, loading a
Predictor), which run in commands and worker children: the web process and the Celery
main process never load it. A warm-up (``ml.warmup``) runs in a process of its own.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from ml import warmup
from ml.breeds import BREED_KEYS

from .models import ModelVersion, ModelWarmup
from .signals import model_activated, model_registered

if TYPE_CHECKING:
    from ml.inference import Predictor
    from ml.warmup import BackendSwitch

log = logging.getLogger(__name__)

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
    from ml.checkpoints import load_checkpoint

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
    transaction.on_commit(lambda: model_registered.send(sender=ModelVersion, version=version))
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


# --- Warm-up: export and backend choice, once per model and machine -----------------------


def warm_up_version(version: ModelVersion, *, threads: int | None = None) -> ModelWarmup | None:
    """Warm ``version`` up on this machine and record it: ``python -m ml.warmup`` in a child
    process (the ONNX export and the backend choice for ``PETSITE_INFERENCE_BACKEND``),
    waited for here. None when the backend needs no warm-up.

    ``threads``: torch threads of this machine's worker children (the choice is per thread
    count). Blocks for seconds (done before) to minutes: run it in a background thread
    (:func:`start_warm_up`). The row says "running" meanwhile, unless an earlier warm-up
    of this version made it ready here: that one stays shown until this one ends.
    """
    backend = settings.PETSITE_INFERENCE_BACKEND
    if not warmup.needs_warm_up(backend):
        return None
    host, started_at = socket.gethostname(), timezone.now()
    _record(version, host, started=True, state=ModelWarmup.State.RUNNING, started_at=started_at, finished_at=None)
    try:
        with local_checkpoint(version) as path:
            result = warmup.run_in_subprocess(
                path, backend, cache_dir=settings.PETSITE_BACKEND_CACHE_DIR,
                device=settings.PETSITE_INFERENCE_DEVICE, threads=threads,
            )
    except (warmup.WarmupFailed, OSError, ValueError) as exc:
        log.warning("Warm-up of model %s failed on %s; its workers serve eager FP32: %s", version.name, host, exc)
        return _record(version, host, state=ModelWarmup.State.FAILED, backend="", started_at=started_at,
                       finished_at=timezone.now(), report={"error": str(exc)[-2000:]})
    log.info("Model %s ready on %s: backend %r (%s), warm-up %.1f s (%.1f s waiting for another), %s", version.name,
             host, result["backend"], _speedup_words(result), result["seconds"], result["waited_s"],
             f"exported to ONNX in {result['export_s']:.1f} s" if result["exported"] else "no export")
    return _record(version, host, state=ModelWarmup.State.READY, backend=result["backend"], started_at=started_at,
                   finished_at=timezone.now(), report=result)


def _speedup_words(result: dict) -> str:
    choice = result.get("choice") or {}
    if choice.get("cached"):
        return "choice measured before"
    speedup = choice.get("candidates", {}).get(result["backend"], {}).get("speedup_vs_eager")
    return f"{speedup:.2f}x eager FP32" if speedup else "measured"


def _record(version: ModelVersion, host: str, *, started: bool = False, **fields) -> ModelWarmup | None:
    """Write the state of ``version``'s warm-up on ``host``. ``started``: a warm-up begins,
    which leaves a ready row as it is. A database that is away only costs the record."""
    try:
        with transaction.atomic():
            row, created = ModelWarmup.objects.get_or_create(version=version, host=host, defaults=fields)
            if not created and not (started and row.state == ModelWarmup.State.READY):
                for name, value in fields.items():
                    setattr(row, name, value)
                row.save()
        return row
    except DatabaseError:
        log.warning("Could not record the warm-up of model %s on %s (%s)", version.name, host, fields.get("state"))
        return None


_warming: set[int] = set()  # versions this process warms up now
_warming_lock = threading.Lock()


def start_warm_up(version: ModelVersion, *, threads: int | None = None) -> bool:
    """:func:`warm_up_version` in a background thread of this process, unless this process
    warms ``version`` up already; True if it started one. The Celery main process calls it
    (``registry.tasks``), and a worker child for a model nobody warms up on its machine."""
    with _warming_lock:
        if version.pk in _warming:
            return False
        _warming.add(version.pk)

    def run() -> None:
        try:
            warm_up_version(version, threads=threads)
        except Exception:  # a thread's exception would only reach stderr
            log.exception("Warm-up of model %s failed", version.name)
        finally:
            with _warming_lock:
                _warming.discard(version.pk)
            connection.close()  # this thread's own connection

    log.info("Warming model %s up on %s in the background (ONNX export and backend choice)", version.name,
             socket.gethostname())
    threading.Thread(target=run, name=f"warm-up-{version.name}", daemon=True).start()
    return True


# --- Loading a model in a worker child ------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _cached_predictor(pk: int, file_name: str) -> tuple[Predictor, BackendSwitch | None]:
    """The Predictor of a version, and for a backend that needs a warm-up (``auto``,
    ``onnx``) the switch that moves it from eager FP32 to that backend once it is ready."""
    from ml.inference import Predictor

    with default_storage.open(file_name, "rb") as f:
        data = f.read()
    backend, cache_dir = settings.PETSITE_INFERENCE_BACKEND, settings.PETSITE_BACKEND_CACHE_DIR
    if not warmup.needs_warm_up(backend):
        return Predictor(data, device=settings.PETSITE_INFERENCE_DEVICE, backend=backend,
                         backend_cache_dir=cache_dir), None
    predictor = Predictor(data, device=settings.PETSITE_INFERENCE_DEVICE, backend="eager", backend_cache_dir=cache_dir)
    return predictor, warmup.BackendSwitch(predictor, backend, cache_dir, warmup.checkpoint_key(data))


_asked_to_warm: set[int] = set()  # versions this worker child started a warm-up for itself


def predictor_for(version: ModelVersion, *, warm_up: bool = True) -> Predictor:
    """The Predictor for ``version``, loaded once per process (per worker child).

    With a backend that needs a warm-up, it serves eager FP32 at once and moves to the
    warm-up's backend when that is ready: every call (one per batch) checks, for the price
    of a ``stat``. If no warm-up of the model runs on this machine (a worker that started
    after the version was registered, a lost broadcast), this process starts one, once;
    unless ``warm_up`` is False (a command that ends in seconds, ``predict``, must leave no
    warm-up behind: it uses a choice made before, else eager FP32).
    """
    predictor, switch = _cached_predictor(version.pk, version.file.name)
    if switch is None or switch.done:
        return predictor
    if switch.poll():
        log.info("Model %s now runs on the %r backend (its warm-up is done)", version.name, predictor.backend.name)
        _record_switch(version, predictor)
    elif warm_up and version.pk not in _asked_to_warm and not switch.warming_up():
        import torch

        _asked_to_warm.add(version.pk)
        start_warm_up(version, threads=torch.get_num_threads())
    return predictor


def _record_switch(version: ModelVersion, predictor: Predictor) -> None:
    """Record that this machine runs ``version`` on the warm-up's backend, unless its warm-up
    recorded that itself (it may not have: it ran for a process that ended, or the database
    was reset since)."""
    host, name = socket.gethostname(), predictor.backend.name
    try:
        if ModelWarmup.objects.filter(version=version, host=host, state=ModelWarmup.State.READY).exists():
            return
    except DatabaseError:
        return
    _record(version, host, state=ModelWarmup.State.READY, backend=name, finished_at=timezone.now(),
            report={"backend": name, "choice": predictor.backend_report})
