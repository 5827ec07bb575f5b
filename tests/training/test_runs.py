"""Training from the site: one run at a time, cancellation and failure leave no model, the
check set is never trained on, champion and challenger compared, promotion."""
from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from classifier.exports import export_reviewed
from classifier.models import NOT_A_PET
from ml import progress
from ml.data import read_split
from ml.synthetic import make_fake_pets
from registry.models import ModelVersion
from training import comparison, tasks
from training import services as training_services
from training.models import TrainingRun

State = TrainingRun.State


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("boss", password="pw")


@pytest.fixture
def reviewed(make_image):
    """Ten images reviewed as a breed, and one as not a pet (which teaches no breed)."""
    pets = [make_image("pug", reviewed_label="beagle", reviewed_at=timezone.now()) for _ in range(10)]
    make_image("pug", reviewed_label=NOT_A_PET, reviewed_at=timezone.now())
    return pets


@pytest.fixture
def tiny_dataset(tmp_path_factory):
    return make_fake_pets(tmp_path_factory.mktemp("pets"), images_per_class=2, image_size=48)


@pytest.fixture
def dataset(settings, tiny_dataset):
    """Runs check the dataset before they are queued: one in place."""
    settings.PETSITE_DATASET_DIR = tiny_dataset
    return tiny_dataset


def test_check_set_is_a_fixed_fifth_and_never_exported_for_training(reviewed, tmp_path):
    check = set(comparison.check_set().values_list("pk", flat=True))
    training = set(comparison.training_set().values_list("pk", flat=True))
    assert check | training == {pet.pk for pet in reviewed}
    assert not check & training
    assert check == {pet.pk for pet in reviewed if pet.pk % comparison.CHECK_SET_EVERY == 0}
    assert len(check) == 2  # ten consecutive ids hold two multiples of five

    export_reviewed(tmp_path, images=comparison.training_set())
    exported = {int(name.rsplit("_", 1)[1]) for name, _ in read_split(tmp_path, "trainval")}
    assert exported == training


def test_one_run_at_a_time(staff, model_version, dataset, django_capture_on_commit_callbacks):
    first = training_services.start_run(staff, recipe="quick", epochs=1)
    assert first.state == State.QUEUED
    assert first.base_version == model_version
    with pytest.raises(training_services.TrainingError, match=f"Training run {first.pk} is waiting.*one run at a time"):
        training_services.start_run(staff)

    training_services.cancel(first)
    first.refresh_from_db()
    assert first.state == State.CANCELLED
    assert not first.is_current
    training_services.execute(first.pk)  # the task arrives after the cancellation: nothing happens
    first.refresh_from_db()
    assert first.state == State.CANCELLED
    assert first.started_at is None
    assert training_services.start_run(staff).state == State.QUEUED


def test_starting_from_the_active_model_needs_one(staff, db):
    with pytest.raises(training_services.TrainingError, match="start from ImageNet"):
        training_services.start_run(staff, start_from=TrainingRun.Start.ACTIVE)


def test_a_run_whose_worker_died_is_marked_failed_by_beat_not_by_a_look(client, staff, model_version, dataset):
    run = training_services.start_run(staff)
    stale = timezone.now() - training_services.HEARTBEAT_TIMEOUT - timedelta(seconds=1)
    TrainingRun.objects.filter(pk=run.pk).update(state=State.RUNNING, heartbeat_at=stale)
    client.force_login(staff)
    for url in (reverse("training:run_list"), run.get_absolute_url(), reverse("training:run_status", args=[run.pk])):
        assert client.get(url).status_code == 200
    assert training_services.current_run() == run  # looking writes nothing

    schedule = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule[tasks.expire_dead_runs.name] <= training_services.HEARTBEAT_TIMEOUT.total_seconds()
    assert tasks.expire_dead_runs.apply().get() == 1  # the task beat sends, run here
    assert training_services.current_run() is None
    run.refresh_from_db()
    assert run.state == State.FAILED
    assert "training worker stopped" in run.message
    assert run.result is None


@pytest.mark.django_db(transaction=True)
def test_a_failing_run_registers_nothing_and_says_why(staff, settings, tmp_path, tiny_dataset):
    settings.PETSITE_DATASET_DIR, settings.PETSITE_RUNS_DIR = tiny_dataset, tmp_path / "runs"
    run = TrainingRun.objects.create(requested_by=staff, start_from=TrainingRun.Start.IMAGENET, epochs=1,
                                     image_size=32)
    training_services.execute(run.pk)  # no ImageNet weights on this machine, and none downloaded
    run.refresh_from_db()
    assert run.state == State.FAILED
    assert not run.is_current
    assert "ImageNet" in run.message
    assert "No model was registered" in run.message
    assert "Start from the active model instead" in run.message
    assert "--" not in run.message
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_run_stops_before_training(staff, settings, tmp_path, tiny_dataset, model_version):
    settings.PETSITE_DATASET_DIR, settings.PETSITE_RUNS_DIR = tiny_dataset, tmp_path / "runs"
    run = TrainingRun.objects.create(requested_by=staff, base_version=model_version, epochs=1, image_size=32,
                                     cancel_requested=True)
    training_services.execute(run.pk)
    run.refresh_from_db()
    assert run.state == State.CANCELLED
    assert "No model was registered" in run.message
    assert list(ModelVersion.objects.values_list("name", flat=True)) == [model_version.name]
    assert not (tmp_path / "runs" / f"site-run-{run.pk}" / "train" / "model.pt").exists()


