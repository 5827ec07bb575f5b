"""Training from the site: staff start a run, watch it, compare its model with the active
one (champion and challenger) and promote it.

A run goes through these steps, each in one function below:

1. ``start_run`` (web): one run at a time (a unique constraint on the database), the task
   goes to the ``training`` queue, so classification never waits behind training.
2. ``execute`` (training worker): export the reviewed images of the training set, train
   with the chosen recipe while a heartbeat thread keeps the row fresh and watches for
   cancellation, compare, and only then register the model (not active).
3. ``compare``: champion and challenger on the check set (reviewed images that no run
   ever trains on) and on the dataset's test split.
4. ``promote`` (web): activate the challenger; a worse one only with an explicit yes.

The web process never imports torch: the ml functions that need it are imported inside
the functions that run in the worker.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import QuerySet
from django.db.models.functions import Mod
from django.utils import timezone

from ml import services as ml_services
from ml.models import ModelVersion

from .models import NOT_A_PET, PetImage, TrainingRun

log = logging.getLogger(__name__)

State = TrainingRun.State

# Every fifth reviewed image, by id, is held out: a fixed rule, so an image never moves
# between the training set and the check set, whatever is reviewed later.
CHECK_SET_EVERY = 5
HEARTBEAT_EVERY = 10  # seconds
# A running run whose heartbeat is older than this lost its worker.
HEARTBEAT_TIMEOUT = timedelta(minutes=2)


class TrainingError(Exception):
    """Something staff asked for that cannot be done; the message says why and what to do."""


class Cancelled(Exception):
    """Raised inside a run (from the progress callback) when staff cancelled it."""


# --- The two sets of reviewed images ------------------------------------------------------

def in_check_set(pk: int) -> bool:
    return pk % CHECK_SET_EVERY == 0


def _reviewed_breeds() -> QuerySet:
    """Images with a reviewed breed ("not a cat or dog" teaches no breed)."""
    return PetImage.objects.labelled().exclude(reviewed_label=NOT_A_PET).annotate(check_slot=Mod("pk", CHECK_SET_EVERY))


def check_set() -> QuerySet:
    return _reviewed_breeds().filter(check_slot=0)


def training_set() -> QuerySet:
    return _reviewed_breeds().exclude(check_slot=0)


# --- Starting, cancelling, watching --------------------------------------------------------

def expire_dead_runs() -> int:
    """Mark failed the running runs whose worker stopped beating (killed, machine lost)."""
    stale = timezone.now() - HEARTBEAT_TIMEOUT
    return TrainingRun.objects.filter(state=State.RUNNING, heartbeat_at__lt=stale).update(
        state=State.FAILED, is_current=False, finished_at=timezone.now(),
        message="The training worker stopped without finishing (no heartbeat for "
                f"{int(HEARTBEAT_TIMEOUT.total_seconds() // 60)} minutes). No model was registered.",
    )


def current_run() -> TrainingRun | None:
    expire_dead_runs()
    return TrainingRun.objects.filter(is_current=True).first()


def start_run(
    user, *, start_from: str = TrainingRun.Start.ACTIVE, recipe: str = "auto", epochs: int | None = None,
    image_size: int = 224,
) -> TrainingRun:
    """Record a run and send it to the training queue; refused while another run is unfinished."""
    base = ml_services.active_version()
    if start_from == TrainingRun.Start.ACTIVE and base is None:
        raise TrainingError("No model is active yet, so there is nothing to start from: start from ImageNet weights.")
    expire_dead_runs()
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                requested_by=user, start_from=start_from, base_version=base, recipe=recipe, epochs=epochs,
                image_size=image_size,
            )
    except IntegrityError:
        busy = TrainingRun.objects.filter(is_current=True).first()
        what = f"Training run {busy.pk} is {busy.get_state_display().lower()}" if busy else "Another run started"
        raise TrainingError(f"{what}: one run at a time. Wait for it to finish, or cancel it.") from None

    from .tasks import train_model

    transaction.on_commit(lambda: train_model.delay(run.pk))
    return run


def cancel(run: TrainingRun) -> None:
    """A queued run stops at once; a running one at its next step (the worker notices)."""
    now = timezone.now()
    if TrainingRun.objects.filter(pk=run.pk, state=State.QUEUED).update(
        state=State.CANCELLED, is_current=False, cancel_requested=True, finished_at=now,
        message="Cancelled before it started.",
    ):
        return
    if not TrainingRun.objects.filter(pk=run.pk, state=State.RUNNING).update(cancel_requested=True):
        raise TrainingError("This run has already finished.")


def run_status(run: TrainingRun) -> dict[str, Any]:
    """What the run page shows and polls: state, progress and an estimate of the time left."""
    progress = dict(run.progress)
    done, total = progress.get("step"), progress.get("steps")
    if run.state == State.RUNNING and done and total and run.started_at and progress.get("stage") != "evaluating":
        elapsed = (timezone.now() - run.started_at).total_seconds()
        progress["eta_seconds"] = round(elapsed / done * (total - done))
    return {
        "id": run.pk, "state": run.state, "state_display": run.get_state_display(), "finished": run.finished,
        "cancel_requested": run.cancel_requested, "progress": progress, "message": run.message,
        "url": run.get_absolute_url(),
    }


# --- The run itself (training worker) ------------------------------------------------------

class _Heartbeat(threading.Thread):
    """Keeps ``heartbeat_at`` fresh while the run works, and reads the cancel flag.

    A thread, because a run spends minutes between progress callbacks (evaluation,
    figures), and the row must not look dead meanwhile.
    """

    def __init__(self, pk: int):
        super().__init__(name=f"training-run-{pk}-heartbeat", daemon=True)
        self.pk, self.cancelled, self._stop_event = pk, False, threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(HEARTBEAT_EVERY):
                self.beat()
        finally:
            connection.close()  # this thread's own connection

    def beat(self) -> None:
        try:
            TrainingRun.objects.filter(pk=self.pk).update(heartbeat_at=timezone.now())
            self.cancelled = TrainingRun.objects.filter(pk=self.pk, cancel_requested=True).exists()
        except Exception:  # a database blip must not kill the run; the next beat tries again
            log.warning("Heartbeat of training run %s failed", self.pk, exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


class _Progress:
    """The progress callback given to the training code: saves what it reports (at most
    once a second) and stops the run when staff cancelled it."""

    def __init__(self, run: TrainingRun, heartbeat: _Heartbeat):
        self.run, self.heartbeat, self.last_saved = run, heartbeat, 0.0

    def __call__(self, update: dict[str, Any]) -> None:
        if self.heartbeat.cancelled:
            raise Cancelled
        self.run.progress = {**self.run.progress, **update}
        milestone = "stage" in update or "history" in update  # few, and the page shows them: saved at once
        if milestone or time.monotonic() - self.last_saved >= 1.0:
            TrainingRun.objects.filter(pk=self.run.pk).update(progress=self.run.progress)
            self.last_saved = time.monotonic()


def execute(run_id: int) -> None:
    """The training task: the whole run, and the state it ends in whatever happens."""
    now = timezone.now()
    # Only a queued run starts: a run cancelled while queued, or a second delivery, does nothing.
    if not TrainingRun.objects.filter(pk=run_id, state=State.QUEUED).update(
        state=State.RUNNING, started_at=now, heartbeat_at=now
    ):
        return
    run = TrainingRun.objects.get(pk=run_id)
    heartbeat = _Heartbeat(run.pk)
    heartbeat.beat()  # reads the cancel flag before the first step
    heartbeat.start()
    run_dir = Path(settings.PETSITE_RUNS_DIR) / f"site-run-{run.pk}"
    try:
        _train_compare_register(run, run_dir, _Progress(run, heartbeat))
    except Cancelled:
        _finish(run, State.CANCELLED, "Cancelled by staff. No model was registered.")
    except Exception as exc:
        log.exception("Training run %s failed", run.pk)
        _finish(run, State.FAILED, f"The run failed: {exc} No model was registered.")
    finally:
        heartbeat.stop()
        close_old_connections()


def _finish(run: TrainingRun, state: str, message: str) -> None:
    TrainingRun.objects.filter(pk=run.pk, state=State.RUNNING).update(
        state=state, is_current=False, finished_at=timezone.now(), message=message
    )


def _train_compare_register(run: TrainingRun, run_dir: Path, progress: Callable[[dict], None]) -> None:
    from ml.recipes import FULL, QuickConfig, choose_recipe, run_quick
    from ml.training import TrainConfig, resolve_device, run_training

    from .exports import export_reviewed  # imports ml.data, hence torch: the worker's only

    progress({"stage": "exporting reviewed images"})
    reviewed_dir = run_dir / "reviewed"
    shutil.rmtree(reviewed_dir, ignore_errors=True)
    counts = export_reviewed(reviewed_dir, images=training_set())
    run.num_reviewed_images = sum(counts.values())
    TrainingRun.objects.filter(pk=run.pk).update(num_reviewed_images=run.num_reviewed_images)

    recipe, why = choose_recipe(run.recipe, resolve_device("auto"))
    dataset_dir = Path(settings.PETSITE_DATASET_DIR)
    options = dict(data=str(dataset_dir), extra_data=[str(reviewed_dir)] if counts else [], image_size=run.image_size,
                   workers=settings.PETSITE_TRAINING_LOADER_WORKERS, progress=False)
    if recipe == FULL:
        make_config, train = TrainConfig, run_training
        options.update({"epochs": run.epochs} if run.epochs else {})
    else:
        make_config, train = QuickConfig, run_quick
        options.update(cache_dir=str(settings.PETSITE_FEATURE_CACHE_DIR), backend="auto",
                       backend_cache_dir=str(settings.PETSITE_BACKEND_CACHE_DIR))
        options.update({"head_epochs": run.epochs} if run.epochs else {})
    base = run.base_version if run.start_from == TrainingRun.Start.ACTIVE else None
    if run.start_from == TrainingRun.Start.ACTIVE and base is None:
        raise TrainingError("the model it was to start from no longer exists.")
    with ml_services.local_checkpoint(base) if base else contextlib.nullcontext() as base_path:
        config = make_config(**options, **({"init_checkpoint": str(base_path)} if base_path else {}))
        TrainingRun.objects.filter(pk=run.pk).update(settings={**config.to_dict(), "recipe": recipe, "why": why})
        result = train(config, run_dir / "train", log=log.info, on_progress=progress)

    progress({"stage": "comparing with the active model"})
    champion = ml_services.active_version()
    comparison = compare(result.checkpoint, champion, dataset_dir, run_dir / "compare")
    progress({"stage": "registering the model"})  # raises Cancelled if staff cancelled meanwhile

    with transaction.atomic():
        version = ml_services.register_model(
            result.checkpoint, name=f"site-run-{run.pk}-{timezone.now():%Y%m%d-%H%M%S}", run_dir=result.out_dir,
            notes=f"Trained from the site (run {run.pk}), from {run.get_start_from_display().lower()}.",
        )
        finished = TrainingRun.objects.filter(pk=run.pk, state=State.RUNNING, cancel_requested=False).update(
            state=State.SUCCEEDED, is_current=False, finished_at=timezone.now(), message=_summary(comparison),
            result=version, comparison=comparison,
        )
        if not finished:
            raise Cancelled  # cancelled (or expired) at the last moment: roll the registration back


def _summary(comparison: dict) -> str:
    if comparison.get("champion") is None:
        return "Finished. No model was active to compare with: promote this one to start classifying."
    return "Finished. " + (
        "The new model is at least as good as the active one: promotion is recommended."
        if comparison["recommended"] else "The new model is worse than the active one on at least one set."
    )


# --- Champion and challenger ---------------------------------------------------------------

def compare(challenger_path: Path, champion: ModelVersion | None, dataset_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Both models on the check set and on the dataset's test split (when it has one).

    Returns plain JSON: per set, each model's accuracy and top-5 accuracy; on the check set
    the images that go from right to wrong and from wrong to right; per breed, the change
    of recall on the test split. ``recommended``: the challenger is at least as good on
    every set that has images.

    Both models are evaluated here the same way (``run_evaluation``, FP32), rather than
    reusing the run's own test metrics: the quick recipe's come from its cached body
    features, possibly computed in BF16, and would not compare like with like.
    """
    from ml.data import DatasetError
    from ml.inference import Predictor
    from ml.training import run_evaluation

    models = {"challenger": Predictor(challenger_path)}
    comparison: dict[str, Any] = {"champion": champion.name if champion else None, "sets": {}}
    test_metrics = {}
    with ml_services.local_checkpoint(champion) if champion else contextlib.nullcontext() as champion_path:
        if champion_path:
            models["champion"] = Predictor(champion_path)
        comparison["sets"]["check"] = _compare_on_check_set(models)
        for role, path in (("challenger", challenger_path), ("champion", champion_path)):
            if path is None:
                continue
            try:
                test_metrics[role], _ = run_evaluation(
                    path, dataset_dir, out_dir / role, split="test", workers=0, progress=False
                )
            except DatasetError as exc:
                comparison["test_unavailable"] = str(exc)
                break
    if test_metrics:
        comparison["sets"]["test"] = {
            "num_images": test_metrics["challenger"]["num_images"],
            **{role: {"accuracy": metrics["accuracy"], "top5_accuracy": metrics["top5_accuracy"]}
               for role, metrics in test_metrics.items()},
        }
        if "champion" in test_metrics:
            comparison["per_breed"] = _per_breed_changes(test_metrics["champion"], test_metrics["challenger"])
    comparison["recommended"] = champion is None or all(
        numbers["challenger"]["accuracy"] >= numbers["champion"]["accuracy"]
        for numbers in comparison["sets"].values() if numbers["num_images"] and "champion" in numbers
    )
    return comparison


