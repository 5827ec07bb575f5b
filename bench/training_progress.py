"""How a training run from the site looks from its page: how long it takes, how often its
progress row changes, how right its time left is, and how fast cancel takes effect.

The run is the training worker's own (``classifier.training_services.execute``, the quick recipe
from the active model), on ``ml.synthetic``'s generated pets, in a scratch folder
(``PETSITE_VAR_DIR``: its own SQLite database, media, feature and backend caches). A
thread reads the run's row every 0.2 s, as the page's poll would (every 2 s), and records
each change. Reported:

- the run's duration and each stage's;
- how many times the row changed, and the longest time it stayed the same (and in which
  stage): the page can show nothing newer than the row;
- the time left it showed against the time that was really left (median error once the
  estimate settles, and the largest fall within 20 s, the finding's 31 -> 9 -> 2 minutes);
- with ``--cancel``: runs again (empty caches) and cancels each named stage after its
  ``--cancel-after``-th step, as the page's button does; the steps the run still reported and
  the seconds until it was marked cancelled.

No ImageNet weights exist here: the active model is a seeded random ResNet34 at the run's
image size. Nothing leaves 127.0.0.1 (the broker is only asked to broadcast the new model).

    python bench/training_progress.py                              # 128 px, 40 images per breed
    python bench/training_progress.py --cancel timing features-train
    python bench/training_progress.py --images-per-class 100 --image-size 224 --threads 2
    python bench/training_progress.py --busy 2      # two processes spinning on the CPU meanwhile
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup(scratch: Path, broker: str) -> None:
    os.environ.update({"PETSITE_VAR_DIR": str(scratch), "DEBUG": "1", "CELERY_BROKER_URL": broker,
                       "PETSITE_INFERENCE_BACKEND": "eager", "DJANGO_SETTINGS_MODULE": "petsite.settings",
                       "LOG_LEVEL": "WARNING"})
    os.environ.pop("DATABASE_URL", None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


class Watcher(threading.Thread):
    """Reads the run's row every ``every`` seconds; keeps (time, progress, state) at each change."""

    def __init__(self, pk: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.pk, self.every, self.changes, self.done = pk, every, [], threading.Event()

    def run(self) -> None:
        from django.db import connection

        from training.models import TrainingRun

        last = None
        try:
            while not self.done.is_set():
                row = TrainingRun.objects.filter(pk=self.pk).values("progress", "state").first()
                key = json.dumps(row, sort_keys=True, default=str)
                if key != last:
                    self.changes.append((time.monotonic(), row["progress"], row["state"]))
                    last = key
                self.done.wait(self.every)
        finally:
            connection.close()


def start_run(image_size: int):
    from django.contrib.auth import get_user_model

    from registry import services
    from training.models import TrainingRun

    user = get_user_model().objects.get_or_create(username="bench", defaults={"is_superuser": True})[0]
    return TrainingRun.objects.create(requested_by=user, base_version=services.active_version(), recipe="quick",
                                      image_size=image_size)


def one_run(image_size: int, cancel_stage: str | None = None, cancel_after: int = 2) -> dict:
    """Execute a run as the training worker does, watched; cancelled in ``cancel_stage`` if given."""
    from ml import progress
    from training import services as training_services
    from training.models import TrainingRun

    run = start_run(image_size)
    stages: list[tuple[float, str]] = []
    cancel = {"at": None, "steps_after": 0, "stage": None, "count": 0}

    def observe(update: dict) -> None:
        if "stage" in update:
            stages.append((time.monotonic(), update["stage"]))
            cancel["stage"] = update["stage"]
        if cancel["at"] is not None:
            cancel["steps_after"] += "step" in update and "stage" not in update
        elif cancel_stage and cancel["stage"] == cancel_stage and update.get("step"):
            cancel["count"] += 1
            if cancel["count"] == cancel_after:
                training_services.cancel(run)  # what the page's button does
                cancel["at"] = time.monotonic()

    watcher = Watcher(run.pk)
    watcher.start()
    started = time.monotonic()
    training_services.execute(run.pk, observer=observe)
    ended = time.monotonic()
    time.sleep(0.5)
    watcher.done.set()
    watcher.join()
    run = TrainingRun.objects.get(pk=run.pk)
    result = {"state": run.state, "seconds": round(ended - started, 1), "message": run.message}
    bounds = [t for t, _ in stages] + [ended]
    result["stages"] = [{"stage": code, "label": progress.label(code), "seconds": round(bounds[i + 1] - t, 1)}
                        for i, (t, code) in enumerate(stages)]
    times = [started] + [t for t, _, _ in watcher.changes] + [ended]
    gaps = [(times[i + 1] - times[i], i) for i in range(len(times) - 1)]
    longest, where = max(gaps)
    gap_stage = watcher.changes[where - 1][1].get("stage") if where > 0 else None
    result["row_changes"] = len(watcher.changes)
    result["longest_gap_s"] = round(longest, 1)
    result["longest_gap_stage"] = progress.label(gap_stage)
    result["changes_per_minute"] = round(60 * len(watcher.changes) / max(ended - started, 1e-9), 1)
    estimates = [(t, p["eta_seconds"]) for t, p, _ in watcher.changes if p.get("eta_seconds") is not None]
    if estimates and not cancel_stage:
        errors = [abs(eta - (ended - t)) / max(ended - t, 1.0) for t, eta in estimates]
        falls = [eta - later_eta - (later - t) for i, (t, eta) in enumerate(estimates)
                 for later, later_eta in estimates[i + 1:] if later - t <= 20]
        result["eta"] = {"first_after_s": round(estimates[0][0] - started, 1), "samples": len(estimates),
                         "median_error": round(statistics.median(errors), 2),
                         "largest_fall_within_20s_s": round(max(falls, default=0.0), 1),
                         "first_s": estimates[0][1], "true_left_then_s": round(ended - estimates[0][0], 1)}
    result["trace"] = [[round(t - started, 1), p.get("stage"), p.get("step"), p.get("steps"), p.get("percent"),
                        p.get("eta_seconds"), round(ended - t, 1)] for t, p, _ in watcher.changes]
    if cancel_stage:
        result["cancel"] = {"stage": cancel_stage, "steps_reported_after": cancel["steps_after"],
                            "seconds_to_cancelled": round(ended - cancel["at"], 2) if cancel["at"] else None}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images-per-class", type=int, default=40)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--cancel", nargs="*", default=[], help="stages to cancel in, e.g. timing features-train")
    parser.add_argument("--cancel-after", type=int, default=2, help="steps of the stage before cancelling")
    parser.add_argument("--broker", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/2"))
    parser.add_argument("--busy", type=int, default=0,
                        help="processes that spin on the CPU meanwhile, as on a busy machine (2 on 2 cores)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        bench(args)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def bench(args: argparse.Namespace) -> None:

    scratch = Path(tempfile.mkdtemp(prefix="petsite-bench-training-"))
    setup(scratch, args.broker)
    import torch

    from ml.breeds import BREED_KEYS
    from ml.checkpoints import save_checkpoint
    from ml.model import build_resnet34
    from ml.synthetic import make_fake_pets
    from registry.services import register_model

    if args.threads:
        torch.set_num_threads(args.threads)
    from django.conf import settings

    make_fake_pets(settings.PETSITE_DATASET_DIR, images_per_class=args.images_per_class,
                   image_size=max(args.image_size + 32, 160))
    torch.manual_seed(0)
    checkpoint = save_checkpoint(scratch / "start.pt", build_resnet34(len(BREED_KEYS), weights=None),
                                 classes=BREED_KEYS, image_size=args.image_size, metrics={})
    register_model(checkpoint, name="bench-start", activate=True)

    report = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg(),
                          "busy_processes": args.busy},
              "images_per_class": args.images_per_class, "image_size": args.image_size}
    print(f"quick run, {args.image_size} px, {args.images_per_class} generated images per breed ...", flush=True)
    report["run"] = one_run(args.image_size)
    print(json.dumps({k: v for k, v in report["run"].items() if k != "trace"}, indent=1), flush=True)
    print("trace: seconds, stage, step, steps, percent, time left shown, time really left")
    for row in report["run"]["trace"]:
        print("  ", *row, flush=True)
    report["cancels"] = []
    for stage in args.cancel:
        import shutil

        shutil.rmtree(settings.PETSITE_FEATURE_CACHE_DIR, ignore_errors=True)  # the stages run again
        shutil.rmtree(settings.PETSITE_BACKEND_CACHE_DIR, ignore_errors=True)
        print(f"cancel in {stage} ...", flush=True)
        report["cancels"].append(one_run(args.image_size, stage, args.cancel_after))
        print(json.dumps(report["cancels"][-1]["cancel"]), report["cancels"][-1]["state"], flush=True)
    report["machine"]["load_average_after"] = os.getloadavg()
    print(json.dumps(report))
    if not args.keep:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
