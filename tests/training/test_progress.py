"""A training run from the site says what it does and moves: every stage labelled, epochs
and steps in both recipes, time left from a smoothed rate over the whole plan, cancel at the
next step of any long loop; the dataset checked before a run is queued, in words for staff."""
import random
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from ml import layout, progress
from ml.synthetic import make_fake_pets
from registry.models import ModelVersion
from training import services as training_services
from training.models import TrainingRun

State = TrainingRun.State


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("boss", password="pw")


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return make_fake_pets(tmp_path_factory.mktemp("pets"), images_per_class=4, image_size=48)


@pytest.fixture
def site_run(settings, tmp_path, tiny_dataset, monkeypatch):
    """Settings for a run executed here: the tiny dataset, fresh caches (the backend is timed
    again), and the cancel flag read at every progress update."""
    settings.PETSITE_DATASET_DIR, settings.PETSITE_RUNS_DIR = tiny_dataset, tmp_path / "runs"
    settings.PETSITE_FEATURE_CACHE_DIR, settings.PETSITE_BACKEND_CACHE_DIR = tmp_path / "features", tmp_path / "be"
    monkeypatch.setattr(training_services, "CANCEL_POLL", 0.0)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- The time left ---------------------------------------------------------------------------

# A quick run as the walk saw it: (stage, steps, work), each stage at its own true speed
# (seconds per unit of work), within a factor of two of the others, as the plan weighs them.
QUICK_RUN = [(progress.TIMING, 16, 170.0, 0.05), (progress.FEATURES_TRAIN, 140, 2900.0, 0.03),
             (progress.FEATURES_EVAL, 70, 1450.0, 0.03), (progress.HEAD_ON_FEATURES, 1400, 140.0, 0.02),
             (progress.CALIBRATING, 1, 20.0, 0.03), (progress.FIGURES, 7, 210.0, 0.04),
             (progress.SAVING, 1, 10.0, 0.03), (progress.COMPARING, 160, 1500.0, 0.03),
             (progress.REGISTERING, 1, 60.0, 0.03)]


def simulate(tracker: progress.Tracker, clock: FakeClock, run=QUICK_RUN, jitter: float = 0.5, seed: int = 0):
    """Feed the tracker a whole run, every step taking its stage's time +- jitter; returns
    (time, estimate, true time left) after every step."""
    rng = random.Random(seed)
    durations = [[work / steps * speed * rng.uniform(1 - jitter, 1 + jitter) for _ in range(steps)]
                 for _, steps, work, speed in run]
    end = sum(map(sum, durations))
    tracker.update({"plan": {stage: work for stage, _, work, _ in run}})
    seen = []
    for (stage, steps, _, _), stage_durations in zip(run, durations, strict=True):
        tracker.update({"stage": stage, "step": 0, "steps": steps})
        for step, seconds in enumerate(stage_durations, 1):
            clock.now += seconds
            tracker.update({"step": step, "steps": steps})
            seen.append((clock.now, tracker.seconds_left(), end - clock.now))
    return seen


def test_time_left_is_smooth_over_the_whole_plan():
    clock = FakeClock()
    seen = [s for s in simulate(progress.Tracker(clock), clock) if s[1] is not None]
    assert seen
    assert seen[0][0] < seen[-1][0] / 5
    # Never a jump like 31 -> 9 -> 2 minutes within 20 s: over any 20 s, the estimate keeps
    # at least half of what it said minus the time that passed, and at most doubles.
    for i, (when, estimate, _) in enumerate(seen):
        for later, later_estimate, _ in seen[i + 1:]:
            if later - when > 20:
                break
            assert 0.5 * (estimate - (later - when)) - 5 <= later_estimate <= 2 * estimate, (when, later)
    # And right: from a third of the way on, within 40 % of the true time left (or 10 s).
    start = seen[-1][0] / 3
    for when, estimate, truth in seen:
        if when >= start:
            assert abs(estimate - truth) <= max(10.0, 0.4 * truth), (when, estimate, truth)


