"""Claim, classify, save and re-send, called directly: the tasks' logic without a broker.

What a real worker process, a killed worker and a restarted broker do is tested in
tests/faults/; here each rule on its own, with the database as the only real part.
"""
import os
import subprocess
import sys
from datetime import timedelta
from unittest import mock

import psutil
import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.db import IntegrityError
from django.utils import timezone

from classifier import classification, tasks
from classifier.models import Classification, PetImage
from tests.helpers import store_photo, upload

Status = PetImage.Status


def new_image(user) -> PetImage:
    file = upload()
    return store_photo(user, file)


@pytest.fixture
def pet(user):
    return new_image(user)


def _refresh(pet: PetImage) -> PetImage:
    pet.refresh_from_db()
    return pet


def test_classify_is_idempotent(pet, model_version):
    classification.classify(pet.pk)
    pet = _refresh(pet)
    assert pet.status == Status.DONE
    assert pet.model_version == model_version
    assert (pet.attempts, pet.claim_token, pet.claimed_by) == (0, None, "")
    assert pet.claimed_at is not None
    first = (pet.predicted_breed, pet.classified_at)
    classification.classify(pet.pk)
    assert (_refresh(pet).predicted_breed, pet.classified_at) == first
    assert Classification.objects.filter(image=pet).count() == 1


def test_a_claim_is_exclusive(pet, model_version):
    token, claimed = classification.claim([pet.pk], model_version)
    assert [p.pk for p in claimed] == [pet.pk]
    assert _refresh(pet).status == Status.PROCESSING
    assert pet.claim_token == token
    assert pet.claimed_by == classification.worker_identity()
    # Held by a live process of another host: nobody else gets it, and a second delivery does nothing.
    PetImage.objects.filter(pk=pet.pk).update(claimed_by="elsewhere:1")
    assert classification.claim([pet.pk], model_version)[1] == []
    classification.classify(pet.pk)
    assert _refresh(pet).status == Status.PROCESSING
    assert not Classification.objects.exists()


def test_stale_claim_is_taken_over(pet, model_version, settings):
    classification.claim([pet.pk], model_version)
    PetImage.objects.filter(pk=pet.pk).update(
        claimed_by="elsewhere:1", claimed_at=timezone.now() - timedelta(seconds=settings.PETSITE_CLAIM_TIMEOUT + 1)
    )
    classification.classify(pet.pk)
    assert _refresh(pet).status == Status.DONE


def test_claim_of_a_dead_process_of_this_host_is_taken_over_at_once(pet, model_version):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = classification.worker_identity().rpartition(":")[0]
    classification.claim([pet.pk], model_version)
    PetImage.objects.filter(pk=pet.pk).update(claimed_by=f"{host}:{int(dead.stdout)}", claimed_at=timezone.now())
    classification.classify(pet.pk)
    assert _refresh(pet).status == Status.DONE


def test_claim_of_a_live_process_of_this_host_is_respected(pet, model_version):
    host = classification.worker_identity().rpartition(":")[0]
    classification.claim([pet.pk], model_version)
    PetImage.objects.filter(pk=pet.pk).update(claimed_by=f"{host}:{os.getppid()}")
    classification.classify(pet.pk)
    assert _refresh(pet).status == Status.PROCESSING


def test_result_lands_only_for_the_claim_that_made_it(pet, model_version):
    """A worker that lost its claim (it was too slow, another took over) writes nothing."""
    real_predict = None

    def steal_then_predict(self, tensors, k, batch_size):
        PetImage.objects.filter(pk=pet.pk).update(claim_token=None, claimed_by="other:1")  # taken over
        return real_predict(self, tensors, k, batch_size)

    from ml.inference import Predictor

    real_predict = Predictor.classify_batch
    with mock.patch.object(Predictor, "classify_batch", steal_then_predict):
        classification.classify(pet.pk)
    assert _refresh(pet).status == Status.PROCESSING
    assert pet.predicted_breed == ""
    assert not Classification.objects.exists()


def test_history_allows_one_row_per_image_and_version(pet, model_version):
    classification.classify(pet.pk)
    row = Classification.objects.get()
    with pytest.raises(IntegrityError):
        Classification.objects.create(
            image=pet, model_version=model_version, predicted_breed=row.predicted_breed, confidence=0.5
        )


def test_reclassifying_with_the_same_version_keeps_one_history_row(pet, model_version, other_version):
    classification.classify(pet.pk)
    classification.classify_images([pet.pk], other_version.pk)
    assert _refresh(pet).model_version == other_version
    classification.classify_images([pet.pk], model_version.pk)
    assert _refresh(pet).model_version == model_version
    rows = Classification.objects.filter(image=pet)
    names = sorted(rows.values_list("model_version__name", flat=True))
    assert names == sorted([model_version.name, other_version.name])


