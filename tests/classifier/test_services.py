"""classify() and requeue_stale() called directly: the task's logic without a broker."""
from datetime import timedelta
from unittest import mock

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from classifier import classification, uploads
from classifier.models import PetImage
from classifier.validators import inspect_image
from tests.helpers import upload

Status = PetImage.Status


@pytest.fixture
def pet(user):
    file = upload()
    return uploads.create_pet_image(user, file, inspect_image(file))


def test_classify_is_idempotent(pet, model_version):
    classification.classify(pet.pk)
    pet.refresh_from_db()
    assert pet.status == Status.DONE and pet.model_version == model_version and pet.attempts == 1
    first = (pet.predicted_breed, pet.classified_at)
    classification.classify(pet.pk)
    pet.refresh_from_db()
    assert (pet.predicted_breed, pet.classified_at) == first and pet.attempts == 1


def test_unreadable_stored_image_fails_with_reason(pet, model_version):
    pet.image.storage.delete(pet.image.name)
    pet.image.storage.save(pet.image.name, ContentFile(b"garbage"))
    classification.classify(pet.pk)
    pet.refresh_from_db()
    assert pet.status == Status.FAILED and "could not be read" in pet.error_message


def test_no_model_keeps_it_pending_with_explanation(pet):
    classification.classify(pet.pk)
    pet.refresh_from_db()
    assert pet.status == Status.PENDING and "No active model" in pet.error_message


def test_image_that_keeps_killing_workers_is_given_up(pet, model_version):
    PetImage.objects.filter(pk=pet.pk).update(status=Status.PROCESSING, attempts=classification.MAX_ATTEMPTS)
    classification.classify(pet.pk)
    pet.refresh_from_db()
    assert pet.status == Status.FAILED and "did not finish" in pet.error_message


def test_requeue_stale_sends_only_old_unfinished_images(user, django_capture_on_commit_callbacks):
    def make(status, minutes_ago):
        file = upload()
        pet = uploads.create_pet_image(user, file, inspect_image(file))
        PetImage.objects.filter(pk=pet.pk).update(
            status=status, uploaded_at=timezone.now() - timedelta(minutes=minutes_ago)
        )
        return pet.pk

    old_pending, old_processing = make(Status.PENDING, 30), make(Status.PROCESSING, 30)
    make(Status.PENDING, 1)
    make(Status.DONE, 30)
    with mock.patch("classifier.tasks.classify_image.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            assert classification.requeue_stale(timedelta(minutes=5)) == 2
    assert sorted(call.args[0] for call in delay.call_args_list) == sorted([old_pending, old_processing])


def test_broker_down_keeps_upload_pending(user, django_capture_on_commit_callbacks):
    file = upload()
    with mock.patch("classifier.tasks.classify_image.delay", side_effect=ConnectionError("broker down")):
        with django_capture_on_commit_callbacks(execute=True):
            pet = uploads.create_pet_image(user, file, inspect_image(file))
    assert PetImage.objects.get(pk=pet.pk).status == Status.PENDING


def test_requeue_pending_command(user, django_capture_on_commit_callbacks, capsys):
    from django.core.management import call_command

    file = upload()
    pet = uploads.create_pet_image(user, file, inspect_image(file))
    with mock.patch("classifier.tasks.classify_image.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            call_command("requeue_pending", "--older-than", "0")
    assert [call.args[0] for call in delay.call_args_list] == [pet.pk]
    assert "Re-sent 1 image(s)" in capsys.readouterr().out