def test_the_old_estimate_jumped_where_the_tracker_does_not():
    """The estimate the page had (elapsed since the start / steps of the current stage)
    fell by minutes when the head's fast steps began; the tracker's does not."""
    clock = FakeClock()
    tracker = progress.Tracker(clock)
    seen = simulate(tracker, clock)
    head_start = sum(steps for _, steps, _, _ in QUICK_RUN[:3])  # the first head step's index
    before, after = seen[head_start - 2], seen[head_start + 10]
    elapsed = after[0]  # the old rule: all time so far over the 11 head steps done
    old_after = elapsed / 11 * (1400 - 11)
    assert abs(old_after - after[2]) > 5 * after[2] or old_after < 0.2 * after[2]  # the old rule was far off
    assert abs(after[1] - after[2]) <= 0.35 * after[2]
    assert after[1] >= 0.5 * (before[1] - (after[0] - before[0]))


def test_a_slow_batch_moves_the_estimate_a_little():
    clock = FakeClock()
    tracker = progress.Tracker(clock)
    tracker.update({"plan": {progress.FEATURES_TRAIN: 100.0}})
    tracker.update({"stage": progress.FEATURES_TRAIN, "step": 0, "steps": 100})
    for step in range(1, 51):
        clock.now += 2.0
        tracker.update({"step": step, "steps": 100})
    steady = tracker.seconds_left()
    assert steady == pytest.approx(100.0, rel=0.01)
    clock.now += 6.0  # one batch three times slower, as on a machine that got busy for a moment
    tracker.update({"step": 51, "steps": 100})
    assert steady < tracker.seconds_left() < 2 * steady  # smoothed: not 49 batches x 6 s


def test_a_small_stage_slower_than_planned_moves_the_estimate_a_little():
    """The last layer's few seconds, planned as almost nothing: no spike of the time left."""
    clock = FakeClock()
    tracker = progress.Tracker(clock)
    tracker.update({"plan": {progress.FEATURES_TRAIN: 1000.0, progress.HEAD_ON_FEATURES: 1.0,
                             progress.COMPARING: 1000.0}})
    tracker.update({"stage": progress.FEATURES_TRAIN, "step": 0, "steps": 100})
    for step in range(1, 101):
        clock.now += 1.0
        tracker.update({"step": step, "steps": 100})
    before = tracker.seconds_left()
    tracker.update({"stage": progress.HEAD_ON_FEATURES, "step": 0, "steps": 10})
    for step in range(1, 11):
        clock.now += 0.5  # 5 s for 1 unit: fifty times the plan
        tracker.update({"step": step, "steps": 10})
    assert before == pytest.approx(100.0, rel=0.05)
    assert tracker.seconds_left() < 1.3 * before


def test_the_summary_says_how_much_of_the_whole_run_is_done():
    clock = FakeClock()
    tracker = progress.Tracker(clock)
    tracker.update({"plan": {progress.EXPORTING: 10.0, progress.FEATURES_TRAIN: 30.0}})
    tracker.update({"stage": progress.EXPORTING, "step": 0, "steps": 4})
    assert progress.summary(tracker) == {"percent": 0}
    tracker.update({"stage": progress.FEATURES_TRAIN, "step": 15, "steps": 30})
    clock.now += 10
    tracker.update({"step": 20, "steps": 30})
    assert progress.summary(tracker) == {"percent": 75, "eta_seconds": 3}  # 10 s for 30 units; 10 left
    tracker.update({"step": 10, "steps": 30})  # a later loop of the stage counting from its own start
    assert progress.summary(tracker)["percent"] == 75


# --- Labels ----------------------------------------------------------------------------------


def test_every_stage_has_its_own_label_that_never_repeats_the_state():
    labels = list(progress.LABELS.values())
    assert len(set(labels)) == len(labels)
    state = TrainingRun.State.RUNNING.label.lower()
    for label in labels:
        assert label[0].isupper()
        assert not label.lower().startswith(state + " " + state)
    with pytest.raises(ValueError, match="Unknown stage"):
        progress.Reporter().stage("training (head on cached features)")