def _compare_on_check_set(models: dict) -> dict[str, Any]:
    images = list(check_set().order_by("pk"))
    right: dict[str, dict[int, bool]] = {role: {} for role in models}
    numbers: dict[str, Any] = {"num_images": len(images)}
    for role, predictor in models.items():
        top1 = top5 = 0
        for pet in images:
            with pet.image.open("rb") as f:
                labels = [p.label for p in predictor.predict(f, k=5)]
            right[role][pet.pk] = labels[0] == pet.reviewed_label
            top1 += right[role][pet.pk]
            top5 += pet.reviewed_label in labels
        numbers[role] = {
            "accuracy": top1 / len(images) if images else None, "top5_accuracy": top5 / len(images) if images else None
        }
    if "champion" in models:
        before, after = right["champion"], right["challenger"]
        numbers["right_to_wrong"] = [pk for pk in before if before[pk] and not after[pk]]
        numbers["wrong_to_right"] = [pk for pk in before if not before[pk] and after[pk]]
    return numbers


def _per_breed_changes(champion: dict, challenger: dict) -> list[dict[str, Any]]:
    """Recall per breed, before and after, largest changes first (unchanged breeds left out)."""
    before = {row["class"]: row for row in champion["per_class"]}
    rows = []
    for row in challenger["per_class"]:
        old = before.get(row["class"])
        if old is None or abs(row["recall"] - old["recall"]) < 1e-9:
            continue
        rows.append({"breed": row["class"], "name": row["name"], "before": old["recall"], "after": row["recall"],
                     "change": row["recall"] - old["recall"], "support": row["support"]})
    return sorted(rows, key=lambda r: -abs(r["change"]))


# --- Promotion ---------------------------------------------------------------------------

def promote(run: TrainingRun, *, confirmed: bool = False) -> ModelVersion:
    """Make the run's model the active one; images waiting for a model are sent again (the
    activation signal). A model that compared worse needs ``confirmed``."""
    if run.state != State.SUCCEEDED or run.result is None:
        raise TrainingError("Only the model of a finished run can be promoted.")
    if run.result.is_active:
        raise TrainingError(f"{run.result.name} is already the active model.")
    if not run.comparison.get("recommended") and not confirmed:
        raise TrainingError("This model did worse than the active one: tick the confirmation to promote it anyway.")
    ml_services.activate_version(run.result)
    TrainingRun.objects.filter(pk=run.pk).update(promoted_at=timezone.now())
    return run.result
