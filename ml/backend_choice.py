"""The automatic choice of an inference backend (``ml.backends``): measured, never assumed.

:func:`choose_backend` runs each candidate on fixed inputs, rejects any whose top-1 differs
from eager FP32 or whose probabilities differ by more than its tolerance, times the others a
few times each, taking turns call by call (so that a burst of load from another process hits
them all), keeps the fastest by throughput at the largest batch size, logs the figures, and
caches the choice per model weights and machine (``ml.machine``) in a small JSON file
(``backends.json``), so that a worker child does not remeasure at every start;
:func:`cached_choice` reads it without measuring. :func:`resolve_backend` is what the
Predictor calls: a backend by name, or ``"auto"``'s choice.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from torch import nn

from . import calibration as calibration_
from .backends import (
    AUTO,
    AUTO_CANDIDATES,
    BACKENDS,
    EAGER,
    FACTORIES,
    Backend,
    BackendFactory,
    EagerBackend,
    make_backend,
)
from .files import atomic_path
from .machine import cpu_flags, cpu_info, default_cache_dir, machine_key, weights_key

logger = logging.getLogger(__name__)

CACHE_FILE = "backends.json"
CACHE_VERSION = 1
DEFAULT_BATCH_SIZES = (1, 16)  # the batch sizes the automatic choice times (a lone upload, a burst)


# --- the cache of choices -----------------------------------------------------------------------

def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("choices"), dict):
        return {}
    return data


def _write_cache(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Add one entry: read, change, write to a temporary file, rename (a reader never sees half
    a file), under a lock of the file, so that two processes measuring different models at
    once (two warm-ups) both keep their entry."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_name(path.name + ".lock"), timeout=60):
            data = _read_cache(path) or {"version": CACHE_VERSION, "choices": {}}
            data["choices"][key] = entry
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    except (OSError, Timeout) as exc:  # a read-only home must not stop a worker
        logger.warning("Could not cache the inference backend choice in %s: %s", path, exc)


# --- measuring -----------------------------------------------------------------------------------

def fixed_inputs(image_size: int, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The same normalised-looking images on every call: smooth colour fields plus noise."""
    generator = torch.Generator().manual_seed(1234)
    coarse = torch.randn(batch_size, 3, 4, 4, generator=generator)
    smooth = nn.functional.interpolate(coarse, size=(image_size, image_size), mode="bilinear", align_corners=False)
    noise = 0.3 * torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    return (smooth + noise).to(device)


def _time_once(backend: Backend, images: torch.Tensor) -> float:
    start = time.perf_counter()
    backend(images)
    if images.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def timed_calls(backends: int, batch_sizes: Sequence[int], warmup: int = 1, repeats: int = 3) -> int:
    """How many calls :func:`time_backends` makes."""
    biggest = max(batch_sizes)
    return sum(backends * (warmup + (repeats if size == biggest else repeats + 2)) for size in set(batch_sizes))