@pytest.mark.parametrize("stage", list(progress.LABELS))
def test_the_run_page_reads_each_stage_in_words(client, staff, db, stage):
    run = TrainingRun.objects.create(
        requested_by=staff, state=State.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now(),
        progress={"stage": stage, "step": 3, "steps": 12, "epoch": 2, "epochs": 40, "percent": 41,
                  "history": [{"epoch": 1, "stage": progress.FROZEN, "train_loss": 1.0, "valid_loss": 1.0,
                               "accuracy": 0.5, "time": 0.1}]},
    )
    client.force_login(staff)
    page = client.get(run.get_absolute_url()).content.decode()
    section = re.sub(r"<[^>]+>", " ", page[page.index('id="run-status"'):page.index('id="run-message"')])
    words = " ".join(section.split())
    assert progress.LABELS[stage] in words
    assert "Epoch 2 of 40" in words
    assert "Step 3 of 12" in words
    assert "41% of the whole run" in words
    assert progress.EPOCH_LABELS[progress.FROZEN] in words
    assert not re.search(r"\b(\w+) \1\b", words, re.IGNORECASE), words  # "Training training ..."
    status = client.get(reverse("training:run_status", args=[run.pk])).json()
    assert status["progress"]["stage_label"] == progress.LABELS[stage]


def test_the_time_left_counts_down_between_the_workers_saves(client, staff, db):
    import time

    run = TrainingRun.objects.create(
        requested_by=staff, state=State.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now(),
        progress={"stage": progress.FEATURES_TRAIN, "eta_seconds": 300, "eta_at": time.time() - 60},
    )
    client.force_login(staff)
    status = client.get(reverse("training:run_status", args=[run.pk])).json()["progress"]
    assert 230 <= status["eta_seconds"] <= 240
    assert status["eta_words"] == "about 4 min"
    assert "about 4 min" in client.get(run.get_absolute_url()).content.decode()


# --- Runs: stages, epochs and steps, cancel -------------------------------------------------------


def watched_run(staff, version, recipe: str, epochs: int) -> tuple[TrainingRun, list[dict], dict[str, list[dict]]]:
    """A run executed here as the training worker does: the run, every update, the updates by stage."""
    run = TrainingRun.objects.create(requested_by=staff, base_version=version, recipe=recipe, epochs=epochs,
                                     image_size=32)
    updates = []
    training_services.execute(run.pk, observer=updates.append)
    run.refresh_from_db()
    assert run.state == State.SUCCEEDED, run.message
    by_stage, stage = {}, None
    for update in updates:
        stage = update.get("stage", stage)
        by_stage.setdefault(stage, []).append(update)
    return run, updates, by_stage


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_quick_run_labels_every_stage_and_shows_epochs_and_steps(staff, site_run, model_version):
    run, updates, by_stage = watched_run(staff, model_version, "quick", epochs=3)
    stages = progress.stages_in(updates)
    assert stages == [progress.EXPORTING, progress.PREPARING, progress.PREPARING, progress.TIMING,
                      progress.FEATURES_TRAIN, progress.FEATURES_EVAL, progress.HEAD_ON_FEATURES, progress.EVALUATING,
                      progress.CALIBRATING, progress.FIGURES, progress.SAVING, progress.COMPARING,
                      progress.REGISTERING]
    assert set(stages) <= set(progress.LABELS)
    # Each long stage reports every step it does: a timed call, a batch of features, a figure...
    for code in (progress.TIMING, progress.FEATURES_TRAIN, progress.FEATURES_EVAL, progress.FIGURES,
                 progress.COMPARING):
        steps = [u for u in by_stage[code] if u.get("steps")]
        assert steps, (code, steps[-3:])
        assert steps[-1]["step"] == steps[-1]["steps"], (code, steps[-3:])
    head = [u for u in by_stage[progress.HEAD_ON_FEATURES] if "epoch" in u]
    assert head
    assert {u["epochs"] for u in head} == {3}
    assert [u["epoch"] for u in head][-1] == 3
    assert head[-1]["step"] == head[-1]["steps"]
    assert all("loss" in u and "accuracy" in u for u in head)
    assert len(run.progress["history"]) == 3
    assert run.progress["percent"] == 100
    assert run.result is not None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_full_run_shows_epochs_and_steps_in_both_stages(staff, site_run, model_version):
    run, updates, by_stage = watched_run(staff, model_version, "full", epochs=1)
    assert {progress.HEAD, progress.ALL_LAYERS, progress.EVALUATING, progress.COMPARING} <= set(
        progress.stages_in(updates)) <= set(progress.LABELS)
    for code, epoch in ((progress.HEAD, 1), (progress.ALL_LAYERS, 2)):
        training = [u for u in by_stage[code] if "epoch" in u]
        assert training, code
        assert {(u["epoch"], u["epochs"]) for u in training} == {(epoch, 2)}, code
        assert all(u["step"] >= 1 and "loss" in u for u in training)
        counted = [u for u in by_stage[code] if "steps" in u]
        assert counted[-1]["step"] == counted[-1]["steps"] > training[-1]["step"]  # then validation batches
    assert run.progress["percent"] == 100


