"""The poison rule for tries that raise: a forward pass that fails counts as a try, as a
killed worker child does, and the third ends the image FAILED with the error.

The same rule with real worker processes (SIGKILL, exceptions, the hard time limit, on
two workers) is in tests/faults/; here it is called directly, the fault injected by a mock.
"""
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from classifier import classification, tasks
from classifier.models import Classification, PetImage
from tests.helpers import store_photo, upload

Status = PetImage.Status
pytestmark = pytest.mark.django_db


def new_images(user, count: int) -> list[PetImage]:
    files = [upload() for _ in range(count)]
    return [store_photo(user, file) for file in files]


class PoisonError(RuntimeError):
    pass


def failing_for(poison_pk: int):
    """``_classify_batch`` whose forward pass raises for any batch holding ``poison_pk``."""
    real = classification._classify_batch

    def classify_batch(pets, token, version, predictor):
        if any(pet.pk == poison_pk for pet in pets):
            predictor = mock.Mock(preprocess=predictor.preprocess,
                                  classify_batch=mock.Mock(side_effect=PoisonError("the forward pass failed")))
        return real(pets, token, version, predictor)

    return classify_batch


def test_a_try_that_raises_counts_and_the_third_fails_the_image_alone(user, model_version):
    pets = new_images(user, 3)
    poison = pets[1]
    pks = [p.pk for p in pets]
    with (
        mock.patch.object(classification, "_classify_batch", failing_for(poison.pk)),
        mock.patch.object(tasks, "send", return_value=True) as send,
    ):
        tasks.classify_batch(pks)  # the task: one forward pass for all three, which raises
        assert {p.status for p in PetImage.objects.filter(pk__in=pks)} == {Status.PENDING}
        assert set(PetImage.objects.filter(pk__in=pks).values_list("attempts", flat=True)) == {1}
        assert send.call_args.args[0] == pks  # given back, and the task sends them again at once
        given_back = PetImage.objects.get(pk=poison.pk)
        assert given_back.error_code == PetImage.Error.TRY_FAILED
        assert "PoisonError" in given_back.error_message

        tasks.classify_batch(pks)  # tried before: one at a time; the others are done
        assert send.call_args.args[0] == [poison.pk]
        tasks.classify_batch([poison.pk])
        assert send.call_args.args[0] == []  # failed for good: nothing to send again

    poison.refresh_from_db()
    assert (poison.status, poison.attempts, poison.claim_token) == (Status.FAILED, 3, None)
    assert poison.error_code == PetImage.Error.TOO_MANY_TRIES
    assert poison.error_message == (
        "Classification did not finish after 3 tries. The last one failed with PoisonError: the forward pass failed.")
    assert list(PetImage.objects.filter(pk__in=pks).exclude(pk=poison.pk).values_list("status", flat=True)) == [
        Status.DONE, Status.DONE]
    assert Classification.objects.filter(image__in=pks).count() == 2


def test_a_try_restarts_the_claims_clock(user, model_version):
    """The claim's age counts from the forward pass, not from the claim: a new child's first
    task imports PyTorch and loads the model in between, which a busy machine makes slow."""
    (pet,) = new_images(user, 1)
    token, pets = classification.claim([pet.pk], model_version)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    PetImage.objects.filter(pk=pet.pk).update(claimed_at=an_hour_ago)
    predictor = mock.Mock(preprocess=mock.Mock(side_effect=ValueError("unreadable")))
    classification._classify_batch(pets, token, model_version, predictor)
    pet.refresh_from_db()
    assert pet.status == Status.FAILED
    assert pet.claimed_at > an_hour_ago + timedelta(minutes=59)
