"""Verdicts: confident, unsure or not a pet.

The maths is checked on small feature clouds whose truth is known (fast); the whole
path (training fits the calibration, the checkpoint carries it, the Predictor applies
it in one forward pass) on one real run over the generated pets, measured against
generated non-pets (slow, one shared run).
"""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

from ml import calibration as cal
from ml.breeds import BREED_KEYS
from ml.calibration import CONFIDENT, ENERGY, MAHALANOBIS, NOT_A_PET, UNSURE, VERDICTS
from ml.checkpoints import FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from ml.data import read_split
from ml.inference import Predictor, Result
from ml.model import features_and_logits
from ml.outputs import run_evaluation
from ml.recipes.full import run_full
from ml.synthetic import NON_PET_KINDS, make_non_pets
from tests.helpers import image_bytes

from .test_training import LEARNING_CONFIG, full_config

slow = pytest.mark.slow


# --- the maths, on feature clouds -------------------------------------------------------------

def _clouds(generator, per_class, classes=10, dim=64, centres=None):
    """Features like a ResNet's (positive, one cluster per class), their logits and targets."""
    if centres is None:
        centres = torch.randn(classes, dim, generator=generator) * 3 + 10
    targets = torch.arange(len(centres)).repeat_interleave(per_class)
    features = centres[targets] + torch.randn(len(targets), centres.shape[1], generator=generator)
    return features, features @ centres.T / 50, targets, centres


def test_threshold_keeps_the_asked_share_of_new_images():
    g = torch.Generator().manual_seed(0)
    features, logits, targets, centres = _clouds(g, per_class=40)
    calibration = cal.fit_calibration(features, logits, targets, keep=0.95)
    fresh, fresh_logits, _, _ = _clouds(g, per_class=300, centres=centres)
    for score in (ENERGY, MAHALANOBIS):
        chosen = cal.with_ood_score(calibration, score)
        kept = (cal.ood_scores(chosen, fresh, fresh_logits) <= chosen["ood_threshold"]).float().mean().item()
        assert 0.92 <= kept <= 0.99, (score, kept)
    validation = calibration["validation"]["verdicts"]
    assert sum(validation.values()) == len(targets) == calibration["num_images"]
    assert validation[NOT_A_PET] == len(targets) - int(np.ceil(0.95 * len(targets)))


def test_out_of_fold_threshold_is_honest_where_an_in_sample_one_is_not():
    """64 dimensions, 8 images per class: statistics fitted on the images they then score
    place those images far closer than new ones, and a threshold taken from them refuses
    most new in-distribution images. The out-of-fold threshold keeps what it promises."""
    g = torch.Generator().manual_seed(0)
    features, logits, targets, centres = _clouds(g, per_class=8)
    calibration = cal.with_ood_score(cal.fit_calibration(features, logits, targets), MAHALANOBIS)
    fresh, fresh_logits, _, _ = _clouds(g, per_class=300, centres=centres)
    scores = cal.ood_scores(calibration, fresh, fresh_logits)
    assert (scores <= calibration["ood_threshold"]).float().mean() >= 0.9

    unit = cal.unit_length(features)
    means, precision, _ = cal.fit_gaussian(unit, targets, 10)
    in_sample = torch.quantile(cal.mahalanobis_score(unit, means, precision), 0.95)
    assert (scores <= in_sample).float().mean() < 0.6


def test_far_away_points_are_not_pets_for_both_scores():
    g = torch.Generator().manual_seed(1)
    features, logits, targets, centres = _clouds(g, per_class=30)
    calibration = cal.fit_calibration(features, logits, targets)
    # Another kind of thing: features in directions no class has, weaker overall.
    elsewhere = torch.rand(50, 64, generator=g) * 4
    elsewhere_logits = elsewhere @ centres.T / 50
    for score in (ENERGY, MAHALANOBIS):
        chosen = cal.with_ood_score(calibration, score)
        results = cal.verdicts(chosen, elsewhere_logits, elsewhere)
        assert [r.verdict for r in results] == [NOT_A_PET] * 50, score
        assert all(r.scores["ood_score"] > r.scores["ood_threshold"] and r.scores["ood_method"] == score
                   for r in results)


