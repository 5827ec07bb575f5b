"""The first model: `train` picks its recipe and downloads ImageNet weights only when asked,
the models page points staff to the Training page, and bin/run prints a command `train` takes."""
import pytest
from torchvision.models import ResNet34_Weights

FIRST_MODEL = "python manage.py train --data var/pets --download --recipe auto --activate"


def test_train_says_which_recipe_auto_picks(db, tmp_path):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    with pytest.raises(CommandError, match="does not exist"):
        call_command("train", "--data", str(tmp_path / "nowhere"), "--no-pretrained", "--device", "cpu",
                     "--recipe", "auto", stdout=out)
    assert "Recipe: quick (--recipe auto on a CPU without a GPU" in out.getvalue()


def test_train_downloads_weights_only_with_download(db, tiny_pets, tmp_path, no_cached_weights):
    from django.core.management import CommandError, call_command

    from registry.models import ModelVersion

    for recipe in ("quick", "full"):
        with pytest.raises(CommandError, match="Add --download to the command"):
            call_command("train", "--data", str(tiny_pets), "--recipe", recipe, "--out", str(tmp_path / recipe))
    assert no_cached_weights == []
    with pytest.raises(CommandError, match="could not be loaded"):  # asked: tried, and no network here
        call_command("train", "--data", str(tiny_pets), "--download", "--out", str(tmp_path / "d"))
    assert no_cached_weights == [ResNet34_Weights.IMAGENET1K_V1.url]
    assert not ModelVersion.objects.exists()
    assert not list(tmp_path.glob("*/model.pt"))


def test_the_models_page_points_to_the_training_page_while_none_is_active(admin_client, model_version):
    """Staff are shown the Training page, not the first-model command (bin/run shows that)."""
    from django.urls import reverse

    model_version.is_active = False
    model_version.save()
    page = admin_client.get(reverse("registry:model_list")).content.decode()
    assert "No model is active" in page
    assert f'href="{reverse("training:run_list")}"' in page
    assert FIRST_MODEL not in page
    assert "manage" not in page

    model_version.is_active = True
    model_version.save()
    assert "No model is active" not in admin_client.get(reverse("registry:model_list")).content.decode()


def test_bin_run_prints_the_first_model_command():
    from pathlib import Path

    from django.core.management import load_command_class

    script = (Path(__file__).resolve().parents[2] / "bin" / "run").read_text()
    assert FIRST_MODEL.replace("python manage.py", "bin/manage") in script
    parser = load_command_class("registry", "train").create_parser("manage.py", "train")
    options = parser.parse_args(FIRST_MODEL.split()[3:])  # a command `train` accepts
    assert options.download
    assert options.activate
    assert options.recipe == "auto"
