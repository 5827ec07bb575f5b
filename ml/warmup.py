"""Warm-up: export a model and choose its inference backend once per model and machine,
in a process of its own, never while a user's photo waits.

With ``PETSITE_INFERENCE_BACKEND=auto`` a model needs its ONNX export (8 s on two idle
cores, minutes on busy ones) and a timing of the candidates (``ml.backends``) before the
fastest backend is known. Done inside a classification task, the first photo after a
model change waited 1.5 to 5 minutes, and every worker of a machine exported at once. So:

- :func:`warm_up` loads the checkpoint, exports it if a candidate needs the file, times
  the candidates and caches the choice (``backends.json``) and the ``.onnx`` file in the
  cache folder, all behind a file lock per model and machine (``locks/`` there): a second
  warm-up of the same model waits for the first, then finds its result and reuses it.
- It runs as ``python -m ml.warmup CHECKPOINT --cache-dir DIR`` (:func:`run_in_subprocess`),
  so that the exporter's ~400 MiB leave with that process instead of staying in a worker.
  Workers start it when a version is registered or activated, and at start (``registry.tasks``).
- Meanwhile a worker child serves with eager FP32 at once, and :class:`BackendSwitch`
  moves its Predictor to the chosen backend once the warm-up has written it (one ``stat``
  per batch until then).

Importing this module loads neither torch nor Django: the Celery main process and the
web process use its keys and lock, only the warm-up process and worker children run models.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

if TYPE_CHECKING:
    from .inference import Predictor

logger = logging.getLogger(__name__)

# ml.backends' names of the two settings that need a warm-up (equal to backends.AUTO and
# backends.ONNX; a test keeps them so: that module imports torch, this one must not).
AUTO, ONNX = "auto", "onnx"
NEEDS_WARM_UP = (AUTO, ONNX)
# A warm-up running longer than this is taken for dead (a killed process, a stuck export):
# on a busy 2-core machine one took up to 5 minutes.
WARMUP_TIMEOUT = 30 * 60
LOCKS = "locks"


class WarmupFailed(RuntimeError):
    """The warm-up process failed; the message ends with what it wrote to stderr."""


def needs_warm_up(backend: str) -> bool:
    """Whether a worker on ``backend`` (``PETSITE_INFERENCE_BACKEND``) waits for a warm-up
    before it runs its fastest: ``auto`` (a choice to measure) and ``onnx`` (a file to export)."""
    return backend in NEEDS_WARM_UP


def checkpoint_key(checkpoint: bytes | str | os.PathLike) -> str:
    """SHA-256 of a checkpoint file (its bytes, or the file at a path): names the model's
    lock without loading it (which takes torch)."""
    digest = hashlib.sha256()
    if isinstance(checkpoint, bytes):
        digest.update(checkpoint)
    else:
        with open(checkpoint, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def lock_path(cache_dir: str | os.PathLike, key: str) -> Path:
    """The lock of one model (``key``: :func:`checkpoint_key`) on this machine. The host is
    part of the name, so a cache folder shared by machines still measures each of them."""
    return Path(cache_dir) / LOCKS / f"{socket.gethostname()}-{key[:32]}.lock"


def _lock(cache_dir: str | os.PathLike, key: str, timeout: float) -> FileLock:
    path = lock_path(cache_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path, timeout=timeout)


def is_running(cache_dir: str | os.PathLike, key: str) -> bool:
    """Whether a warm-up of this model holds its lock on this machine now (an OS lock: it
    is released when its process ends, however it ends)."""
    lock = _lock(cache_dir, key, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


def warm_up(
    checkpoint_path: str | os.PathLike,
    backend: str = AUTO,
    *,
    cache_dir: str | os.PathLike,
    device: str = "cpu",
    threads: int | None = None,
    lock_timeout: float = WARMUP_TIMEOUT,
) -> dict[str, Any]:
    """Make ``backend`` ready for the checkpoint in ``cache_dir``, in this process: the
    ONNX export if a candidate needs it, and for ``auto`` the measured choice
    (``ml.backend_choice.choose_backend``, cached in ``backends.json``).

    ``threads``: torch's threads, as the worker children have them (the choice is cached
    per thread count, and is timed with it). Holds the model's lock throughout: a second
    warm-up waits (up to ``lock_timeout`` seconds), then finds the choice and the file
    cached and only reads them. Returns what happened: the backend, the choice's report
    (``auto``), whether it exported, the seconds it waited for the lock and took in all.
    """
    started = time.monotonic()
    key = checkpoint_key(checkpoint_path)
    with _lock(cache_dir, key, lock_timeout):  # before torch loads: the next asker sees it at once
        waited = time.monotonic() - started
        import torch

        from . import backend_choice, machine
        from .checkpoints import load_checkpoint

        if threads:
            torch.set_num_threads(threads)
        checkpoint = load_checkpoint(checkpoint_path)
        model = checkpoint.build_model().to(device)
        model_key = machine.weights_key(checkpoint.state_dict)
        export_s = None
        if backend == ONNX:
            export_s = _export_if_missing(model, cache_dir, model_key)
            chosen, report = ONNX, None
        elif backend == AUTO:
            cached = backend_choice.cached_choice(model_key, checkpoint.image_size, device, cache_dir)
            if cached is None or cached[0] == ONNX:  # about to time the ONNX candidate, or to use it
                export_s = _export_if_missing(model, cache_dir, model_key)
            chosen, report = backend_choice.choose_backend(model, checkpoint.image_size, cache_dir=cache_dir,
                                                           model_key=model_key)
        else:
            raise ValueError(f"Backend {backend!r} needs no warm-up; only {' and '.join(NEEDS_WARM_UP)} do.")
    return {
        "backend": chosen,
        "choice": report,  # choose_backend's report: every candidate's figures, or why it was left out
        "exported": export_s is not None,
        "export_s": export_s,
        "waited_s": round(waited, 2),
        "seconds": round(time.monotonic() - started, 2),
        "threads": torch.get_num_threads(),
        "host": socket.gethostname(),
    }


def _export_if_missing(model, cache_dir: str | os.PathLike, model_key: str) -> float | None:
    """Export ``model`` to its cached ONNX file unless it is there or ONNX Runtime cannot run
    here; the seconds it took, or None if not exported."""
    from . import backends, onnx_export

    device = next(model.parameters()).device
    can_run, why = backends.OnnxBackend.available(device)
    if not can_run:
        logger.info("No ONNX export: %s", why)
        return None
    path = onnx_export.onnx_path(model, cache_dir, model_key)
    if path.exists():
        return None
    started = time.monotonic()
    try:
        onnx_export.export_onnx(copy.deepcopy(model), path)  # in this process: it ends after the warm-up
    except Exception as exc:  # the other candidates are still worth choosing among (ONNX's reports the failure)
        logger.warning("The ONNX export failed: %r", exc)
        return None
    seconds = round(time.monotonic() - started, 2)
    logger.info("Exported the model to ONNX in %.1f s: %s", seconds, path)
    return seconds


def command(
    checkpoint_path: str | os.PathLike, backend: str, *, cache_dir: str | os.PathLike, device: str = "cpu",
    threads: int | None = None,
) -> list[str]:
    """The command line of a warm-up process."""
    args = [sys.executable, "-m", "ml.warmup", str(checkpoint_path), "--backend", backend,
            "--cache-dir", str(cache_dir), "--device", device]
    return args + (["--threads", str(threads)] if threads else [])


def run_in_subprocess(
    checkpoint_path: str | os.PathLike, backend: str = AUTO, *, cache_dir: str | os.PathLike, device: str = "cpu",
    threads: int | None = None, timeout: float = WARMUP_TIMEOUT,
) -> dict[str, Any]:
    """:func:`warm_up` in a process of its own (``python -m ml.warmup``); its result.

    Raises :class:`WarmupFailed` if the process fails or runs past ``timeout`` (it is
    killed then; its lock goes with it).
    """
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    try:
        # Safe to run (the noqa below): command() is a fixed argv, this interpreter (sys.executable) running ml.warmup.
        done = subprocess.run(command(checkpoint_path, backend, cache_dir=cache_dir, device=device, threads=threads),  # noqa: S603
                              cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise WarmupFailed(f"the warm-up did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise WarmupFailed(f"the warm-up process exited with {done.returncode}: {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class BackendSwitch:
    """A worker's Predictor on eager FP32 until the warm-up of its model is done on this
    machine, then on the backend the warm-up chose (``auto``) or exported (``onnx``).

    :meth:`poll` before each batch costs one ``stat`` of the file the warm-up writes last
    (``backends.json``, or the ``.onnx`` file) until the switch; the cache is read only when
    that file changed. Built in a worker child (torch is loaded there already).
    """

    def __init__(self, predictor: Predictor, backend: str, cache_dir: str | os.PathLike, checkpoint_key: str):
        from . import backend_choice, machine, onnx_export

        if not needs_warm_up(backend):
            raise ValueError(f"Backend {backend!r} needs no warm-up to wait for.")
        self.predictor, self.backend = predictor, backend
        self.cache_dir, self.checkpoint_key = Path(cache_dir), checkpoint_key
        self.model_key = machine.weights_key(predictor.checkpoint.state_dict)
        self._onnx = onnx_export.onnx_path(predictor.model, cache_dir, self.model_key)
        self._watched = self._onnx if backend == ONNX else self.cache_dir / backend_choice.CACHE_FILE
        self._seen: int | None = None
        self.done = False  # switched, or gave up (the chosen backend failed to build: eager stays)

    def warming_up(self) -> bool:
        """Whether a warm-up of this model runs on this machine now."""
        return is_running(self.cache_dir, self.checkpoint_key)

    def poll(self) -> bool:
        """Switch to the warm-up's backend if it is ready; True if it switched in this call."""
        if self.done:
            return False
        try:
            modified = self._watched.stat().st_mtime_ns
        except OSError:
            return False
        if modified == self._seen:
            return False
        self._seen = modified
        choice = self._ready_choice()
        if choice is None:
            return False
        name, report = choice
        self.done = True
        try:
            self.predictor.use_backend(name, report)
        except Exception as exc:  # a cached choice that cannot be built here: keep serving eager FP32
            logger.warning("Inference backend %r failed to load (%r); staying on eager FP32", name, exc)
            return False
        return True

    def _ready_choice(self) -> tuple[str, dict[str, Any] | None] | None:
        from . import backend_choice

        if self.backend == ONNX:
            return ONNX, None  # the file exists: its stat succeeded
        choice = backend_choice.cached_choice(self.model_key, self.predictor.checkpoint.image_size,
                                              self.predictor.device, self.cache_dir)
        if choice is not None and choice[0] == ONNX and not self._onnx.exists():
            return None  # chosen, but its file is gone: never export here, while photos wait
        return choice


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.warmup", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="the model's checkpoint file")
    parser.add_argument("--backend", default=AUTO, choices=NEEDS_WARM_UP)
    parser.add_argument("--cache-dir", required=True, help="PETSITE_BACKEND_CACHE_DIR: backends.json, onnx/, locks/")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads, as the worker children have them")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    result = warm_up(args.checkpoint, args.backend, cache_dir=args.cache_dir, device=args.device, threads=args.threads)
    print(json.dumps(result))  # the last line of stdout: run_in_subprocess reads it
    return 0


if __name__ == "__main__":
    sys.exit(main())