def test_shrinkage_makes_a_singular_covariance_usable():
    g = torch.Generator().manual_seed(2)
    scales = torch.linspace(0.1, 3, 50)
    few = torch.randn(20, 50, generator=g) * scales  # 20 images, 50 dimensions
    centred = few - few.mean(0)
    sample = centred.T.double() @ centred.double() / len(centred)
    assert torch.linalg.matrix_rank(sample) < 50  # singular: no inverse
    covariance, shrinkage = cal.shrunk_covariance(centred)
    assert 0 < shrinkage <= 1
    eigenvalues = torch.linalg.eigvalsh(covariance)
    assert eigenvalues.min() > 0
    assert eigenvalues.max() / eigenvalues.min() < 1e4
    means, precision, _ = cal.fit_gaussian(few, torch.zeros(20, dtype=torch.long), 1)
    distances = cal.mahalanobis_score(torch.randn(5, 50, generator=g) * scales, means, precision)
    assert torch.isfinite(distances).all()
    assert (distances > 0).all()


def test_ledoit_wolf_shrinks_as_much_as_the_data_needs():
    g = torch.Generator().manual_seed(3)
    anisotropic = torch.linspace(0.3, 10, 20)
    many_clear = torch.randn(4000, 20, generator=g) * anisotropic
    few_clear = torch.randn(15, 20, generator=g) * anisotropic
    round_cloud = torch.randn(4000, 20, generator=g)  # the identity target is the truth itself
    shrink = {name: cal.shrunk_covariance(x - x.mean(0))[1]
              for name, x in [("many", many_clear), ("few", few_clear), ("round", round_cloud)]}
    assert shrink["many"] < 0.01 < shrink["few"], shrink
    assert shrink["round"] > 0.5, shrink


def test_probability_threshold_starts_where_predictions_are_mostly_wrong():
    p = torch.tensor([0.2, 0.3, 0.45, 0.55, 0.6, 0.62, 0.65, 0.7, 0.8, 0.9, 0.99])
    # Mostly wrong up to 0.65 (one right at 0.6 among three wrong), right from 0.7 on.
    correct = torch.tensor([0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1])
    assert cal.probability_threshold(p, correct) == pytest.approx(0.7)
    # Errors only below 0.5: the floor stays.
    assert cal.probability_threshold(p, p > 0.5) == 0.5
    # Everything right, or everything wrong above the floor: 0.5, or just above the last error.
    assert cal.probability_threshold(p, torch.ones(11)) == 0.5
    assert cal.probability_threshold(p, p > 0.9) == pytest.approx(0.99)


def _calibration(**overrides):
    return {"ood_score": ENERGY, "ood_threshold": -2.0, "ood_thresholds": {ENERGY: -2.0},
            "probability_threshold": 0.6, **overrides}


def test_verdicts_say_why():
    logits = torch.tensor([
        [9.0, 0.0, 0.0],  # sure and familiar: energy about -9
        [1.0, 0.8, 0.0],  # weak: energy about -1.8, over the threshold of -2
        [4.0, 3.9, 0.0],  # familiar (about -4.7) but torn between two (0.52): unsure
        [0.0, 0.0, 0.0],  # flat and weak (-1.1): not a pet, though nothing is sure
    ])
    results = cal.verdicts(_calibration(), logits)
    assert [r.verdict for r in results] == [CONFIDENT, NOT_A_PET, UNSURE, NOT_A_PET]
    first = results[0].scores
    assert set(first) == {"top_probability", "probability_threshold", "ood_method", "ood_score", "ood_threshold"}
    assert first["ood_method"] == ENERGY
    assert first["ood_threshold"] == -2.0
    assert first["probability_threshold"] == 0.6
    assert first["ood_score"] == pytest.approx(-torch.logsumexp(logits[0], 0).item())
    assert first["top_probability"] == pytest.approx(logits[0].softmax(0).max().item())