def test_unreadable_stored_image_fails_with_reason(pet, model_version):
    pet.image.storage.delete(pet.image.name)
    pet.image.storage.save(pet.image.name, ContentFile(b"garbage"))
    classification.classify(pet.pk)
    pet = _refresh(pet)
    assert pet.status == Status.FAILED
    assert pet.error_code == PetImage.Error.UNREADABLE
    assert "could not be read" in pet.error_message
    assert "could not be read" in pet.status_message()
    assert pet.claim_token is None


def test_no_model_keeps_it_pending_with_explanation(pet):
    classification.classify(pet.pk)
    pet = _refresh(pet)
    assert pet.status == Status.PENDING
    assert pet.error_code == PetImage.Error.NO_ACTIVE_MODEL
    assert "No active model" in pet.error_message
    assert pet.status_message() == "Your photo is saved and will be classified as soon as the classifier is set up."


def test_an_image_that_keeps_killing_workers_fails_alone(user, model_version):
    """A batch comes back after its worker died: one at a time, the least tried first;
    the image tried MAX_ATTEMPTS times fails with the reason, the others are classified."""
    pets = [new_image(user) for _ in range(3)]
    poison = pets[1]
    classification.claim([p.pk for p in pets], model_version)  # the claim of a worker that then died
    an_hour_ago = timezone.now() - timedelta(hours=1)
    PetImage.objects.filter(pk__in=[p.pk for p in pets]).update(claimed_by="gone:1", claimed_at=an_hour_ago)
    PetImage.objects.filter(pk=poison.pk).update(attempts=classification.MAX_ATTEMPTS)
    PetImage.objects.exclude(pk=poison.pk).update(attempts=1)

    with mock.patch.object(classification, "_classify_batch", wraps=classification._classify_batch) as batches:
        classification.classify_images([p.pk for p in pets], model_version.pk)
    assert [[p.pk for p in call.args[0]] for call in batches.call_args_list] == [[pets[0].pk], [pets[2].pk]]
    assert _refresh(poison).status == Status.FAILED
    assert poison.error_code == PetImage.Error.TOO_MANY_TRIES
    assert "did not finish after 3 tries" in poison.error_message
    assert "a person will look at it" in poison.status_message()
    assert [_refresh(p).status for p in (pets[0], pets[2])] == [Status.DONE, Status.DONE]


def test_fresh_batch_is_one_forward_pass(user, model_version):
    pets = [new_image(user) for _ in range(3)]
    with mock.patch.object(classification, "_classify_batch", wraps=classification._classify_batch) as batches:
        classification.classify_images([p.pk for p in pets])
    assert batches.call_count == 1
    assert {_refresh(p).status for p in pets} == {Status.DONE}


def test_model_that_cannot_be_loaded_gives_the_images_back(pet, model_version):
    type(model_version).objects.filter(pk=model_version.pk).update(file="models/gone/model.pt")
    classification.classify(pet.pk)
    pet = _refresh(pet)
    assert pet.status == Status.PENDING
    assert pet.error_code == PetImage.Error.MODEL_UNLOADABLE
    assert "cannot be loaded" in pet.error_message
    assert pet.claim_token is None


# --- re-sending ------------------------------------------------------------------------------


def _sent(delay_mock) -> list[int]:
    pks = []
    for call in delay_mock.call_args_list:
        pks.extend(call.args[0] if isinstance(call.args[0], list) else [call.args[0]])
    return sorted(pks)


@pytest.fixture
def sends():
    """Capture what would go to the broker (classify_image and classify_batch)."""
    with (
        mock.patch("classifier.tasks.classify_image.delay") as one,
        mock.patch("classifier.tasks.classify_batch.delay") as many,
    ):
        yield lambda: sorted(_sent(one) + _sent(many))


def test_requeue_goes_by_last_send_and_claim_never_by_upload_time(user, settings, sends):
    now = timezone.now()
    after = timedelta(seconds=settings.PETSITE_REQUEUE_AFTER)
    long_ago = now - timedelta(days=1)

    def make(**fields):
        pet = new_image(user)
        PetImage.objects.filter(pk=pet.pk).update(uploaded_at=long_ago, **fields)
        return pet.pk

    lost = make(enqueued_at=now - after - timedelta(seconds=1), enqueue_count=1)
    make(enqueued_at=now - timedelta(seconds=1), enqueue_count=1)  # uploaded long ago, just sent: leave it
    resent_twice = make(enqueued_at=now - 2 * after + timedelta(seconds=5), enqueue_count=2)  # backs off
    dead_claim = make(status=Status.PROCESSING, claimed_by="elsewhere:1",
                      claimed_at=now - timedelta(seconds=settings.PETSITE_CLAIM_TIMEOUT + 1))
    make(status=Status.PROCESSING, claimed_by="elsewhere:1", claimed_at=now)  # being classified
    make(status=Status.DONE, enqueued_at=long_ago)

    assert tasks.requeue_stale() == 2
    assert sends() == sorted([lost, dead_claim])
    assert _refresh(PetImage.objects.get(pk=lost)).enqueue_count == 2
    assert resent_twice not in sends()


