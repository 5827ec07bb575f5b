"""The current prediction, on PetImage and in the Classification history, never disagree:
``classification.record_prediction`` is their one writer."""
from unittest import mock

import pytest
from django.core.files.base import ContentFile

from classifier import classification, review
from classifier.models import Classification, PetImage
from tests.helpers import store_photo

pytestmark = pytest.mark.django_db
FIELDS = ("model_version_id", *classification.PREDICTION_FIELDS)


def assert_in_step(pet: PetImage) -> None:
    """The image's prediction is its latest history row's; no row without a prediction."""
    pet.refresh_from_db()
    latest = Classification.objects.filter(image=pet).order_by("-created_at", "-pk").first()
    if latest is None:
        assert (pet.predicted_breed, pet.model_version_id) == ("", None)
        return
    assert {field: getattr(pet, field) for field in FIELDS} == {field: getattr(latest, field) for field in FIELDS}


def test_the_image_and_its_history_never_disagree(user, model_version, other_version):
    pet = store_photo(user)
    assert_in_step(pet)
    classification.classify(pet.pk)
    assert_in_step(pet)
    assert pet.status == PetImage.Status.DONE
    classification.classify_images([pet.pk], other_version.pk)  # reclassified by another model
    assert_in_step(pet)
    assert pet.model_version == other_version
    classification.classify_images([pet.pk], model_version.pk)  # and by the first again: its row is the latest
    assert_in_step(pet)
    assert pet.model_version == model_version
    assert Classification.objects.filter(image=pet).count() == 2

    review.record_feedback(pet, "beagle")  # the owner's answer changes no prediction
    assert_in_step(pet)

    with mock.patch.object(classification, "_classify_batch", side_effect=RuntimeError("boom")):
        assert classification.classify_images([pet.pk], other_version.pk) == [pet.pk]  # a try that raised
    assert_in_step(pet)
    pet.image.storage.delete(pet.image.name)
    pet.image.storage.save(pet.image.name, ContentFile(b"garbage"))
    classification.classify_images([pet.pk], other_version.pk)  # the stored file became unreadable
    assert_in_step(pet)
    assert pet.status == PetImage.Status.FAILED
    assert pet.error_code == PetImage.Error.UNREADABLE


def test_a_lost_claim_writes_neither(user, model_version):
    pet = store_photo(user)
    token, _ = classification.claim([pet.pk], model_version)
    PetImage.objects.filter(pk=pet.pk).update(claim_token=None)  # taken over by another worker meanwhile
    prediction = {"predicted_breed": "pug", "confidence": 0.9, "top_k": [], "verdict": "", "verdict_scores": {}}
    assert not classification.record_prediction(pet, token, model_version, prediction, pet.uploaded_at)
    assert_in_step(pet)
    assert not Classification.objects.filter(image=pet).exists()