def _cancel_at(stage: str, after_steps: int):
    """An observer that cancels the run once ``stage`` has reported ``after_steps`` steps, and
    counts the steps reported after that."""
    seen = {"stage": None, "steps": 0, "cancelled_at": None, "after": 0}

    def observe(update):
        if "stage" in update:
            seen["stage"] = update["stage"]
        if seen["cancelled_at"] is not None:
            seen["after"] += 1
            return
        if seen["stage"] == stage and update.get("step"):
            seen["steps"] += 1
            if seen["steps"] == after_steps:
                training_services.cancel(TrainingRun.objects.get(state=State.RUNNING))
                seen["cancelled_at"] = dict(update)

    return observe, seen


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("stage", "after_steps"), [(progress.TIMING, 2), (progress.FEATURES_TRAIN, 1)])
def test_cancel_stops_a_long_stage_at_its_next_step(staff, site_run, model_version, stage, after_steps):
    """Cancelled while the body's backends are timed, or while features are extracted: the
    run stops at the next check (here every step), with nothing registered."""
    run = TrainingRun.objects.create(requested_by=staff, base_version=model_version, recipe="quick", epochs=3,
                                     image_size=32)
    observe, seen = _cancel_at(stage, after_steps)
    training_services.execute(run.pk, observer=observe)
    run.refresh_from_db()
    assert seen["cancelled_at"] is not None
    assert seen["cancelled_at"]["step"] < seen["cancelled_at"]["steps"]
    assert seen["after"] == 0  # not one more call timed, not one more batch extracted
    assert run.state == State.CANCELLED
    assert "No model was registered" in run.message
    assert list(ModelVersion.objects.values_list("name", flat=True)) == [model_version.name]


def test_cancel_is_read_at_most_every_poll_while_progress_comes(staff, db, monkeypatch):
    """The worker reads the flag itself (not only every heartbeat), and no more often than
    CANCEL_POLL, counted on a fake clock."""
    run = TrainingRun.objects.create(requested_by=staff, state=State.RUNNING, started_at=timezone.now())
    heartbeat = training_services._Heartbeat(run.pk)  # not started: its flag stays False
    clock = FakeClock()
    report = training_services._Progress(run, heartbeat, clock=clock)
    report({"stage": progress.FEATURES_TRAIN, "step": 0, "steps": 10})
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    clock.now += training_services.CANCEL_POLL / 2
    report({"step": 1, "steps": 10})  # read half a poll ago: not yet
    clock.now += training_services.CANCEL_POLL / 2
    with pytest.raises(training_services.Cancelled):
        report({"step": 2, "steps": 10})
    saved = TrainingRun.objects.get(pk=run.pk).progress
    assert saved["stage"] == progress.FEATURES_TRAIN
    assert saved["steps"] == 10


# --- The dataset, checked before a run is queued ---------------------------------------------------