def test_broker_down_keeps_upload_pending_and_requeue_sends_it_later(
    user, settings, django_capture_on_commit_callbacks
):
    with mock.patch("classifier.tasks.classify_image.delay", side_effect=ConnectionError("broker down")):
        with django_capture_on_commit_callbacks(execute=True):
            pet = new_image(user)
    pet = _refresh(pet)
    assert pet.status == Status.PENDING
    assert (pet.enqueued_at, pet.enqueue_count) == (None, 0)
    a_while_ago = timezone.now() - timedelta(seconds=settings.PETSITE_REQUEUE_AFTER + 1)
    PetImage.objects.filter(pk=pet.pk).update(uploaded_at=a_while_ago)
    with mock.patch("classifier.tasks.classify_image.delay") as delay:
        assert tasks.requeue_stale() == 1
    assert _sent(delay) == [pet.pk]


def test_waiting_longer_than_expected_is_said(pet, settings):
    assert _refresh(pet).status_message() == ""
    later = timezone.now() + timedelta(seconds=settings.PETSITE_REQUEUE_AFTER + 1)
    assert "taking longer than usual" in pet.status_message(now=later)


def test_activation_resends_what_waits_not_what_is_being_classified(
    user, model_version, sends, django_capture_on_commit_callbacks
):
    waiting = new_image(user)
    busy = new_image(user)
    PetImage.objects.filter(pk=busy.pk).update(status=Status.PROCESSING, claimed_at=timezone.now(), claimed_by="w:1")
    with django_capture_on_commit_callbacks(execute=True):
        tasks.on_model_activated(sender=None, version=model_version)
    assert sends() == [waiting.pk]


def test_requeue_pending_command(pet, sends, capsys, django_capture_on_commit_callbacks):
    call_command("requeue_pending")
    assert sends() == []
    assert "Re-sent 0 image(s)" in capsys.readouterr().out
    with django_capture_on_commit_callbacks(execute=True):
        call_command("requeue_pending", "--all")
    assert sends() == [pet.pk]
    assert "Re-sent 1 image(s)" in capsys.readouterr().out


def test_claim_of_a_zombie_process_is_taken_over(pet, model_version):
    """A worker child killed with its parent stays a zombie until reaped: it is dead."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = timezone.now() + timedelta(seconds=10)
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and timezone.now() < deadline:
        pass  # exited, not yet reaped: a zombie
    host = classification.worker_identity().rpartition(":")[0]
    classification.claim([pet.pk], model_version)
    PetImage.objects.filter(pk=pet.pk).update(claimed_by=f"{host}:{child.pid}", claimed_at=timezone.now())
    classification.classify(pet.pk)
    child.wait()
    assert _refresh(pet).status == Status.DONE


def test_a_worker_takes_what_waits_into_one_forward_pass(user, model_version, settings):
    settings.PETSITE_BATCH_SIZE = 4
    pets = [new_image(user) for _ in range(6)]
    with mock.patch.object(classification, "_classify_batch", wraps=classification._classify_batch) as batches:
        classification.classify(pets[-1].pk)  # the newest upload's task takes the 3 oldest along
    assert [sorted(p.pk for p in call.args[0]) for call in batches.call_args_list] == [
        sorted([pets[0].pk, pets[1].pk, pets[2].pk, pets[-1].pk])
    ]
    assert [_refresh(p).status for p in pets] == [Status.DONE] * 3 + [Status.PENDING] * 2 + [Status.DONE]
    with mock.patch.object(classification, "_classify_batch", wraps=classification._classify_batch) as batches:
        classification.classify(pets[0].pk)  # its own message later: nothing left to do for it, takes the rest
    assert [sorted(p.pk for p in call.args[0]) for call in batches.call_args_list] == [[pets[3].pk, pets[4].pk]]


def test_workers_run_the_backend_the_settings_name(pet, model_version, settings, tmp_path):
    from registry import services as registry_services

    settings.PETSITE_INFERENCE_BACKEND, settings.PETSITE_BACKEND_CACHE_DIR = "channels_last", tmp_path
    registry_services._cached_predictor.cache_clear()
    try:
        assert registry_services.predictor_for(model_version).backend.name == "channels_last"
        classification.classify(pet.pk)
        assert _refresh(pet).status == Status.DONE
    finally:
        registry_services._cached_predictor.cache_clear()  # later tests get the tests' default (eager)
