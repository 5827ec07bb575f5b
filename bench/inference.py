"""Batch-1 latency and batch-16 throughput of every inference backend, and of ``auto``, in one run.

Each backend runs inside its own ``ml.inference.Predictor`` (``classify_batch``:
the worker's path, softmax, top-k and verdicts included) on the same ResNet34 checkpoint
(37 classes, random weights, 224 px) and the same images. The backends take turns, one
pass each per round, so that a change in machine load hits all of them; medians and p95
per backend, ratios to eager FP32 from this run. ``auto`` is a Predictor that chose its
backend itself (``ml.backend_choice.choose_backend``, with an empty cache: the time to choose
is printed). Goal (issue 9): ``auto`` >= 0.9 x the best backend of the run.

    python bench/inference.py                           # ~2-3 minutes on 2 cores, torch.compile included
    python bench/inference.py --no-compile --rounds-1 20 --rounds-16 5
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml import backend_choice, backends, machine  # noqa: E402
from ml.breeds import BREED_KEYS  # noqa: E402
from ml.checkpoints import load_checkpoint, save_checkpoint  # noqa: E402
from ml.inference import Predictor  # noqa: E402
from ml.model import build_resnet34  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(predictor: Predictor, tensors: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    predictor.classify_batch(tensors, batch_size=len(tensors))
    return time.perf_counter() - start


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--rounds-1", type=int, default=30, help="timed batch-1 passes per backend")
    parser.add_argument("--rounds-16", type=int, default=8, help="timed batch-16 passes per backend")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out (it compiles ~1 min)")
    return parser.parse_args()


def backends_to_measure(args: argparse.Namespace) -> list[str]:
    """The backends that run here (printed with the machine), torch.compile left out if asked."""
    info = machine.cpu_info()
    flags = machine.cpu_flags(info)
    print(f"CPU: {info['model']}; torch {torch.__version__}, capability {info['torch_capability']}, "
          f"{torch.get_num_threads()} threads")
    print("CPU flags: " + ", ".join(f"{flag} {'yes' if present else 'no'}" for flag, present in flags.items()))
    names = [n for n in backends.available_backends() if not (args.no_compile and n == backends.COMPILE)]
    skipped = [n for n in backends.BACKENDS if n not in names]
    if skipped:
        print(f"not measured: {', '.join(skipped)}")
    return names


def make_predictors(names: list[str], image_size: int) -> dict[str, Predictor]:
    """A Predictor per backend, and ``auto``'s (timed: choosing, then from the cache)."""
    torch.manual_seed(0)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "bench.pt", build_resnet34(num_classes=len(BREED_KEYS), weights=None),
                               classes=BREED_KEYS, image_size=image_size)
        buffer.write(path.read_bytes())
        checkpoint = load_checkpoint(buffer.getvalue())
        predictors: dict[str, Predictor] = {name: Predictor(checkpoint, backend=name, backend_cache_dir=tmp)
                                             for name in names}
        start = time.perf_counter()
        auto = Predictor(checkpoint, backend="auto", backend_cache_dir=tmp)
        choose_s = time.perf_counter() - start
        start = time.perf_counter()
        Predictor(checkpoint, backend="auto", backend_cache_dir=tmp)
        cached_s = time.perf_counter() - start
    print(f"auto chose {auto.backend.name!r} in {choose_s:.1f} s (a second Predictor, from the cache: "
          f"{cached_s:.1f} s, checkpoint hash included)")
    print("  " + backend_choice.summary(auto.backend_report).replace("; ", "\n  "))
    return {**predictors, "auto": auto}


def measure(predictors: dict[str, Predictor], batch: list[torch.Tensor], args: argparse.Namespace
            ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(batch-1 seconds, batch-16 seconds) per backend, after a warm-up, taking turns."""
    for name, predictor in predictors.items():  # warm-up; torch.compile compiles each shape here
        start = time.perf_counter()
        for tensors in (batch[:1], batch, batch[:1], batch):
            timed(predictor, tensors)
        print(f"warm-up {name}: {time.perf_counter() - start:.1f} s")
    single: dict[str, list[float]] = {name: [] for name in predictors}
    sixteen: dict[str, list[float]] = {name: [] for name in predictors}
    for i in range(max(args.rounds_1, args.rounds_16)):
        order = list(predictors) if i % 2 == 0 else list(reversed(predictors))
        for name in order:
            if i < args.rounds_1:
                single[name].append(timed(predictors[name], batch[i % 16:i % 16 + 1]))
            if i < args.rounds_16:
                sixteen[name].append(timed(predictors[name], batch))
    return single, sixteen


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    predictors = make_predictors(backends_to_measure(args), args.image_size)
    generator = torch.Generator().manual_seed(0)
    batch = list(torch.randn(16, 3, args.image_size, args.image_size, generator=generator))
    single, sixteen = measure(predictors, batch, args)

    eager_1, eager_16 = statistics.median(single["eager"]), statistics.median(sixteen["eager"])
    rates = {name: 16 / statistics.median(values) for name, values in sixteen.items()}
    best = max(rate for name, rate in rates.items() if name != "auto")
    print(f"\n{args.image_size} px, {args.rounds_1} batch-1 and {args.rounds_16} batch-16 passes per backend, "
          "interleaved\n")
    print("| backend | batch 1 median ms | batch 1 p95 ms | batch 16 images/s | batch 1 speed-up | batch 16 speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in predictors:
        median_1 = statistics.median(single[name])
        label = f"auto ({predictors['auto'].backend.name})" if name == "auto" else name
        print(f"| {label} | {1000 * median_1:.1f} | {1000 * percentile(single[name], 0.95):.1f} | "
              f"{rates[name]:.1f} | {eager_1 / median_1:.2f} x | {rates[name] / (16 / eager_16):.2f} x |")
    print(f"\nauto / best backend at batch 16: {rates['auto'] / best:.2f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