def test_a_run_without_the_dataset_is_refused_before_it_is_queued(client, staff, model_version, settings, tmp_path,
                                                                  django_capture_on_commit_callbacks):
    settings.PETSITE_DATASET_DIR = tmp_path / "pets"
    client.force_login(staff)
    page = client.get(reverse("training:run_list")).content.decode()
    assert 'id="dataset-missing"' in page
    assert f"{tmp_path / 'pets'} does not exist" in page
    assert 'href="#training-needs"' in page
    assert 'id="training-needs"' in page
    with django_capture_on_commit_callbacks() as sent:
        response = client.post(reverse("training:run_list"),
                               {"start_from": "active", "recipe": "quick", "epochs": 2, "image_size": 128})
    assert response.status_code == 400
    assert not sent
    assert not TrainingRun.objects.exists()
    text = response.content.decode()
    assert "The training images are not ready on the server" in text
    assert "What to do about the training images" in text
    assert "--download" not in text
    assert "torchvision" not in text

    with pytest.raises(training_services.TrainingError) as refused:
        training_services.start_run(staff, recipe="quick")
    assert refused.value.code == training_services.TrainingError.NO_DATASET


def test_an_incomplete_dataset_is_refused_with_what_is_missing(staff, model_version, settings, tmp_path):
    root = make_fake_pets(tmp_path / "pets", images_per_class=2, image_size=32)
    next((root / layout.DATASET_DIR / "images").glob("*.jpg")).unlink()
    (root / layout.DATASET_DIR / "annotations" / "test.txt").unlink()
    settings.PETSITE_DATASET_DIR = root
    assert {p.code for p in training_services.dataset_problems()} == {layout.MISSING_IMAGES, layout.NO_SPLIT}
    with pytest.raises(training_services.TrainingError, match="1 of the 37 images listed in trainval.txt are missing"):
        training_services.start_run(staff)


def test_the_dataset_folder_itself_is_recognised(tmp_path):
    root = make_fake_pets(tmp_path / "pets", images_per_class=1, image_size=32)
    codes = [p.code for p in layout.dataset_problems(root / layout.DATASET_DIR)]
    assert codes == [layout.NO_DATASET_DIR, layout.ROOT_IS_DATASET_DIR]
    assert layout.dataset_problems(root) == []


@pytest.mark.django_db(transaction=True)
def test_a_dataset_gone_after_queueing_fails_in_words(staff, site_run, settings, tmp_path, model_version):
    settings.PETSITE_DATASET_DIR = tmp_path / "gone"
    run = TrainingRun.objects.create(requested_by=staff, base_version=model_version, recipe="quick", image_size=32)
    training_services.execute(run.pk)
    run.refresh_from_db()
    assert run.state == State.FAILED
    assert "The training images are not ready on the server" in run.message
    assert "--download" not in run.message
    assert "No model was registered" in run.message


# --- Pages: promotion, no commands -----------------------------------------------------------------


def test_promote_without_the_tick_says_so_beside_the_box(client, staff, model_version, other_version):
    run = TrainingRun.objects.create(state=State.SUCCEEDED, is_current=False, result=other_version,
                                     comparison={"recommended": False, "sets": {}})
    client.force_login(staff)
    response = client.post(reverse("training:run_promote", args=[run.pk]), {})
    assert response.status_code == 400
    page = response.content.decode()
    form = page[page.index('id="promote-form"'):page.index("</form>", page.index('id="promote-form"'))]
    assert 'id="promote-error"' in form
    assert "tick the box to promote it anyway" in form
    assert 'aria-invalid="true"' in form
    assert ModelVersion.objects.get(is_active=True) == model_version

    response = client.post(reverse("training:run_promote", args=[run.pk]), {"confirm": "on"})
    assert response.status_code == 302
    assert ModelVersion.objects.get(is_active=True) == other_version


def test_the_training_pages_show_no_commands(client, staff, model_version, settings, tiny_dataset):
    settings.PETSITE_DATASET_DIR = tiny_dataset
    client.force_login(staff)
    page = client.get(reverse("training:run_list")).content.decode()
    assert 'id="no-training-worker"' in page  # no worker seen: the notice that used to give a command
    assert 'id="dataset-missing"' not in page
    for command in ("celery", "-Q training", "--pool", "bin/run", "bin/manage", "manage.py", "--download"):
        assert command not in page, command
