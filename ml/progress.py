"""A training run's progress: the stages it goes through, what staff read for each, and the time left.

One source for stage names: the run functions (``ml.recipes.full``, ``ml.recipes.quick``) and the
site's training runs (``training.services``) report stage *codes* from here, and pages
show :data:`LABELS`. Neither torch nor Django is imported: the web process reads the labels.

``on_progress(update)`` (``ml.training.Progress``) gets dicts of what changed:

- ``{"stage": CODE, "step": 0, "steps": n}`` when a stage begins (n: its steps, that is
  batches, timed calls, figures or images; 0 when it has none to count);
- ``{"step": i, "steps": n}`` as it goes, with ``"epoch", "epochs", "loss", "accuracy"``
  while a model trains;
- ``{"history": [...]}`` after every epoch (one row per epoch so far);
- ``{"plan": {CODE: work, ...}}``: the work of stages to come (or revised), in :data:`UNIT`
  s, so that the time left covers the whole run, not the current stage.

Long loops report at every step (a batch, a timed call, a figure), so a run never goes
more than a few seconds without a word, and an exception raised by ``on_progress`` (a
cancelled run) stops it within one step.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

Progress = Callable[[dict[str, Any]], None]

# --- Stages ----------------------------------------------------------------------------------

EXPORTING = "exporting"
PREPARING = "preparing"
TIMING = "timing"
FEATURES_TRAIN = "features-train"
FEATURES_EVAL = "features-eval"
HEAD_ON_FEATURES = "head-on-features"
HEAD = "head"
ALL_LAYERS = "all-layers"
LATE_LAYERS = "late-layers"
EVALUATING = "evaluating"
CALIBRATING = "calibrating"
FIGURES = "figures"
SAVING = "saving"
COMPARING = "comparing"
REGISTERING = "registering"

# What staff read, in the order a run goes through them. A label says what the worker
# does, so that it never reads as the run's state ("Training") repeated.
LABELS = {
    EXPORTING: "Exporting the reviewed photos",
    PREPARING: "Preparing the images and the starting model",
    TIMING: "Timing how this machine runs the network fastest",
    FEATURES_TRAIN: "Extracting features of the training images",
    FEATURES_EVAL: "Extracting features of the validation and test images",
    HEAD_ON_FEATURES: "Training the last layer on the extracted features",
    HEAD: "Training the last layer (the rest frozen)",
    ALL_LAYERS: "Fine-tuning every layer",
    LATE_LAYERS: "Fine-tuning the late layers",
    EVALUATING: "Evaluating the new model",
    CALIBRATING: "Calibrating its verdicts",
    FIGURES: "Drawing the figures",
    SAVING: "Saving the new model",
    COMPARING: "Comparing it with the active model",
    REGISTERING: "Registering the new model",
}

# Setting up: their pace says little about the rest (first calls, loading), and the plan is
# revised after them (the chosen backend's speed-up), so the time left is measured from the
# first stage after them.
SETUP_STAGES = (EXPORTING, PREPARING, TIMING)

# The stage of each epoch in a run's history (history.json, its figures and the epochs table).
FROZEN, UNFROZEN, LATE = "frozen", "unfrozen", "late layers"
EPOCH_LABELS = {FROZEN: "last layer", UNFROZEN: "every layer", LATE: "late layers"}


def label(code: str | None) -> str:
    """What staff read for a stage code; an unknown code (a run from before codes) as it is."""
    if not code:
        return ""
    return LABELS.get(code, code)


def epoch_label(code: str) -> str:
    return EPOCH_LABELS.get(code, code)


# --- Work: what a stage costs, to weigh the stages of a plan -------------------------------------
#
# One unit is one forward pass of one 224 px image through ResNet34 in eager FP32, its decoding
# included (a faster backend divides it by its measured speed-up). A training step costs
# about three (forward and backward); the costs that do not grow with the image (a figure,
# the calibration) were measured on 2 CPU cores against a forward pass there
# (bench/training_progress.py). They only weigh stages against each other: the time left
# comes from the rate measured while the run goes.
UNIT = "forward pass of one 224 px image in eager FP32"
TRAINING_STEP_COST = 3.0  # per image, forward and backward
HEAD_STEP_COST = 0.02  # per step of the last layer on extracted features (a few ms)
EXPORT_COST = 0.3  # per reviewed photo: decode, turn upright, write a JPEG
FIGURE_COST = 2.0  # per figure
CALIBRATION_COST = 0.002  # per validation image
REGISTRATION_COST = 7.0  # load the checkpoint, one forward pass, copy files
SAVING_COST = 3.0  # write the checkpoint
PREPARING_COST = 2.0  # build the starting model, list and check the images
SINGLE_IMAGE_COST = 2.0  # per image predicted one at a time (the check set)


def image_passes(images: int, image_size: int, *, training: bool = False) -> float:
    """The work of ``images`` passes through the body at ``image_size`` px."""
    return images * (image_size / 224) ** 2 * (TRAINING_STEP_COST if training else 1.0)


class Reporter:
    """What the run functions report through: stages, their steps and the plan, to
    ``on_progress`` (or nowhere, from the command line, whose bars are tqdm's)."""

    def __init__(self, on_progress: Progress | None = None):
        self.on_progress = on_progress

    def __call__(self, update: dict[str, Any]) -> None:
        if self.on_progress is not None:
            self.on_progress(update)

    def plan(self, work: dict[str, float]) -> None:
        self({"plan": work})

    def stage(self, code: str, steps: int = 0) -> None:
        if code not in LABELS:
            raise ValueError(f"Unknown stage {code!r}: add it to ml.progress.LABELS")
        self({"stage": code, "step": 0, "steps": steps})

    def step(self, done: int, steps: int, **extra: Any) -> None:
        self({"step": done, "steps": steps, **extra})

    def counter(self, steps: int, offset: int = 0) -> Callable[[int, int], None]:
        """A ``(done, total)`` callback for a loop that counts its own steps, reported as
        ``offset + done`` of the stage's ``steps`` (a stage made of several loops)."""
        return lambda done, _total: self.step(offset + done, steps)


# --- The time left ---------------------------------------------------------------------------


class Tracker:
    """How far a run is in its whole plan, and the time it has left, from its updates.

    Time left = work still planned x seconds per unit of work, where the rate is an
    exponential moving average of the rates measured over intervals of at least
    ``interval`` seconds, each weighted by the work it covers: an interval that did ``dw``
    units moves the average ``1 - exp(-dw / (memory x total work))`` of the way to its own
    rate, so the average is that of about the last ``memory`` of the run's work, however
    often progress comes. The work covers every planned stage, not only the current one,
    so the estimate neither restarts when a stage begins nor takes a fast stage's steps
    for a slow one's; one slow batch, or a small stage slower than planned (the last
    layer's few seconds), moves it a little, and a large stage slower than planned moves it
    gradually, never by minutes at once.

    The rate is measured from the first stage after :data:`SETUP_STAGES`, and there is no
    estimate until ``settle`` of the work is done. ``clock``: seconds, monotonic (tests pass
    a fake one).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, memory: float = 0.2,
                 interval: float = 2.0, settle: float = 0.02):
        if not 0.0 < memory <= 1.0:
            raise ValueError("memory must be in (0, 1].")
        self.clock, self.memory, self.interval, self.settle = clock, memory, interval, settle
        self.work: dict[str, float] = {}  # planned work per stage
        self.finished: set[str] = set()
        self.stage: str | None = None
        self.fraction = 0.0  # of the current stage
        self.rate: float | None = None  # seconds per unit of work
        self._mark: tuple[float, float] | None = None  # (time, work done) where the interval began

    def update(self, update: dict[str, Any]) -> None:
        if "plan" in update:
            self.work.update({stage: max(0.0, float(work)) for stage, work in update["plan"].items()})
        if "stage" in update and update["stage"] != self.stage:  # a stage said again goes on
            if self.stage is not None:
                self.finished.add(self.stage)
            self.stage, self.fraction = update["stage"], 0.0
        steps = update.get("steps")
        if steps and update.get("step") is not None:  # never backwards: a stage's loops count their own steps
            self.fraction = min(1.0, max(self.fraction, update["step"] / steps))
        self._measure()

    def done(self) -> float:
        current = self.work.get(self.stage, 0.0) * self.fraction if self.stage not in self.finished else 0.0
        return sum(self.work.get(stage, 0.0) for stage in self.finished) + current

    def total(self) -> float:
        return sum(self.work.values())

    def fraction_done(self) -> float | None:
        total = self.total()
        return min(1.0, self.done() / total) if total else None

    def seconds_left(self) -> float | None:
        total = self.total()
        if self.rate is None or not total or self.done() < self.settle * total:
            return None
        return max(0.0, total - self.done()) * self.rate

    def _measure(self) -> None:
        now, done = self.clock(), self.done()
        if self._mark is None or self.stage in SETUP_STAGES:
            self._mark = (now, done)
            return
        since, done_then = self._mark
        if now - since < self.interval or done <= done_then:
            return
        sample = (now - since) / (done - done_then)
        weight = 1.0 - math.exp(-(done - done_then) / (self.memory * self.total()))
        self.rate = sample if self.rate is None else self.rate + weight * (sample - self.rate)
        self._mark = (now, done)


def summary(tracker: Tracker) -> dict[str, Any]:
    """The tracker's figures as a run's progress keeps them: ``percent`` of the whole plan
    and ``eta_seconds`` (absent until a rate is measured)."""
    figures: dict[str, Any] = {}
    fraction = tracker.fraction_done()
    if fraction is not None:
        figures["percent"] = math.floor(100 * fraction + 1e-6)  # the sums of the stages' work may round below
    left = tracker.seconds_left()
    if left is not None:
        figures["eta_seconds"] = round(left)
    return figures


def stages_in(updates: Iterable[dict[str, Any]]) -> list[str]:
    """The stages a list of updates went through, in order (for logs and tests)."""
    return [update["stage"] for update in updates if "stage" in update]