def test_compare_champion_and_challenger(reviewed, model_version, other_checkpoint_file, tiny_dataset, tmp_path):
    result = comparison.compare(other_checkpoint_file, model_version, tiny_dataset, tmp_path)
    check, test = result["sets"]["check"], result["sets"]["test"]
    assert result["champion"] == model_version.name
    assert check["num_images"] == 2
    assert test["num_images"] == 37
    for numbers in (check, test):
        for role in ("champion", "challenger"):
            assert 0.0 <= numbers[role]["accuracy"] <= numbers[role]["top5_accuracy"] <= 1.0
    # The images that changed are exactly those whose top-1 rightness differs.
    assert set(check["right_to_wrong"]) | set(check["wrong_to_right"]) <= set(comparison.check_set().values_list(
        "pk", flat=True))
    better_or_equal = all(numbers["challenger"]["accuracy"] >= numbers["champion"]["accuracy"]
                          for numbers in (check, test))
    assert result["recommended"] == better_or_equal
    for row in result["per_breed"]:
        assert row["change"] == pytest.approx(row["after"] - row["before"])
        assert row["change"] != 0


def test_promotion_of_a_worse_model_needs_confirmation(staff, model_version, other_version):
    run = TrainingRun.objects.create(state=State.SUCCEEDED, is_current=False, result=other_version,
                                     comparison={"recommended": False})
    with pytest.raises(training_services.TrainingError, match="tick the box"):
        training_services.promote(run)
    assert ModelVersion.objects.get(is_active=True) == model_version
    training_services.promote(run, confirmed=True)
    assert ModelVersion.objects.get(is_active=True) == other_version
    with pytest.raises(training_services.TrainingError, match="already the active model"):
        training_services.promote(run, confirmed=True)


def test_training_pages(client, staff, model_version, dataset, django_capture_on_commit_callbacks):
    client.force_login(staff)
    page = client.get(reverse("training:run_list"))
    assert page.status_code == 200
    assert "Start training" in page.content.decode()
    with django_capture_on_commit_callbacks() as sent:
        response = client.post(reverse("training:run_list"),
                               {"start_from": "active", "recipe": "quick", "epochs": 2, "image_size": 160})
    assert len(sent) == 1  # the training task, sent once the run's row is committed
    run = TrainingRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == run.get_absolute_url()
    assert (run.recipe, run.epochs, run.image_size) == ("quick", 2, 160)

    second = client.post(reverse("training:run_list"),
                         {"start_from": "active", "recipe": "auto", "epochs": 1, "image_size": 224})
    assert second.status_code == 400
    assert "one run at a time" in second.content.decode()

    TrainingRun.objects.filter(pk=run.pk).update(
        state=State.RUNNING, started_at=timezone.now() - timedelta(seconds=30), heartbeat_at=timezone.now(),
        progress={"stage": progress.ALL_LAYERS, "epoch": 1, "epochs": 2, "step": 3, "steps": 6, "loss": 1.5,
                  "accuracy": 0.25},
    )
    status = client.get(reverse("training:run_status", args=[run.pk])).json()
    assert status["state"] == "running"
    assert status["progress"]["step"] == 3
    assert "eta_seconds" not in status["progress"]  # the worker has not measured a rate yet
    detail = client.get(run.get_absolute_url()).content.decode()
    assert progress.LABELS[progress.ALL_LAYERS] in detail
    assert "Cancel this run" in detail

    client.post(reverse("training:run_cancel", args=[run.pk]))
    run.refresh_from_db()
    assert run.cancel_requested
    assert run.state == State.RUNNING


def _owners_upload_and_correct(client, user, breeds: list[int]) -> None:
    """Owners upload photos of known breeds and say what each really is."""
    import numpy as np

    from ml.breeds import BREED_KEYS
    from ml.synthetic import render_pet
    from tests.helpers import encoded, upload, wait_for

    rng = np.random.default_rng(7)
    client.force_login(user)
    for index in breeds:
        photo = encoded(render_pet(index, rng, 96), "JPEG", quality=92)
        assert client.post(reverse("classifier:upload"), {"image": upload(content=photo)}).status_code == 302
    wait_for(lambda: user.pet_images.filter(status="done").count() == len(breeds), what="classification")
    for pet, index in zip(user.pet_images.order_by("pk"), breeds, strict=True):
        client.post(reverse("classifier:feedback", args=[pet.pk]), {"answer": "wrong", "label": BREED_KEYS[index]})


