"""Images per second of Petsite's training loop against a bare PyTorch loop, or FP32 against
BF16 autocast, in one run.

The bare loop is the inner loop of torchvision's ``references/classification/train.py``
stripped to its minimum (forward, loss, zero_grad, backward, step). The project's loop
is ``ml.training.train_one_epoch`` as ``fit`` calls it: one-cycle schedule, per-group
learning rates, per-step history, running accuracy and a tqdm bar. Same model (same
initial weights), batch size, DataLoader and images (``ml.synthetic``); the two loops
alternate so that a change in machine load hits both. Goal: ratio >= 0.9.

``--compare precision``: the project's loop in FP32 against the same loop under BF16
autocast (``ml.precision``), same model, images and memory layout (``--channels-last``),
alternating; prints images/s of each and the ratio, with the CPU flags that decide it.

    python bench/train_throughput.py                      # ~1-2 minutes on 2 CPU cores
    python bench/train_throughput.py --image-size 224 --batch-size 64 --device cuda
    python bench/train_throughput.py --compare precision --image-size 224 --batch-size 32 --channels-last \
        --steps 3 --repeats 2                             # ~3 minutes on 2 CPU cores
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import Subset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.data import load_pet_datasets, make_loader  # noqa: E402
from ml.machine import cpu_flags  # noqa: E402
from ml.model import build_resnet34  # noqa: E402
from ml.progress import UNFROZEN  # noqa: E402
from ml.synthetic import make_fake_pets  # noqa: E402
from ml.training import History, make_optimizer, make_scheduler, resolve_device, stage_lrs, train_one_epoch  # noqa: E402


def bare_loop(model, loader, device) -> None:
    """torchvision's reference train_one_epoch, minus logging: the fastest honest loop."""
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    model.train()
    for image, target in loader:
        image, target = image.to(device, non_blocking=True), target.to(device, non_blocking=True)
        output = model(image)
        loss = criterion(output, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def project_loop(model, loader, device, precision: str | None = None) -> None:
    """Stage 2 of ml.recipes.full.fit: what a real training run executes per step."""
    lrs = stage_lrs(2e-3, UNFROZEN)
    optimizer = make_optimizer(model, lrs, weight_decay=0.01)
    scheduler = make_scheduler(optimizer, lrs, len(loader), UNFROZEN)
    scaler = torch.amp.GradScaler("cuda", enabled=(precision or "fp16") == "fp16" and device.type == "cuda")
    train_one_epoch(model, loader, optimizer, scheduler, scaler, device, History(), 1, UNFROZEN,
                    desc=f"project loop {precision or ''}", progress=True, precision=precision)


class ChannelsLast:
    """A loader whose images come in channels_last (NHWC) memory order."""

    def __init__(self, loader):
        self.loader, self.batch_size = loader, loader.batch_size

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for images, targets in self.loader:
            yield images.contiguous(memory_format=torch.channels_last), targets


def images_per_second(loop, initial_model, loader, device, channels_last: bool = False) -> float:
    model = copy.deepcopy(initial_model).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    loop(model, loader, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(loader) * loader.batch_size / (time.perf_counter() - start)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="batches per measured run")
    parser.add_argument("--repeats", type=int, default=4, help="measured runs of each loop (alternating)")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--compare", choices=["loop", "precision"], default="loop",
                        help="project loop vs bare loop, or FP32 vs BF16 autocast (project loop)")
    parser.add_argument("--channels-last", action="store_true", help="model and images in NHWC order")
    return parser.parse_args()


def measure(args: argparse.Namespace, device: torch.device) -> dict[str, list[float]]:
    """Images/s of each compared loop, per measured run, the loops taking turns."""
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        per_class = -(-args.batch_size * args.steps * 10 // 8 // 37)  # enough after the validation split
        root = make_fake_pets(
            tmp, images_per_class=per_class, image_size=max(64, args.image_size), seed=0, test_fraction=0.0
        )
        train = load_pet_datasets(root, image_size=args.image_size, with_test=False).train
        subset = Subset(train, range(args.batch_size * args.steps))
        loader = make_loader(
            subset, args.batch_size, train=True, workers=args.workers, seed=0, pin_memory=device.type == "cuda"
        )
        model = build_resnet34(weights=None)
        if device.type == "cuda":  # what fit() does on a GPU, for both loops
            model = model.to(memory_format=torch.channels_last)

        warmup = make_loader(Subset(train, range(args.batch_size * 2)), args.batch_size, train=True)
        if args.channels_last:
            loader, warmup = ChannelsLast(loader), ChannelsLast(warmup)
        if args.compare == "precision":
            loops = {"fp32": lambda m, ld, d: project_loop(m, ld, d, "fp32"),
                     "bf16": lambda m, ld, d: project_loop(m, ld, d, "bf16")}
        else:
            loops = {"bare": bare_loop, "project": project_loop}
        for loop in loops.values():
            images_per_second(loop, model, warmup, device, args.channels_last)

        results: dict[str, list[float]] = {name: [] for name in loops}
        first, second = loops
        for repeat in range(args.repeats):
            order = [first, second] if repeat % 2 == 0 else [second, first]  # no first-mover bias
            for name in order:
                results[name].append(images_per_second(loops[name], model, loader, device, args.channels_last))
    return results


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    results = measure(args, device)
    print(
        f"device {device}, threads {torch.get_num_threads()}, image size {args.image_size}, "
        f"batch size {args.batch_size}, {args.steps} steps x {args.repeats} runs per loop, "
        f"channels_last {'on' if args.channels_last else 'off'}"
    )
    print("CPU flags: " + ", ".join(f"{flag} {'yes' if on else 'no'}" for flag, on in cpu_flags().items()))
    if args.compare == "precision":
        for name, values in results.items():
            print(f"{name:>5}: best {max(values):7.1f} images/s, median {statistics.median(values):7.1f}  "
                  f"(runs: {', '.join(f'{v:.1f}' for v in values)})")
        print(f"ratio BF16 autocast / FP32: {max(results['bf16']) / max(results['fp32']):.2f} (best runs), "
              f"{statistics.median(results['bf16']) / statistics.median(results['fp32']):.2f} (medians)")
        return
    # Best run per loop, as timeit does: background load only ever slows a run down.
    bare, project = max(results["bare"]), max(results["project"])
    for name, values in results.items():
        print(
            f"{name:>8} loop: best {max(values):7.1f} images/s, median {statistics.median(values):7.1f}  "
            f"(runs: {', '.join(f'{v:.1f}' for v in values)})"
        )
    print(
        f"ratio project/bare: {project / bare:.3f} (best runs), "
        f"{statistics.median(results['project']) / statistics.median(results['bare']):.3f} (medians); goal >= 0.9"
    )


if __name__ == "__main__":
    main()
