"""Honest answers: the worker stores each prediction's verdict and its scores; every page
says no more than the verdict allows."""
import pytest
from django.urls import reverse

from classifier import classification
from classifier.models import Classification, PetImage, Verdict
from ml.breeds import display_name

Status = PetImage.Status


def test_the_worker_stores_the_verdict_and_its_scores(make_image, model_version):
    """The test model has random weights and no calibration: about 3 % for its best breed,
    so the probability threshold alone says "unsure"."""
    pet = make_image()
    PetImage.objects.filter(pk=pet.pk).update(status=Status.PENDING, model_version=None, verdict="")
    classification.classify(pet.pk)
    pet.refresh_from_db()
    assert pet.verdict == Verdict.UNSURE
    scores = pet.verdict_scores
    assert scores["top_probability"] == pytest.approx(pet.confidence, abs=1e-5)
    assert scores["top_probability"] < scores["probability_threshold"]
    assert scores["ood_score"] is None  # a checkpoint without calibration never says "not a cat or dog"
    history = Classification.objects.get(image=pet)
    assert (history.verdict, history.verdict_scores) == (pet.verdict, pet.verdict_scores)
    assert pet.headline() == f"Not sure. Closest breed: {display_name(pet.top_k[0]['breed'])}"
    assert PetImage.objects.needing_review().filter(pk=pet.pk).exists()


@pytest.mark.parametrize(("verdict", "headline", "percent_shown", "note"), [
    (Verdict.CONFIDENT, "Great Pyrenees", True, None),
    (Verdict.UNSURE, "Not sure. Closest breed: Great Pyrenees", False, "The classifier is not sure"),
    (Verdict.NOT_A_PET, "Does not look like a cat or dog", False, "does not look like the cat and dog photos"),
])
def test_every_page_says_what_the_verdict_allows(client, user, make_image, verdict, headline, percent_shown, note):
    top_k = [{"breed": "great_pyrenees", "probability": 0.91}, {"breed": "pug", "probability": 0.05}]
    pet = make_image("great_pyrenees", confidence=0.91, top_k=top_k, verdict=verdict)
    client.force_login(user)
    status = client.get(reverse("classifier:status", args=[pet.pk])).json()
    assert (status["headline"], status["verdict"], status["confident"]) == (headline, verdict, percent_shown)
    gallery = client.get(reverse("classifier:gallery")).content.decode()
    assert headline in gallery
    assert ("91%" in gallery) == percent_shown
    detail = client.get(pet.get_absolute_url()).content.decode()
    assert f">{headline}</h1>" in detail
    if note:
        assert note in detail


def test_the_model_page_shows_how_many_validation_images_get_each_verdict(admin_client, model_version):
    model_version.metrics = {
        "split": "test", "accuracy": 0.9, "verdicts": {"confident": 547, "unsure": 20, "not_a_pet": 25},
        "calibration": {
            "probability_threshold": 0.5, "ood_score": "mahalanobis", "ood_threshold": 1.234, "keep": 0.95,
            "num_images": 592, "accuracy_by_verdict": {"confident": 0.97, "unsure": 0.4, "not_a_pet": None},
        },
    }
    model_version.save()
    page = admin_client.get(reverse("registry:model_detail", args=[model_version.name])).content.decode()
    for row in ["<td>Confident</td><td>547</td><td>0.970</td>", "<td>Not sure</td><td>20</td><td>0.400</td>",
                "<td>Not a cat or dog</td><td>25</td><td>–</td>"]:
        assert row in page
    assert "mahalanobis score of 1.234" in page
    assert "592 validation images" in page
