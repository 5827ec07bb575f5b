"""ml core: model shape, weights loading, checkpoints and the Predictor, on tiny generated images."""
import io

import pytest
import torch
from PIL import Image

from ml import breeds
from ml.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from ml.inference import Predictor
from ml.model import WeightsUnavailableError, build_resnet34
from tests.helpers import image_bytes


def test_breeds_are_the_datasets_37_in_class_order():
    assert breeds.NUM_CLASSES == 37
    assert len(set(breeds.BREED_KEYS)) == 37
    assert breeds.BREED_KEYS == sorted(breeds.BREED_KEYS, key=str.lower)  # list.txt ids are alphabetical
    assert sum(b.species == breeds.CAT for b in breeds.BREEDS) == 12
    assert breeds.display_name("great_pyrenees") == "Great Pyrenees"
    assert breeds.key_for_display_name("British Shorthair") == "British_Shorthair"
    assert breeds.species_of("Sphynx") == breeds.CAT
    assert breeds.species_of("pug") == breeds.DOG


def test_model_has_new_head_and_right_output_shape():
    model = build_resnet34(num_classes=37, weights=None).eval()
    assert model.fc.out_features == 37
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 37)


def test_local_weights_file_loads_body_and_replaces_head(tmp_path):
    imagenet_like = build_resnet34(num_classes=1000, weights=None)
    path = tmp_path / "resnet34.pth"
    torch.save(imagenet_like.state_dict(), path)
    model = build_resnet34(num_classes=37, weights=path)
    assert torch.equal(model.conv1.weight, imagenet_like.conv1.weight)
    assert torch.equal(model.layer4[2].conv2.weight, imagenet_like.layer4[2].conv2.weight)
    assert model.fc.out_features == 37


def test_missing_weights_say_how_to_supply_them(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="--weights PATH"):
        build_resnet34(weights="imagenet")  # no internet and no cached file here
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_resnet34(weights=tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not torch")
    with pytest.raises(WeightsUnavailableError, match="Could not read"):
        build_resnet34(weights=tmp_path / "junk.pth")


def test_checkpoint_round_trip(checkpoint_file):
    checkpoint = load_checkpoint(checkpoint_file)
    assert checkpoint.classes == breeds.BREED_KEYS
    assert (checkpoint.arch, checkpoint.image_size, checkpoint.resize_size) == ("resnet34", 64, 73)
    assert checkpoint.torch_version == torch.__version__
    assert checkpoint.created_at
    assert checkpoint.metrics == {"accuracy": 0.0}
    model = checkpoint.build_model()
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, checkpoint.state_dict[key])


def test_corrupt_or_foreign_checkpoints_are_clear_errors(tmp_path, checkpoint_file):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint_file.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(truncated)
    bare = tmp_path / "bare.pt"
    torch.save(build_resnet34(weights=None).state_dict(), bare)
    with pytest.raises(CheckpointError, match="not a Petsite checkpoint"):
        load_checkpoint(bare)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_with_wrong_weights_is_refused(tmp_path):
    model = build_resnet34(num_classes=10, weights=None)
    path = save_checkpoint(tmp_path / "c.pt", model, classes=breeds.BREED_KEYS)  # 37 names, 10 outputs
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path).build_model()


def test_save_leaves_no_temporary_file(tmp_path):
    save_checkpoint(tmp_path / "m.pt", build_resnet34(weights=None), classes=breeds.BREED_KEYS)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


@pytest.fixture(scope="module")
def predictor(checkpoint_file):
    return Predictor(checkpoint_file)


def test_predictor_top_k_is_sorted_probabilities(predictor):
    predictions = predictor.classify(io.BytesIO(image_bytes()), k=5).top_k
    assert len(predictions) == 5
    probabilities = [p.probability for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0 <= p <= 1 for p in probabilities)
    assert sum(probabilities) <= 1 + 1e-6
    assert all(p.label in breeds.BREED_KEYS for p in predictions)
    all_37 = predictor.classify(io.BytesIO(image_bytes()), k=100).top_k
    assert len(all_37) == 37
    assert sum(p.probability for p in all_37) == pytest.approx(1, abs=1e-5)


def test_batch_equals_one_by_one(predictor):
    images = [
        Image.open(io.BytesIO(image_bytes(size=(64 + 16 * i, 80), color=(40 * i, 90, 200 - 30 * i)))) for i in range(5)
    ]
    batch = [r.top_k for r in predictor.classify_batch(images, k=3, batch_size=2)]
    for image, batched in zip(images, batch, strict=True):
        single = predictor.classify(image, k=3).top_k
        assert [p.label for p in single] == [p.label for p in batched]
        assert [p.probability for p in single] == pytest.approx([p.probability for p in batched], abs=1e-5)


def test_predictor_applies_exif_orientation(predictor):
    upright = Image.open(io.BytesIO(image_bytes(size=(96, 64))))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored_sideways = Image.open(io.BytesIO(image_bytes(size=(96, 64), exif=exif)))
    shown = upright.rotate(-90, expand=True)
    assert predictor.preprocess(stored_sideways).shape == predictor.preprocess(shown).shape
    assert torch.allclose(predictor.preprocess(stored_sideways), predictor.preprocess(shown), atol=1e-5)
    assert not torch.allclose(predictor.preprocess(stored_sideways), predictor.preprocess(upright), atol=1e-2)


def test_checkpoint_metrics_with_numpy_numbers_still_load_safely(tmp_path):
    import numpy as np

    path = save_checkpoint(
        tmp_path / "m.pt",
        build_resnet34(weights=None),
        classes=breeds.BREED_KEYS,
        metrics={"accuracy": np.float64(0.5), "per_class": [{"f1": np.float32(0.25).item()}]},
    )
    assert load_checkpoint(path).metrics == {"accuracy": 0.5, "per_class": [{"f1": 0.25}]}
