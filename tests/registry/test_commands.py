"""import_model, activate_model and predict: the model-version commands."""
import re

import pytest
from django.core.management import CommandError, call_command

from ml.breeds import BREED_KEYS, display_name
from ml.inference import Predictor
from registry import services
from registry.models import ModelVersion, ModelWarmup
from tests.helpers import image_bytes


def test_import_and_activate(db, checkpoint_file, capsys):
    call_command("import_model", str(checkpoint_file), "--name", "v1")
    call_command("import_model", str(checkpoint_file), "--name", "v2", "--activate")
    assert services.active_version().name == "v2"
    call_command("activate_model", "v1")
    assert list(ModelVersion.objects.filter(is_active=True).values_list("name", flat=True)) == ["v1"]
    v1 = ModelVersion.objects.get(name="v1")
    assert v1.classes[0] == "Abyssinian"
    assert v1.image_size == 64
    assert v1.metrics == {"accuracy": 0.0}
    assert v1.file.read() == checkpoint_file.read_bytes()


def test_import_refuses_bad_files_and_duplicate_names(db, tmp_path, checkpoint_file):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(CommandError, match="not a readable checkpoint"):
        call_command("import_model", str(junk))
    call_command("import_model", str(checkpoint_file), "--name", "v1")
    with pytest.raises(CommandError, match="exists already"):
        call_command("import_model", str(checkpoint_file), "--name", "v1")
    assert ModelVersion.objects.count() == 1


def _checkpoint(path, num_outputs: int, classes, image_size: int = 32):
    import torch

    from ml.checkpoints import save_checkpoint
    from ml.model import build_resnet34

    torch.manual_seed(0)
    return save_checkpoint(path, build_resnet34(num_classes=num_outputs, weights=None), classes=classes,
                           image_size=image_size)


@pytest.mark.parametrize(("case", "message"), [
    ("other classes", "classes are not the 37 expected (unknown ['cat', 'dog']"),
    ("breeds in another order", "the order differs"),
    ("weights that do not fit", "weights do not fit"),
])
def test_import_refuses_checkpoints_that_would_break_the_workers(db, tmp_path, case, message):
    """Registration builds the model and runs it once: a mismatch is a clear error now,
    not a failure in every worker later."""
    breeds = list(BREED_KEYS)
    path = {
        "other classes": lambda: _checkpoint(tmp_path / "c.pt", 2, ["cat", "dog"]),
        "breeds in another order": lambda: _checkpoint(tmp_path / "c.pt", 37, breeds[::-1]),
        "weights that do not fit": lambda: _checkpoint(tmp_path / "c.pt", 10, breeds),
    }[case]()
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("import_model", str(path), "--name", "bad")
    assert not ModelVersion.objects.exists()


def test_activate_unknown_model(db):
    with pytest.raises(CommandError, match="No model version named 'nope'"):
        call_command("activate_model", "nope")


def test_predict_prints_top5_of_active_model(model_version, checkpoint_file, tmp_path, capsys):
    path = tmp_path / "pet.png"
    path.write_bytes(image_bytes(fmt="PNG"))
    call_command("predict", str(path))
    out = capsys.readouterr().out
    expected = Predictor(checkpoint_file).classify(path, k=5).top_k
    lines = out.splitlines()
    assert lines[0] == f"{path}  [{model_version.name}]"
    assert [line.split(".", 1)[1].rsplit(None, 1)[0].strip() for line in lines[1:]] == [
        display_name(p.label) for p in expected
    ]


def test_predict_with_the_auto_backend_leaves_no_warm_up_behind(model_version, settings, tmp_path, capsys):
    """A command that ends in seconds answers with eager FP32 (no choice was made on this
    machine) and starts no warm-up process that would outlive it: workers warm models up."""
    settings.PETSITE_INFERENCE_BACKEND = "auto"
    settings.PETSITE_BACKEND_CACHE_DIR = tmp_path / "backends"
    services._cached_predictor.cache_clear()
    path = tmp_path / "pet.png"
    path.write_bytes(image_bytes(fmt="PNG"))
    try:
        call_command("predict", str(path))
        assert services.predictor_for(model_version, warm_up=False).backend.name == "eager"
    finally:
        services._cached_predictor.cache_clear()
    assert capsys.readouterr().out.startswith(f"{path}  [{model_version.name}]")
    assert not services._warming
    assert not ModelWarmup.objects.exists()


def test_predict_without_model_says_how_to_get_one(db, tmp_path):
    with pytest.raises(CommandError, match="import_model FILE"):
        call_command("predict", str(tmp_path / "x.jpg"))


def test_predict_reports_unreadable_images(model_version, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(CommandError, match="1 of 1 images could not be read"):
        call_command("predict", str(bad))


def test_only_one_version_can_be_active(db, checkpoint_file):
    from django.db import IntegrityError, transaction

    services.register_model(checkpoint_file, name="a", activate=True)
    b = services.register_model(checkpoint_file, name="b")
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=b.pk).update(is_active=True)