def test_without_calibration_only_the_probability_decides():
    logits = torch.tensor([[9.0, 0.0, 0.0], [0.0, 0.0, 0.2], [-50.0, -50.0, -50.0]])  # p 1.0, 0.38, 0.33
    for calibration in ({}, {"probability_threshold": 0.6}):
        results = cal.verdicts(calibration, logits, torch.randn(3, 4))
        assert [r.verdict for r in results] == [CONFIDENT, UNSURE, UNSURE]
        assert all(r.scores["ood_score"] is None and r.scores["ood_method"] is None for r in results)
    assert cal.verdicts({}, logits)[0].scores["probability_threshold"] == cal.DEFAULT_PROBABILITY_THRESHOLD


def test_bad_arguments_are_refused():
    features, logits, targets, _ = _clouds(torch.Generator().manual_seed(0), per_class=3)
    with pytest.raises(ValueError, match="OOD score"):
        cal.fit_calibration(features, logits, targets, ood_score="softmax")
    with pytest.raises(ValueError, match="keep"):
        cal.fit_calibration(features, logits, targets, keep=1.5)
    with pytest.raises(ValueError, match="no threshold"):
        cal.with_ood_score({}, MAHALANOBIS)


def test_auroc():
    assert cal.auroc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 1.0
    assert cal.auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 0.0
    assert cal.auroc(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])) == 0.5


# --- checkpoints and the Predictor ----------------------------------------------------------

def _model_calibration(model, image_size=64, images=24, seed=0):
    """A calibration fitted on a random model's outputs for a few images (shapes are what matter)."""
    g = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        features, logits = features_and_logits(model.eval(), torch.randn(images, 3, image_size, image_size,
                                                                              generator=g))
    return cal.fit_calibration(features, logits, torch.arange(images) % logits.shape[1])


@pytest.fixture(scope="module")
def calibrated_file(checkpoint_file, tmp_path_factory):
    """The random-weight test checkpoint, saved again with a calibration of its model."""
    checkpoint = load_checkpoint(checkpoint_file)
    model = checkpoint.build_model()
    calibration = _model_calibration(model, checkpoint.image_size)
    path = tmp_path_factory.mktemp("calibrated") / "model.pt"
    return save_checkpoint(path, model, classes=checkpoint.classes, image_size=checkpoint.image_size,
                           calibration=calibration)


def test_calibration_round_trips_through_the_checkpoint(calibrated_file):
    raw = torch.load(calibrated_file, map_location="cpu", weights_only=True)  # the safe loader accepts it
    assert raw["format"] == FORMAT
    checkpoint = load_checkpoint(calibrated_file)
    calibration = checkpoint.calibration
    assert calibration["ood_score"] == cal.DEFAULT_OOD_SCORE
    assert calibration["keep"] == 0.95
    assert set(calibration["ood_thresholds"]) == {ENERGY, MAHALANOBIS}
    assert calibration["class_means"].shape == (37, 512)
    assert calibration["precision"].shape == (512, 512)
    assert calibration["class_means"].dtype == torch.float32
    checkpoint.verify(BREED_KEYS)  # statistics that fit the model pass


def test_calibration_that_does_not_fit_the_model_is_refused(checkpoint_file, tmp_path):
    model = load_checkpoint(checkpoint_file).build_model()
    calibration = _model_calibration(model)
    calibration["precision"] = calibration["precision"][:256, :256]
    path = save_checkpoint(tmp_path / "m.pt", model, classes=BREED_KEYS, image_size=64, calibration=calibration)
    with pytest.raises(CheckpointError, match="calibration does not fit"):
        load_checkpoint(path).verify(BREED_KEYS)


