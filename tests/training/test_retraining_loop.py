"""Back to training: export of reviewed images, and reclassification that keeps history."""
import pytest
from django.core.management import CommandError, call_command
from torchvision.datasets import OxfordIIITPet

from classifier.models import NOT_A_PET, Classification, PetImage
from ml.breeds import BREED_KEYS
from ml.data import check_dataset, read_split
from tests.helpers import store_photo, upload, wait_for


def test_export_writes_the_dataset_layout(tmp_path, make_image, capsys):
    pets = [
        make_image("pug", reviewed_label="pug", reviewed_at="2026-01-01T00:00Z"),
        make_image("pug", reviewed_label="beagle", reviewed_at="2026-01-02T00:00Z"),
        make_image("Persian", reviewed_label="Sphynx", reviewed_at="2026-03-01T00:00Z"),
        make_image("pug", reviewed_label=NOT_A_PET, reviewed_at="2026-03-01T00:00Z"),
        make_image("pug", is_correct=False, true_breed="boxer"),  # owner's answer only: not reviewed
    ]
    call_command("export_reviewed", str(tmp_path))
    out = capsys.readouterr().out
    assert "Exported 3 reviewed image(s) of 3 breed(s)" in out
    assert "Beagle" in out

    check_dataset(tmp_path, splits=("trainval",))
    expected = {
        f"{label}_{pet.pk}": BREED_KEYS.index(label)
        for pet, label in zip(pets[:3], ["pug", "beagle", "Sphynx"], strict=True)
    }
    assert dict(read_split(tmp_path, "trainval")) == expected

    dataset = OxfordIIITPet(tmp_path, split="trainval", target_types="category")
    assert len(dataset) == 3
    assert sorted(label for _, label in dataset) == sorted(expected.values())
    image, _ = dataset[0]
    assert image.mode == "RGB"
    assert image.size == (96, 72)


def test_export_since(tmp_path, make_image, capsys):
    make_image("pug", reviewed_label="pug", reviewed_at="2026-01-01T00:00Z")
    new = make_image("pug", reviewed_label="beagle", reviewed_at="2026-06-01T00:00Z")
    call_command("export_reviewed", str(tmp_path), "--since", "2026-05-01")
    assert [name for name, _ in read_split(tmp_path, "trainval")] == [f"beagle_{new.pk}"]
    with pytest.raises(CommandError, match="expected a date"):
        call_command("export_reviewed", str(tmp_path), "--since", "last tuesday")


@pytest.mark.slow
def test_reclassify_through_the_worker_keeps_history(worker, user, model_version, other_checkpoint_file, capsys):
    for _ in range(3):  # uploads, classified by the worker with the active model
        file = upload()
        store_photo(user, file)
    wait_for(lambda: PetImage.objects.filter(status="done").count() == 3, what="the first classification")
    assert Classification.objects.filter(model_version=model_version).count() == 3

    from registry import services as registry_services

    new_version = registry_services.register_model(other_checkpoint_file, name="v2")
    call_command("reclassify", "--model", "v2", "--chunk-size", "2", "--wait", "--timeout", "90")
    out = capsys.readouterr().out
    assert "Sent 3 image(s) in 2 chunk(s)" in out
    assert "All 3 image(s) classified by v2" in out

    from ml.inference import Predictor

    predictor = Predictor(other_checkpoint_file)
    for pet in PetImage.objects.all():
        history = list(pet.classifications.order_by("created_at").values_list("model_version__name", flat=True))
        assert history == [model_version.name, "v2"]
        assert pet.model_version == new_version
        assert pet.predicted_breed == predictor.classify(pet.image.open("rb")).top_k[0].label

    # Idempotent: asking again sends nothing, because every image has v2's prediction.
    call_command("reclassify", "--model", "v2")
    assert "Sent 0 image(s)" in capsys.readouterr().out
    assert Classification.objects.count() == 6


@pytest.mark.slow
def test_admin_rerun_action_uses_the_new_active_model(worker, user, model_version, other_checkpoint_file, client):
    from django.contrib.admin import helpers
    from django.urls import reverse

    from registry import services as registry_services

    file = upload()
    pet = store_photo(user, file)
    wait_for(lambda: PetImage.objects.get(pk=pet.pk).status == "done", what="the first classification")

    registry_services.register_model(other_checkpoint_file, name="v2", activate=True)
    user.is_staff = user.is_superuser = True
    user.save()
    client.force_login(user)
    response = client.post(
        reverse("admin:classifier_petimage_changelist"),
        {"action": "rerun_classification", helpers.ACTION_CHECKBOX_NAME: [pet.pk]},
        follow=True,
    )
    assert "Sent 1 image to the workers in 1 chunk(s)" in response.content.decode()
    wait_for(lambda: PetImage.objects.get(pk=pet.pk).model_version.name == "v2", what="reclassification by v2")
    assert list(pet.classifications.order_by("created_at").values_list("model_version__name", flat=True)) == [
        model_version.name,
        "v2",
    ]
