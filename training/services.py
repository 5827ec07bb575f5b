"""Training from the site: staff start a run, watch it, compare its model with the active
one (champion and challenger) and promote it.

A run goes through these steps, each in one function below:

1. ``start_run`` (web): one run at a time (a unique constraint on the database); the view
   sends its task to the ``training`` queue, so classification never waits behind training.
2. ``execute`` (training worker): export the reviewed images of the training set, train
   with the chosen recipe while a heartbeat thread keeps the row fresh and watches for
   cancellation, compare, and only then register the model (not active).
3. ``comparison.compare``: champion and challenger on the check set (reviewed images that
   no run ever trains on) and on the dataset's test split.
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
from django.utils import timezone

from ml import layout
from ml import progress as progress_
from registry import services as registry_services
from registry.models import ModelVersion

from .comparison import compare, comparison_work, training_set
from .models import TrainingRun

log = logging.getLogger(__name__)

State = TrainingRun.State

HEARTBEAT_EVERY = 10  # seconds
# A running run whose heartbeat is older than this lost its worker.
HEARTBEAT_TIMEOUT = timedelta(minutes=2)
# While a run reports progress (every batch, timed call or figure), it reads the cancel flag
# at most this often (seconds), and saves its progress at most this often unless a stage begins.
CANCEL_POLL = 1.0
SAVE_EVERY = 1.0


class TrainingError(Exception):
    """Something staff asked for that cannot be done; the message says why and what to do,
    ``code`` which case it is (pages decide by it, never by the words)."""

    BUSY = "busy"
    NO_ACTIVE_MODEL = "no-active-model"
    NO_DATASET = "no-dataset"
    FINISHED = "finished"
    NOT_PROMOTABLE = "not-promotable"
    ALREADY_ACTIVE = "already-active"
    NEEDS_CONFIRMATION = "needs-confirmation"

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


class Cancelled(Exception):
    """Raised inside a run (from the progress callback) when staff cancelled it."""


# --- Starting, cancelling, watching --------------------------------------------------------

def expire_dead_runs() -> int:
    """Mark failed the running runs whose worker stopped beating (killed, machine lost).

    Beat runs it every minute (``training.tasks.expire_dead_runs``), so a dead run is marked
    whether or not anyone looks at it; starting a run does it too, so a dead run never
    blocks a new one."""
    stale = timezone.now() - HEARTBEAT_TIMEOUT
    return TrainingRun.objects.filter(state=State.RUNNING, heartbeat_at__lt=stale).update(
        state=State.FAILED, is_current=False, finished_at=timezone.now(),
        message="The training worker stopped without finishing (no heartbeat for "
                f"{int(HEARTBEAT_TIMEOUT.total_seconds() // 60)} minutes). No model was registered.",
    )


def current_run() -> TrainingRun | None:
    return TrainingRun.objects.filter(is_current=True).first()


def dataset_problems() -> list[layout.Problem]:
    """What is wrong with the dataset runs train on (``PETSITE_DATASET_DIR``); empty when it
    is there and complete. Reads folders and the split files only: fine for the web process."""
    return layout.dataset_problems(settings.PETSITE_DATASET_DIR)


def dataset_words(problems: list[layout.Problem]) -> str:
    """The problems of the dataset in words for staff, who cannot fix them with a command."""
    return ("The training images are not ready on the server: " + "; ".join(p.text for p in problems) + ". "
            "Training needs the Oxford-IIIT Pet dataset there; see \u201cWhat a run needs on the server\u201d on the "
            "training page for what to do.")


def start_run(
    user, *, start_from: str = TrainingRun.Start.ACTIVE, recipe: str = "auto", epochs: int | None = None,
    image_size: int = 224,
) -> TrainingRun:
    """Record a run and send it to the training queue; refused while another run is
    unfinished, and before anything is queued when the dataset is missing or incomplete
    (a run would only fail on it minutes later)."""
    base = registry_services.active_version()
    if start_from == TrainingRun.Start.ACTIVE and base is None:
        raise TrainingError("No model is active yet, so there is nothing to start from: start from ImageNet weights.",
                            TrainingError.NO_ACTIVE_MODEL)
    problems = dataset_problems()
    if problems:
        raise TrainingError(dataset_words(problems), TrainingError.NO_DATASET)
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
        raise TrainingError(f"{what}: one run at a time. Wait for it to finish, or cancel it.",
                            TrainingError.BUSY) from None
    return run


def cancel(run: TrainingRun) -> None:
    """A queued run stops at once; a running one at its next step (the worker reads the
    flag at least every ``CANCEL_POLL`` seconds while it reports progress)."""
    now = timezone.now()
    if TrainingRun.objects.filter(pk=run.pk, state=State.QUEUED).update(
        state=State.CANCELLED, is_current=False, cancel_requested=True, finished_at=now,
        message="Cancelled before it started.",
    ):
        return
    if not TrainingRun.objects.filter(pk=run.pk, state=State.RUNNING).update(cancel_requested=True):
        raise TrainingError("This run has already finished.", TrainingError.FINISHED)


def duration_words(seconds: float) -> str:
    """A time left as staff read it: rounded, never falsely precise."""
    if seconds < 10:
        return "a few seconds"
    if seconds < 90:
        return f"about {5 * round(seconds / 5)} s"
    minutes = round(seconds / 60)
    return f"about {minutes} min" if minutes < 90 else f"about {round(minutes / 60)} h"


def run_status(run: TrainingRun) -> dict[str, Any]:
    """What the run page shows and polls: state, progress with its labels, and the time left.

    The worker keeps ``eta_seconds`` (from a smoothed rate over the whole plan, see
    ``ml.progress.Tracker``) with the time it computed it (``eta_at``); the time since is
    taken off here, so the estimate counts down between the worker's saves.
    """
    progress = dict(run.progress)
    progress["stage_label"] = progress_.label(progress.get("stage")) if run.state == State.RUNNING else ""
    progress["history"] = [{**row, "stage_label": progress_.epoch_label(row.get("stage", ""))}
                           for row in progress.get("history", [])]
    eta, eta_at = progress.pop("eta_seconds", None), progress.pop("eta_at", None)
    if run.state == State.RUNNING and eta is not None and eta_at is not None:
        progress["eta_seconds"] = max(0, round(eta - max(0.0, time.time() - eta_at)))
        progress["eta_words"] = duration_words(progress["eta_seconds"])
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
    """The progress callback given to the training code (``ml.progress``'s protocol).

    Keeps the run's progress row: the stage, its step, epoch, loss and accuracy, the
    percentage of the whole plan and the time left (``ml.progress.Tracker``). Saves at once
    when a stage begins or ends, else at most every ``SAVE_EVERY`` seconds; reads the cancel flag at
    most every ``CANCEL_POLL`` seconds and stops the run (raises :class:`Cancelled`) when
    staff cancelled it. The training code reports at every batch, timed call or figure, so
    both happen within seconds. ``observer`` sees every update first (tests, benchmarks).
    """

    STAGE_KEYS = ("step", "steps", "epoch", "epochs", "loss", "accuracy")  # what belongs to one stage

    def __init__(self, run: TrainingRun, heartbeat: _Heartbeat, observer: Callable[[dict], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.run, self.heartbeat, self.observer, self.clock = run, heartbeat, observer, clock
        self.tracker = progress_.Tracker(clock)
        self.last_saved = self.last_checked = float("-inf")

    def __call__(self, update: dict[str, Any]) -> None:
        if self.observer is not None:
            self.observer(update)
        self.raise_if_cancelled()
        self.tracker.update(update)
        current = self.run.progress
        if "stage" in update:
            current = {key: value for key, value in current.items() if key not in self.STAGE_KEYS}
        values = {key: value for key, value in update.items() if key != "plan"}
        self.run.progress = {**current, **values, **progress_.summary(self.tracker), "eta_at": time.time()}
        milestone = "stage" in update or ("steps" in update and update.get("step") == update["steps"])
        if milestone or self.clock() - self.last_saved >= SAVE_EVERY:  # a stage's start and end, at once
            self.save()

    def save(self) -> None:
        TrainingRun.objects.filter(pk=self.run.pk).update(progress=self.run.progress)
        self.last_saved = self.clock()

    def raise_if_cancelled(self) -> None:
        if self.heartbeat.cancelled:
            raise Cancelled
        now = self.clock()
        if now - self.last_checked < CANCEL_POLL:
            return
        self.last_checked = now
        if TrainingRun.objects.filter(pk=self.run.pk, cancel_requested=True).exists():
            raise Cancelled


def execute(run_id: int, observer: Callable[[dict], None] | None = None) -> None:
    """The training task: the whole run, and the state it ends in whatever happens.

    ``observer``: called with every progress update before the run acts on it (tests and
    ``bench/training_progress.py`` watch and cancel runs through it)."""
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
        _train_compare_register(run, run_dir, _Progress(run, heartbeat, observer))
    except Cancelled:
        _finish(run, State.CANCELLED, "Cancelled by staff. No model was registered.")
    except Exception as exc:
        log.exception("Training run %s failed", run.pk)
        words = failure_words(exc)
        _finish(run, State.FAILED, f"The run failed. {words[:1].upper()}{words[1:]} No model was registered.")
    finally:
        heartbeat.stop()
        close_old_connections()


def failure_words(exc: Exception) -> str:
    """Why a run failed, in words for staff: the known causes they can act on (the
    dataset, the ImageNet weights) without the command-line advice their errors carry."""
    if isinstance(exc, layout.DatasetError) and exc.problems:
        return dataset_words(exc.problems)
    from ml.model import WeightsUnavailableError  # the worker's: torch is loaded there

    if isinstance(exc, WeightsUnavailableError):
        return ("The ImageNet weights for ResNet34 are not on the training machine, and nothing is downloaded "
                "unless asked. Start from the active model instead, or ask whoever runs the server to add the "
                "weights (see \u201cWhat a run needs on the server\u201d on the training page).")
    return str(exc).rstrip(".") + "."


def _finish(run: TrainingRun, state: str, message: str) -> None:
    TrainingRun.objects.filter(pk=run.pk, state=State.RUNNING).update(
        state=state, is_current=False, finished_at=timezone.now(), message=message
    )


def _train_compare_register(run: TrainingRun, run_dir: Path, progress: Callable[[dict], None]) -> None:
    from classifier.exports import export_reviewed  # imports ml.data, hence torch: the worker's only
    from ml.config import FullOptions, QuickOptions, RunConfig
    from ml.runs import run as run_recipe

    report = progress_.Reporter(progress)
    champion = registry_services.active_version()
    to_export = training_set().count()
    report.plan({
        progress_.EXPORTING: to_export * progress_.EXPORT_COST,
        progress_.COMPARING: comparison_work(champion, run.image_size, Path(settings.PETSITE_DATASET_DIR)),
        progress_.REGISTERING: progress_.REGISTRATION_COST,
    })
    report.stage(progress_.EXPORTING, to_export)
    reviewed_dir = run_dir / "reviewed"
    shutil.rmtree(reviewed_dir, ignore_errors=True)
    counts = export_reviewed(reviewed_dir, images=training_set(), on_image=report.step)
    run.num_reviewed_images = sum(counts.values())
    TrainingRun.objects.filter(pk=run.pk).update(num_reviewed_images=run.num_reviewed_images)

    report.stage(progress_.PREPARING)  # the recipe's own preparation goes on with it
    dataset_dir = Path(settings.PETSITE_DATASET_DIR)
    epochs = {"epochs": run.epochs} if run.epochs else {}
    head_epochs = {"head_epochs": run.epochs} if run.epochs else {}
    config = RunConfig(
        data=str(dataset_dir), extra_data=[str(reviewed_dir)] if counts else [], image_size=run.image_size,
        workers=settings.PETSITE_TRAINING_LOADER_WORKERS, progress=False, full=FullOptions(**epochs),
        quick=QuickOptions(cache_dir=str(settings.PETSITE_FEATURE_CACHE_DIR), backend="auto",
                           backend_cache_dir=str(settings.PETSITE_BACKEND_CACHE_DIR), **head_epochs),
    )
    base = run.base_version if run.start_from == TrainingRun.Start.ACTIVE else None
    if run.start_from == TrainingRun.Start.ACTIVE and base is None:
        raise TrainingError("the model it was to start from no longer exists.", TrainingError.NO_ACTIVE_MODEL)
    with registry_services.local_checkpoint(base) if base else contextlib.nullcontext() as base_path:
        config.init_checkpoint = str(base_path) if base_path else None
        result = run_recipe(
            run.recipe, config, run_dir / "train", log=log.info, on_progress=progress,
            on_start=lambda settings_: TrainingRun.objects.filter(pk=run.pk).update(settings=settings_),
        )

    champion = registry_services.active_version()
    comparison = compare(result.checkpoint, champion, dataset_dir, run_dir / "compare", on_progress=progress)
    report.stage(progress_.REGISTERING, 1)  # raises Cancelled if staff cancelled meanwhile

    with transaction.atomic():
        version = registry_services.register_model(
            result.checkpoint, name=f"site-run-{run.pk}-{timezone.now():%Y%m%d-%H%M%S}", run_dir=result.out_dir,
            notes=f"Trained from the site (run {run.pk}), from {run.get_start_from_display().lower()}.",
        )
        report.step(1, 1)  # saved with the run's end, or rolled back with it
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


# --- Promotion ---------------------------------------------------------------------------

def promote(run: TrainingRun, *, confirmed: bool = False) -> ModelVersion:
    """Make the run's model the active one; images waiting for a model are sent again (the
    activation signal). A model that compared worse needs ``confirmed``."""
    if run.state != State.SUCCEEDED or run.result is None:
        raise TrainingError("Only the model of a finished run can be promoted.", TrainingError.NOT_PROMOTABLE)
    if run.result.is_active:
        raise TrainingError(f"{run.result.name} is already the active model.", TrainingError.ALREADY_ACTIVE)
    if not run.comparison.get("recommended") and not confirmed:
        raise TrainingError("This model did worse than the active one: tick the box to promote it anyway.",
                            TrainingError.NEEDS_CONFIRMATION)
    registry_services.activate_version(run.result)
    TrainingRun.objects.filter(pk=run.pk).update(promoted_at=timezone.now())
    return run.result