def _image_sources():
    pets_free = [image for _, image in make_non_pets(per_kind=1, image_size=64, seed=5)]
    return [io.BytesIO(image_bytes()), Image.open(io.BytesIO(image_bytes(size=(80, 120), color=(10, 200, 90)))),
            *pets_free]


def test_checkpoint_from_before_calibration_loads_and_never_says_not_a_pet(checkpoint_file, tmp_path):
    data = torch.load(checkpoint_file, map_location="cpu", weights_only=True)
    del data["calibration"]  # as every checkpoint written before this field existed
    old = tmp_path / "old.pt"
    torch.save(data, old)
    checkpoint = load_checkpoint(old)
    assert checkpoint.calibration == {}
    checkpoint.verify(BREED_KEYS)
    results = Predictor(checkpoint).classify_batch(_image_sources(), k=3)
    assert {r.verdict for r in results} <= {CONFIDENT, UNSURE}
    assert all(r.scores["ood_score"] is None and r.scores["probability_threshold"] == 0.5 for r in results)


def test_classify_is_one_forward_pass_agreeing_with_one_by_one(calibrated_file):
    predictor = Predictor(calibrated_file)
    tensors = [predictor.preprocess(source) for source in _image_sources()]
    calls = []
    counter = predictor.model.conv1.register_forward_hook(lambda *_: calls.append(1))  # once per forward pass
    try:
        results = predictor.classify_batch(tensors, k=4)
    finally:
        counter.remove()
    assert len(calls) == 1
    assert all(isinstance(r, Result) and r.verdict in VERDICTS and len(r.top_k) == 4 for r in results)
    assert all(r.scores["ood_method"] == cal.DEFAULT_OOD_SCORE for r in results)
    top_k = [predictor.classify(source, k=4).top_k for source in _image_sources()]  # each read and preprocessed
    for result, predictions in zip(results, top_k, strict=True):
        assert [p.label for p in result.top_k] == [p.label for p in predictions]
        assert result.scores["top_probability"] == pytest.approx(predictions[0].probability)
    assert not predictor.model.fc._forward_pre_hooks
    assert not predictor.model.conv1._forward_hooks


# --- one real run: generated pets and non-pets --------------------------------------------------

@pytest.fixture(scope="module")
def trained(fake_pets, tmp_path_factory):
    """LEARNING_CONFIG (ResNet34 from scratch, 32 px, 1 + 4 epochs), as test_training trains it."""
    start = time.perf_counter()
    result = run_full(full_config(fake_pets, **{**LEARNING_CONFIG, "progress": False}),
                          tmp_path_factory.mktemp("calibrated-run"), log=lambda _: None)
    predictor = Predictor(result.checkpoint)
    rows = read_split(fake_pets, "test")
    pets = [fake_pets / "oxford-iiit-pet" / "images" / f"{name}.jpg" for name, _ in rows]
    non_pets = make_non_pets(per_kind=25, image_size=64, seed=1)

    def outputs(images):
        with torch.inference_mode():
            return features_and_logits(predictor.model, torch.stack([predictor.preprocess(i) for i in images]))

    return {
        "result": result, "predictor": predictor, "labels": [BREED_KEYS[label] for _, label in rows],
        "pets": predictor.classify_batch(pets), "non_pets": predictor.classify_batch([i for _, i in non_pets]),
        "kinds": [kind for kind, _ in non_pets], "pet_outputs": outputs(pets),
        "non_pet_outputs": outputs([i for _, i in non_pets]), "seconds": time.perf_counter() - start,
    }


def _counts(results):
    return {name: sum(r.verdict == name for r in results) for name in VERDICTS}