def time_backends(
    backends_: Mapping[str, Backend], inputs: Mapping[int, torch.Tensor], warmup: int = 1, repeats: int = 3,
    on_call: Callable[[], None] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Median time and images/s per backend and batch size, the backends taking turns call
    by call (in alternating order), so that a change in machine load hits all of them
    rather than whichever was being timed. The largest batch gets ``repeats`` calls each,
    smaller ones two more (they are cheap and noisier). ``on_call()`` after every call
    (:func:`timed_calls` of them), outside the timed part: a training run's progress."""
    biggest = max(inputs)
    called = on_call or (lambda: None)
    timings: dict[str, dict[str, dict[str, float]]] = {name: {} for name in backends_}
    for batch_size, images in sorted(inputs.items()):
        for backend in backends_.values():
            for _ in range(warmup):
                backend(images)
                called()
        seconds: dict[str, list[float]] = {name: [] for name in backends_}
        names = list(backends_)
        for round_ in range(repeats if batch_size == biggest else repeats + 2):
            for name in names if round_ % 2 == 0 else reversed(names):
                seconds[name].append(_time_once(backends_[name], images))
                called()
        for name, values in seconds.items():
            median = statistics.median(values)
            timings[name][str(batch_size)] = {
                "median_ms": round(1000 * median, 2), "images_per_s": round(batch_size / median, 2),
            }
    return timings


def check_backend(
    factory: BackendFactory,
    model: nn.Module,
    inputs: Mapping[int, torch.Tensor],
    reference: tuple[torch.Tensor, torch.Tensor],
) -> tuple[dict[str, Any], Backend | None]:
    """(report, backend) for one candidate: whether it builds, runs and agrees with
    ``reference`` (eager FP32's (features, logits) on ``inputs[max batch]``) within its
    tolerance; the backend is None unless it was accepted."""
    biggest = max(inputs)
    started = time.perf_counter()
    try:
        backend = factory(model)
        tolerance = backend.tolerance
        features, logits = backend(inputs[biggest])
    except Exception as exc:  # a backend that cannot run here is a rejected candidate, not a dead worker
        logger.warning("Inference backend candidate failed: %r", exc)
        return {"accepted": False, "reason": f"failed: {type(exc).__name__}: {exc}"[:300]}, None
    first_call_s = time.perf_counter() - started
    ref_features, ref_logits = reference
    ref_probs, probs = torch.softmax(ref_logits.float(), 1), torch.softmax(logits.float(), 1)
    top1_agrees = bool((probs.argmax(1) == ref_probs.argmax(1)).all())
    probability_diff = float((probs - ref_probs).abs().max())
    feature_diff = float((calibration_.unit_length(features) - calibration_.unit_length(ref_features)).abs().max())
    report: dict[str, Any] = {
        "tolerance": tolerance,
        "top1_agrees": top1_agrees,
        "max_probability_diff": probability_diff,
        "max_unit_feature_diff": feature_diff,
        "features_ok": features.dtype == torch.float32 and features.shape == ref_features.shape,
        "first_call_s": round(first_call_s, 3),
    }
    if not top1_agrees:
        reason = "top-1 differs from eager FP32"
    elif not probability_diff <= tolerance:
        reason = f"probabilities differ by {probability_diff:.2g} > {tolerance:g}"
    elif not report["features_ok"]:
        reason = f"features are {features.dtype} {tuple(features.shape)}, not float32 {tuple(ref_features.shape)}"
    else:
        reason = None
    report["accepted"], report["reason"] = reason is None, reason
    return report, backend if reason is None else None


def _factories(candidates: Sequence[str] | Mapping[str, BackendFactory] | None, device: torch.device,
               cache_dir: Path, flags: Sequence[str]) -> tuple[dict[str, BackendFactory], dict[str, str]]:
    """(the candidates to time, eager first; why each other one is not timed: it cannot run
    here, or cannot win on this CPU)."""
    if candidates is None:
        candidates = AUTO_CANDIDATES
    if isinstance(candidates, Mapping):
        chosen = dict(candidates)
    else:
        unknown = [name for name in candidates if name not in FACTORIES]
        if unknown:
            raise ValueError(f"Unknown inference backends {unknown}; known: {', '.join(BACKENDS)}.")
        chosen = {name: FACTORIES[name] for name in candidates}
    eager = chosen.pop(EAGER, EagerBackend)
    left_out = {}
    for name, factory in list(chosen.items()):
        if isinstance(factory, type) and issubclass(factory, Backend):
            ok, why = factory.available(device)
            if not ok:
                left_out[name] = f"unavailable: {why}"
                del chosen[name]
                continue
            ok, why = factory.can_win(device, flags)
            if not ok:
                left_out[name] = f"skipped: {why}"
                del chosen[name]
            else:
                chosen[name] = functools.partial(factory, cache_dir=cache_dir)
    return {EAGER: eager, **chosen}, left_out


def _choice_key(model_key: str, image_size: int, device: torch.device, batch_sizes: Sequence[int],
                names: Sequence[str], cpu: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(the cache key of a choice, what it is made of)."""
    key_parts = {
        "model": model_key,
        **machine_key(device, cpu),
        "image_size": image_size,
        "batch_sizes": sorted(set(batch_sizes)),
        "candidates": sorted(names),
    }
    return hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest(), key_parts


def cached_choice(
    model_key: str,
    image_size: int,
    device: torch.device | str = "cpu",
    cache_dir: str | os.PathLike | None = None,
    *,
    cpu: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]] | None:
    """(backend, report) that :func:`choose_backend` with its default candidates and batch
    sizes cached for these weights (:func:`ml.machine.weights_key`) on this machine, or None:
    what a worker child serving eager FP32 looks for while a warm-up measures. Runs nothing."""
    device = torch.device(device)
    cpu = cpu or cpu_info()
    cache_root = Path(cache_dir if cache_dir is not None else default_cache_dir())
    factories, _ = _factories(None, device, cache_root, cpu["flags"])
    key, _ = _choice_key(model_key, image_size, device, DEFAULT_BATCH_SIZES, list(factories), cpu)
    cached = _cached_entry(cache_root / CACHE_FILE, key, factories)
    return cached[:2] if cached is not None else None


def _cached_entry(cache_path: Path, key: str, factories: Mapping[str, BackendFactory]
                  ) -> tuple[str, dict[str, Any], str | None] | None:
    """(backend, report, when it was measured) cached under ``key``, if it is one of
    ``factories``, else None."""
    entry = _read_cache(cache_path).get("choices", {}).get(key)
    if not entry or entry.get("backend") not in factories:
        return None
    report = {**entry["report"], "cached": True, "cache_file": str(cache_path)}
    return entry["backend"], report, entry.get("measured_at")


def choose_backend(
    model: nn.Module,
    image_size: int,
    candidates: Sequence[str] | Mapping[str, BackendFactory] | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    cache_dir: str | os.PathLike | None = None,
    *,
    use_cache: bool = True,
    model_key: str | None = None,
    warmup: int = 1,
    repeats: int = 3,
    cpu: Mapping[str, Any] | None = None,
    on_call: Callable[[int, int], None] | None = None,
) -> tuple[str, dict[str, Any]]:
    """(name of the fastest backend that agrees with eager FP32, report with every figure).

    ``candidates``: backend names (default :data:`ml.backends.AUTO_CANDIDATES`) or a mapping of
    name to factory (a callable taking the model, returning a :class:`ml.backends.Backend`);
    eager FP32 is always measured, as the reference and the fallback. Each candidate runs on
    a copy of ``model`` (``model`` itself is not changed). A candidate that cannot run here,
    or cannot win on this CPU (:meth:`ml.backends.Backend.can_win`), is not timed; the report
    says why. The winner has the highest throughput at the largest of ``batch_sizes``; the
    report also holds median latencies per batch size.

    The choice is cached in ``cache_dir/backends.json`` (default ``~/.cache/petsite``) per
    ``model_key`` (default: :func:`ml.machine.weights_key` of the model's weights) and
    :func:`ml.machine.machine_key`; a cached choice comes back with ``report["cached"] = True``
    without running the model. ``cpu`` (a :func:`ml.machine.cpu_info`) stands for this
    machine's CPU in the key and the candidates: tests use it to be another machine.
    ``on_call(done, calls)`` after every call of a model (a training run's progress: the
    timing takes minutes on a busy machine, and a cancelled run stops at the next call).
    """
    device = next(model.parameters()).device
    cpu = cpu or cpu_info()
    cache_root = Path(cache_dir if cache_dir is not None else default_cache_dir())
    factories, left_out = _factories(candidates, device, cache_root, cpu["flags"])
    batch_sizes = sorted(set(batch_sizes))
    key, key_parts = _choice_key(model_key or weights_key(model.state_dict()), image_size, device, batch_sizes,
                                 list(factories), cpu)
    cache_path = cache_root / CACHE_FILE
    if use_cache and (cached := _cached_entry(cache_path, key, factories)) is not None:
        logger.info("Inference backend %r (cached choice from %s, measured %s)", cached[0], cache_path, cached[2])
        return cached[:2]

    results = _measure(model, factories, image_size, batch_sizes, warmup, repeats, on_call)
    results.update({name: {"accepted": False, "reason": why} for name, why in left_out.items()})
    chosen = _fastest(results, max(batch_sizes))
    report = {"chosen": chosen, "image_size": image_size, "batch_sizes": batch_sizes,
              "machine": {**machine_key(device, cpu), "cpu_flags": cpu_flags(cpu)}, "candidates": results,
              "cached": False, "cache_file": str(cache_path) if use_cache else None}
    logger.info("Inference backend %r chosen: %s", chosen, summary(report))
    if use_cache:
        _write_cache(cache_path, key, {
            "backend": chosen, "key": key_parts, "report": report,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        })
    return chosen, report


def _measure(model: nn.Module, factories: Mapping[str, BackendFactory], image_size: int, batch_sizes: list[int],
             warmup: int, repeats: int, on_call: Callable[[int, int], None] | None) -> dict[str, dict[str, Any]]:
    """Every candidate's report: checked against eager FP32 (:func:`check_backend`), then
    the accepted ones timed together (:func:`time_backends`)."""
    device = next(model.parameters()).device
    inputs = {b: fixed_inputs(image_size, b, device) for b in batch_sizes}
    results: dict[str, dict[str, Any]] = {}
    calls = [0, 1 + len(factories) + timed_calls(len(factories), batch_sizes, warmup, repeats)]  # done, planned

    def called() -> None:
        calls[0] += 1
        if on_call is not None:
            on_call(*calls)

    with torch.inference_mode():
        reference = EagerBackend(model)(inputs[max(batch_sizes)])
        called()
        accepted: dict[str, Backend] = {}
        for name, factory in factories.items():
            candidate_model = model if name == EAGER else copy.deepcopy(model)
            results[name], backend = check_backend(factory, candidate_model, inputs, reference)
            called()
            if backend is not None:
                accepted[name] = backend
        calls[1] = calls[0] + timed_calls(len(accepted), batch_sizes, warmup, repeats)
        for name, timings in time_backends(accepted, inputs, warmup, repeats, called).items():
            results[name]["timings"] = timings
    return results


def _fastest(results: dict[str, dict[str, Any]], biggest: int) -> str:
    """The accepted candidate of highest throughput at the ``biggest`` batch size (eager FP32
    if none); each accepted one gets its ``speedup_vs_eager``."""

    def throughput(name: str) -> float:
        return results[name]["timings"][str(biggest)]["images_per_s"]

    accepted = [name for name, r in results.items() if r["accepted"]]
    if EAGER in accepted:
        eager_rate = throughput(EAGER)
        for name in accepted:
            results[name]["speedup_vs_eager"] = round(throughput(name) / eager_rate, 3)
    return max(accepted, key=throughput) if accepted else EAGER


def summary(report: Mapping[str, Any]) -> str:
    """One line per candidate of a :func:`choose_backend` report, for logs."""
    parts = []
    for name, r in report["candidates"].items():
        if not r["accepted"]:
            parts.append(f"{name}: rejected ({r['reason']})")
            continue
        timings = ", ".join(
            f"batch {b}: {t['median_ms']:.1f} ms, {t['images_per_s']:.1f} images/s" for b, t in r["timings"].items()
        )
        speedup = f", {r['speedup_vs_eager']:.2f}x eager" if "speedup_vs_eager" in r else ""
        parts.append(f"{name}: {timings}{speedup}, probabilities within {r['max_probability_diff']:.1g}")
    return "; ".join(parts)


def resolve_backend(
    name: str,
    model: nn.Module,
    image_size: int,
    cache_dir: str | os.PathLike | None = None,
    model_key: str | None = None,
) -> tuple[Backend, dict[str, Any] | None]:
    """The backend ``name`` for ``model``, or for ``"auto"`` the one :func:`choose_backend`
    picks (with its report); a chosen backend that then fails to build falls back to eager."""
    if name != AUTO:
        return make_backend(name, model, cache_dir), None
    chosen, report = choose_backend(model, image_size, cache_dir=cache_dir, model_key=model_key)
    try:
        return make_backend(chosen, model, cache_dir), report
    except Exception as exc:  # pragma: no cover - a cached choice for a machine that changed under it
        logger.warning("Inference backend %r failed to load (%r); using eager FP32", chosen, exc)
        return EagerBackend(model), report


