"""`train`, `evaluate` and the model pages, through manage.py, on a tiny fake dataset.

Learning itself is tested in test_training.py; here the mechanics of the Django shell:
a run registers a version with its figures, fine-tuning from a version on exported
reviewed images registers another.
"""
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from PIL import Image

from ml.breeds import BREED_KEYS
from ml.inference import Predictor
from ml.plots import FIGURES
from registry.models import ModelVersion

pytestmark = pytest.mark.slow
TINY = ["--no-pretrained", "--recipe", "full", "--epochs", "1", "--freeze-epochs", "1", "--image-size", "32",
        "--batch-size", "32", "--workers", "0", "--threads", "2", "--verbosity", "0"]


def test_train_registers_an_active_version_with_everything(db, tiny_pets, tmp_path, admin_client, capsys):
    out = tmp_path / "run"
    call_command("train", "--data", str(tiny_pets), "--out", str(out), "--name", "tiny-v1", "--activate", *TINY)
    version = ModelVersion.objects.get(name="tiny-v1")
    assert version.is_active
    assert version.image_size == 32
    assert version.classes == BREED_KEYS

    predictions = Predictor(version.file.open("rb").read()).classify(Image.new("RGB", (40, 40)), k=5).top_k
    assert len(predictions) == 5

    assert set(version.figures) == set(FIGURES)
    for name, path in version.figures.items():
        data = version.file.storage.open(path, "rb").read()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), name
        assert (out / "figures" / f"{name}.png").read_bytes() == data

    metrics = json.loads((out / "metrics.json").read_text())
    assert version.metrics == metrics
    assert metrics["split"] == "test"
    matrix = metrics["confusion_matrix"]
    assert sum(map(sum, matrix)) == metrics["num_images"] == len(BREED_KEYS)  # one test image per breed
    assert metrics["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(37)) / metrics["num_images"])
    assert [e["stage"] for e in version.history["epochs"]] == ["frozen", "unfrozen"]
    assert version.training_args["init_checkpoint"] is None
    assert version.training_args["weights"] is None

    page = admin_client.get(reverse("registry:model_detail", args=["tiny-v1"]))
    assert page.status_code == 200
    html = page.content.decode()
    for name in FIGURES:
        assert reverse("registry:model_figure", args=["tiny-v1", name]) in html
    assert admin_client.get(reverse("registry:model_figure", args=["tiny-v1", "loss"]))["Content-Type"] == "image/png"
    assert (
        reverse("registry:model_detail", args=["tiny-v1"])
        in admin_client.get(reverse("admin:registry_modelversion_changelist")).content.decode()
    )

    # evaluate: metrics and figures of the version on another split, kept with it
    capsys.readouterr()
    call_command(
        "evaluate",
        "--model",
        "tiny-v1",
        "--data",
        str(tiny_pets),
        "--split",
        "trainval",
        "--workers",
        "0",
        "--out",
        str(tmp_path / "eval"),
        "--verbosity",
        "0",
    )
    assert "tiny-v1 on trainval (111 images)" in capsys.readouterr().out
    version.refresh_from_db()
    assert version.metrics["evaluations"]["trainval"]["num_images"] == 111
    assert "trainval_confusion_matrix" in version.figures


def test_train_with_the_quick_recipe_registers_a_version_with_everything(db, tiny_pets, tmp_path, settings,
                                                                          capsys):
    """Same registration, figures and Predictor as the full recipe; the feature cache lives in
    PETSITE_FEATURE_CACHE_DIR by default and is reused by the next run."""
    settings.PETSITE_FEATURE_CACHE_DIR = tmp_path / "var" / "cache" / "features"
    args = ["--data", str(tiny_pets), "--no-pretrained", "--recipe", "quick", "--image-size", "32", "--views", "2",
            "--head-epochs", "3", "--workers", "0", "--threads", "2", "--verbosity", "0"]
    call_command("train", *args, "--out", str(tmp_path / "q1"), "--name", "quick-v1", "--activate")
    version = ModelVersion.objects.get(name="quick-v1")
    assert version.is_active
    assert version.training_args["recipe"] == "quick"
    assert set(version.figures) == set(FIGURES)
    assert len(Predictor(version.file.open("rb").read()).classify(Image.new("RGB", (40, 40)), k=5).top_k) == 5
    assert [e["stage"] for e in version.history["epochs"]] == ["frozen"] * 3
    computed = version.history["features"]["computed"]
    assert computed == 2 * (3 * 37 - 37) + 37 + 37
    assert version.history["features"]["cached"] == 0
    assert len(list((tmp_path / "var" / "cache" / "features").rglob("*.npy"))) == computed

    first = capsys.readouterr().out
    assert "Recipe: quick (--recipe quick)." in first
    assert "body backend: " in first
    call_command("train", *args, "--out", str(tmp_path / "q2"), "--name", "quick-v2")
    assert f"body features: 0 computed, {computed} read from the cache" in capsys.readouterr().out
    assert ModelVersion.objects.get(name="quick-v2").metrics["accuracy"] == version.metrics["accuracy"]


def test_fine_tune_from_a_version_on_exported_reviews(model_version, tiny_pets, tmp_path, user):
    """The loop back: reviewed uploads, exported, fine-tune the active version into a new one."""
    from classifier import review
    from classifier.models import PetImage
    from tests.helpers import store_photo, upload

    for label in ["pug", "Bengal", "beagle"]:
        file = upload()
        pet = store_photo(user, file)
        review.set_label(PetImage.objects.filter(pk=pet.pk), label, reviewer=user)
    call_command("export_reviewed", str(tmp_path / "reviewed"))

    call_command(
        "train",
        "--data",
        str(tiny_pets),
        "--init-from",
        model_version.name,
        "--extra-data",
        str(tmp_path / "reviewed"),
        "--out",
        str(tmp_path / "run2"),
        "--name",
        "tiny-v2",
        *[a for a in TINY if a != "--no-pretrained"],
    )
    v2 = ModelVersion.objects.get(name="tiny-v2")
    assert v2.training_args["extra_data"] == [str(tmp_path / "reviewed")]
    assert v2.training_args["num_train_images"] == 3 * 37 - 37 + 3  # trainval minus validation, plus the exports
    assert v2.notes == f"Fine-tuned from {model_version.name}."
    assert not v2.is_active
    assert set(v2.figures) == set(FIGURES)


def test_clear_errors(db, tmp_path, tiny_pets):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("train", "--data", str(tmp_path / "nowhere"), *TINY)
    with pytest.raises(CommandError, match="--no-pretrained"):
        call_command("train", "--data", str(tiny_pets), *TINY[1:])  # ImageNet weights: not on this machine
    with pytest.raises(CommandError, match="No model version named 'nope'"):
        call_command("train", "--data", str(tiny_pets), "--init-from", "nope", *TINY[1:])
    assert not ModelVersion.objects.exists()


def test_model_pages_are_staff_only(client, model_version, user, django_user_model):
    """The model pages need registry.view_modelversion (the Reviewers group): staff status alone is not enough."""
    from django.contrib.auth.models import Group

    name = model_version.name
    reviewer = django_user_model.objects.create_user("ray", password="pw", is_staff=True)
    reviewer.groups.add(Group.objects.get(name="Reviewers"))
    staff = django_user_model.objects.create_user("stan", password="pw", is_staff=True)
    for url, allowed in [
        (reverse("registry:model_list"), 200),
        (reverse("registry:model_detail", args=[name]), 200),
        (reverse("registry:model_figure", args=[name, "loss"]), 404),  # past the permission: no figures
    ]:
        client.logout()
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
        for who, status in [(user, 403), (staff, 403), (reviewer, allowed)]:
            client.force_login(who)
            assert client.get(url).status_code == status, (url, who.username)
