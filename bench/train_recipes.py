"""Time to a trained model, quick recipe against full recipe, on the same data and machine.

Each recipe runs end to end as ``train`` runs it (``ml.runs.run``, recipe ``quick`` or
``full``): data, training, evaluation, calibration, figures, the
checkpoint. The quick recipe runs twice, first with an empty feature cache (a first
run) and then with the cache the first run filled (every later run on the same images
and body, e.g. with other head settings). Reported: seconds, the test accuracy of each
model, and the ratios full / quick.

No ImageNet weights exist where this was written, so by default both recipes start from
the same seeded random ResNet34 (``--weights imagenet`` or ``--weights PATH`` where they
exist); the quick recipe then trains a head on random features, which understates it.
By default the data are ``ml.synthetic``'s generated breeds (the learning test's set);
``--data DIR`` takes a real Oxford-IIIT Pet folder. A stand-in for transfer learning:
``--save-full body.pt`` keeps the full recipe's model, and a second run on other images
(``--data-seed 1 --weights body.pt``) starts both recipes from that trained body.

    python bench/train_recipes.py                           # ~5-8 minutes on 2 CPU cores
    python bench/train_recipes.py --image-size 64
    python bench/train_recipes.py --data var/pets --weights imagenet --image-size 224 --workers 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.config import FullOptions, QuickOptions, RunConfig  # noqa: E402
from ml.runs import run  # noqa: E402
from ml.synthetic import make_fake_pets  # noqa: E402

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [flag for flag in CPU_FLAGS if flag in flags]


def timed(recipe: str, config: RunConfig, out_dir: Path) -> dict:
    start = time.perf_counter()
    result = run(recipe, config, out_dir, log=lambda line: print("   ", line, flush=True))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "accuracy": result.metrics["accuracy"], "split": result.metrics["split"],
            "top5_accuracy": result.metrics["top5_accuracy"], "features": result.history.get("features")}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="an Oxford-IIIT Pet folder (default: generated breeds)")
    parser.add_argument("--images-per-class", type=int, default=80, help="generated data: images per breed")
    parser.add_argument("--data-seed", type=int, default=0, help="generated data: its seed")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--weights", default=None, help="imagenet, a .pth file, or none (seeded random body)")
    parser.add_argument("--views", type=int, default=QuickOptions().views)
    parser.add_argument("--head-epochs", type=int, default=QuickOptions().head_epochs)
    parser.add_argument("--epochs", type=int, default=4, help="full recipe: unfrozen epochs")
    parser.add_argument("--freeze-epochs", type=int, default=1, help="full recipe: frozen epochs")
    parser.add_argument("--lr", type=float, help="full recipe's peak lr (default: 8e-3 random body, else 2e-3)")
    parser.add_argument("--lr-mult", type=float, help="full recipe (default: 3 random body, else 100)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bf16", action="store_true",
                        help="BF16 for both: the quick recipe's body backend and the full recipe's autocast "
                             "(default: FP32 for both, so that they compare alike)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--save-full", help="copy the full recipe's checkpoint here (a body for --weights)")
    return parser.parse_args()


def configs(args: argparse.Namespace, data: str, weights: str | None, cache_dir: Path) -> dict[str, RunConfig]:
    """The configuration of each recipe: the same base, but for the full recipe's crop and
    precision on a random body (the learning test's settings, tests/ml/test_training.py)."""
    pretrained = weights is not None
    common = dict(data=data, image_size=args.image_size, batch_size=args.batch_size, workers=args.workers,
                  threads=args.threads, device=args.device, seed=0, weights=weights, progress=False)
    quick = QuickOptions(cache_dir=str(cache_dir), views=args.views, head_epochs=args.head_epochs,
                         backend="bf16" if args.bf16 else "eager")
    full = FullOptions(epochs=args.epochs, freeze_epochs=args.freeze_epochs,
                       lr=args.lr or (2e-3 if pretrained else 8e-3),
                       lr_mult=args.lr_mult or (100.0 if pretrained else 3.0))
    return {
        "quick": RunConfig(**common, quick=quick),
        "full": RunConfig(**common, full=full, crop_scale=(0.35, 1.0) if pretrained else (0.7, 1.0),
                          precision="bf16" if args.bf16 else "fp32"),
    }


def main() -> None:
    args = parse_args()
    weights = None if args.weights in (None, "none") else args.weights

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data or str(make_fake_pets(tmp / "pets", images_per_class=args.images_per_class, image_size=64,
                                               seed=args.data_seed, test_fraction=0.2))
        config = configs(args, data, weights, tmp / "feature-cache")
        load_before = os.getloadavg()
        results = {}
        for name, recipe in [("quick (empty cache)", "quick"), ("quick (cache filled)", "quick"), ("full", "full")]:
            print(f"{name} ...", flush=True)
            results[name] = timed(recipe, config[recipe], tmp / name.split()[0].strip("()") / str(len(results)))
        if args.save_full:
            shutil.copy(tmp / "full" / "2" / "model.pt", args.save_full)
        load_after = os.getloadavg()
    report(args, weights, results, load_before, load_after)


def report(args: argparse.Namespace, weights: str | None, results: dict, load_before: tuple, load_after: tuple) -> None:
    full_s = results["full"]["seconds"]
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, flags {cpu_flags()}, "
          f"torch {torch.__version__}, {args.threads} threads; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after")
    print(f"data: {'generated' if not args.data else args.data}, {args.image_size} px, "
          f"weights {weights or 'seeded random body'}, {'BF16' if args.bf16 else 'FP32'}")
    print()
    print("| recipe | seconds to a model | full / this | test accuracy | top-5 |")
    print("| --- | --- | --- | --- | --- |")
    for name, row in results.items():
        print(f"| {name} | {row['seconds']:.1f} | {full_s / row['seconds']:.2f} | {row['accuracy']:.3f} | "
              f"{row['top5_accuracy']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "cpu_flags": cpu_flags(), "load": [
            load_before, load_after], "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