@slow
def test_non_pets_are_refused_and_pets_kept_with_their_breed(trained):
    pets, non_pets = trained["pets"], trained["non_pets"]
    pet_counts, non_pet_counts = _counts(pets), _counts(non_pets)
    print(f"\ngenerated pets {pet_counts}, non-pets {non_pet_counts} ({trained['seconds']:.0f} s)")
    assert non_pet_counts[NOT_A_PET] >= 0.8 * len(non_pets)
    for kind in NON_PET_KINDS:  # no kind of non-pet slips through wholesale
        caught = [r.verdict == NOT_A_PET for r, k in zip(non_pets, trained["kinds"], strict=True) if k == kind]
        assert np.mean(caught) >= 0.5, kind

    right = [r.top_k[0].label == label for r, label in zip(pets, trained["labels"], strict=True)]
    assert pet_counts[NOT_A_PET] <= 0.1 * len(pets)
    assert np.mean(right) >= 0.85
    confident = [ok for ok, r in zip(right, pets, strict=True) if r.verdict == CONFIDENT]
    unsure = [ok for ok, r in zip(right, pets, strict=True) if r.verdict == UNSURE]
    assert len(confident) >= 0.8 * len(pets)
    assert np.mean(confident) >= 0.95
    assert np.mean(unsure) < np.mean(confident)  # unsure means something


@slow
def test_both_ood_scores_measured(trained):
    """The measurement behind ml.calibration.DEFAULT_OOD_SCORE (module docstring there)."""
    calibration = trained["predictor"].calibration
    (pet_features, pet_logits), (other_features, other_logits) = trained["pet_outputs"], trained["non_pet_outputs"]
    measured = {}
    for score in (ENERGY, MAHALANOBIS):
        chosen = cal.with_ood_score(calibration, score)
        pets = cal.ood_scores(chosen, pet_features, pet_logits)
        others = cal.ood_scores(chosen, other_features, other_logits)
        measured[score] = {
            "auroc": cal.auroc(pets, others),
            "caught": (others > chosen["ood_threshold"]).float().mean().item(),
            "pets_kept": (pets <= chosen["ood_threshold"]).float().mean().item(),
        }
    print("\n" + "\n".join(f"{s}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()) for s, m in measured.items()))
    for score, m in measured.items():
        assert m["auroc"] >= 0.95, (score, m)
        assert 0.9 <= m["pets_kept"] <= 0.99, (score, m)  # the 95 % promise holds on new pets
    default, other = measured[cal.DEFAULT_OOD_SCORE], measured[ENERGY if cal.DEFAULT_OOD_SCORE == MAHALANOBIS
                                                               else MAHALANOBIS]
    assert default["caught"] >= 0.8
    assert default["caught"] >= other["caught"] - 0.05


@slow
def test_training_stores_the_calibration_and_reports_verdicts(trained, fake_pets, tmp_path):
    result, predictor = trained["result"], trained["predictor"]
    metrics, calibration = result.metrics, predictor.calibration
    assert metrics["verdicts"] == _counts(trained["pets"])  # the test split, through the Predictor
    assert sum(metrics["verdicts"].values()) == metrics["num_images"]
    reported = metrics["calibration"]
    assert reported["ood_score"] == calibration["ood_score"] == cal.DEFAULT_OOD_SCORE
    assert reported["ood_threshold"] == calibration["ood_threshold"]
    assert reported["probability_threshold"] == calibration["probability_threshold"] >= 0.5
    assert sum(reported["validation"]["verdicts"].values()) == calibration["num_images"] == 37 * 13
    assert reported["accuracy_by_verdict"][CONFIDENT] > reported["accuracy_by_verdict"][UNSURE]
    # The evaluate command's core gives the same verdicts from the checkpoint alone.
    evaluated, _ = run_evaluation(result.checkpoint, fake_pets, tmp_path, split="test", workers=0, progress=False)
    assert evaluated["verdicts"] == metrics["verdicts"]
    assert evaluated["calibration"] == reported


def test_the_sites_verdict_names_are_the_cores():
    from registry.models import Verdict

    assert tuple(Verdict.values) == VERDICTS