def _staff_train_from_the_page(client, reviewer, trainer, runs, reviewed: int, check: set[int]) -> TrainingRun:
    """Staff start a run from the page; the training worker runs it, never on the check set."""
    from tests.helpers import wait_for

    client.force_login(reviewer)
    response = client.post(reverse("training:run_list"),
                           {"start_from": "active", "recipe": "auto", "epochs": "", "image_size": 128})
    run = TrainingRun.objects.get()
    assert response.status_code == 302, response.content.decode()
    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).finished, timeout=300, what="the training run")
    run.refresh_from_db()
    assert run.state == State.SUCCEEDED, run.message + trainer.log()
    assert run.num_reviewed_images == reviewed - len(check)
    assert run.settings["recipe"] == "quick"  # auto, on a CPU
    assert len(run.progress["history"]) == run.settings["head_epochs"] == 40  # the recipe's own: epochs left empty
    reviewed_dir = runs / f"site-run-{run.pk}" / "reviewed"
    exported = {int(name.rsplit("_", 1)[1]) for name, _ in read_split(reviewed_dir, "trainval")}
    assert exported
    assert not exported & check  # the check set never reaches training
    return run


def _promote_then_classify_with_it(client, user, run: TrainingRun, old_version: ModelVersion) -> None:
    """Promotion (confirmed in case the tiny run compared worse); a new photo uses the new
    model, and the photos classified before are classified again by it, history kept."""
    from django.core.management import call_command

    from tests.helpers import upload, wait_for

    client.post(reverse("training:run_promote", args=[run.pk]), {"confirm": "on"})
    assert ModelVersion.objects.get(is_active=True) == run.result
    client.force_login(user)
    client.post(reverse("classifier:upload"), {"image": upload()})
    newest = user.pet_images.latest("pk")
    wait_for(lambda: user.pet_images.get(pk=newest.pk).status == "done", what="classification by the new model")
    assert user.pet_images.get(pk=newest.pk).model_version == run.result

    call_command("reclassify", "--model", run.result.name, "--wait", "--timeout", "120")
    for pet in user.pet_images.all():
        assert pet.model_version == run.result
        assert pet.classifications.filter(model_version=run.result).count() == 1
    assert all(pet.classifications.filter(model_version=old_version).exists()
               for pet in user.pet_images.exclude(pk=newest.pk))


@pytest.mark.slow
def test_the_whole_loop_from_feedback_to_promotion(worker, client, user, model_version, tmp_path_factory,
                                                   django_user_model, settings):
    """Owners correct predictions, a reviewer accepts them, staff train from the page on a
    real worker of the training queue, compare, promote; new photos use the new model."""
    from classifier import review
    from tests.conftest import WorkerProcess, worker_env

    dataset = make_fake_pets(tmp_path_factory.mktemp("pets"), images_per_class=4, image_size=64)
    settings.PETSITE_DATASET_DIR = dataset  # checked here, before the run is queued
    runs = tmp_path_factory.mktemp("runs")
    trainer = WorkerProcess(worker_env(PETSITE_DATASET_DIR=str(dataset), PETSITE_RUNS_DIR=str(runs)),
                            args=("-Q", "training", "--pool", "solo", "-n", "trainer@%h"))
    try:
        assert trainer.ready.wait(timeout=90), trainer.log()
        breeds = [0, 1, 2, 3, 4] * 2
        _owners_upload_and_correct(client, user, breeds)

        reviewer = django_user_model.objects.create_superuser("boss", password="pw")
        assert review.accept_owner_answers(user.pet_images.all(), reviewer) == len(breeds)
        check = set(comparison.check_set().values_list("pk", flat=True))
        assert 1 <= len(check) < len(breeds)

        run = _staff_train_from_the_page(client, reviewer, trainer, runs, len(breeds), check)
        # The comparison, on the check set and the dataset's test split.
        assert run.result is not None
        assert not run.result.is_active
        assert run.comparison["champion"] == model_version.name
        assert run.comparison["sets"]["check"]["num_images"] == len(check)
        assert run.comparison["sets"]["test"]["num_images"] == 2 * 37
        page = client.get(run.get_absolute_url()).content.decode()
        assert "Check set (reviewed photos)" in page
        assert f"Promote {run.result.name}" in page

        _promote_then_classify_with_it(client, user, run, model_version)
    finally:
        trainer.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_full_recipe_run_reports_progress_and_registers_its_model(staff, settings, tmp_path, model_version):
    dataset = make_fake_pets(tmp_path / "pets", images_per_class=4, image_size=48)
    settings.PETSITE_DATASET_DIR, settings.PETSITE_RUNS_DIR = dataset, tmp_path / "runs"
    run = TrainingRun.objects.create(requested_by=staff, base_version=model_version, recipe="full", epochs=1,
                                     image_size=32)
    training_services.execute(run.pk)
    run.refresh_from_db()
    assert run.state == State.SUCCEEDED, run.message
    assert run.settings["recipe"] == "full"
    assert run.settings["epochs"] == 1
    assert [row["stage"] for row in run.progress["history"]] == ["frozen", "unfrozen"]
    assert run.progress["step"] == run.progress["steps"] > 0
    assert run.result.training_args["init_checkpoint"]
    assert not run.result.is_active
    assert run.comparison["champion"] == model_version.name
    assert "test" in run.comparison["sets"]
