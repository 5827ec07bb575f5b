"""The whole path through a real Celery worker process, on the configured broker and database."""
import pytest
from django.core.management import call_command
from django.urls import reverse

from classifier.models import PetImage
from ml.breeds import display_name
from ml.inference import Predictor
from tests.helpers import image_bytes, upload, wait_for

pytestmark = pytest.mark.slow


def _status(client, pk):
    return client.get(reverse("classifier:status", args=[pk])).json()


def test_upload_is_classified_and_shown(client, user, model_version, worker, checkpoint_file):
    response = client.post(reverse("login"), {"username": "alice", "password": "pw-alice-123"})
    assert response.status_code == 302

    content = image_bytes(size=(120, 90), color=(30, 160, 90))
    response = client.post(reverse("classifier:upload"), {"image": upload("my dog.jpg", content)})
    pet = PetImage.objects.get()
    assert response.status_code == 302
    assert response["Location"] == pet.get_absolute_url()
    assert (pet.owner, pet.original_name, pet.width, pet.height) == (user, "my dog.jpg", 120, 90)

    wait_for(lambda: _status(client, pet.pk)["finished"], what="the worker to classify the upload")
    data = _status(client, pet.pk)
    assert data["status"] == "done", worker.log()

    # The worker's answer is what the same checkpoint says in this process.
    expected = Predictor(checkpoint_file).classify(pet.image.open("rb"), k=5).top_k
    assert [row["breed"] for row in data["top_k"]] == [p.label for p in expected]
    assert data["predicted_breed"] == expected[0].label
    assert data["confidence"] == pytest.approx(expected[0].probability, abs=1e-4)
    assert data["model_version"] == model_version.name
    probabilities = [row["probability"] for row in data["top_k"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) <= 1.0001

    # A random-weight model is far from sure (about 3 %): the pages say so, with no percentage.
    pet.refresh_from_db()
    assert data["verdict"] == pet.verdict == "unsure"
    headline = f"Not sure. Closest breed: {display_name(expected[0].label)}"
    assert data["headline"] == headline
    gallery = client.get(reverse("classifier:gallery")).content.decode()
    assert headline in gallery
    assert f"{round(expected[0].probability * 100)}%" not in gallery
    detail = client.get(pet.get_absolute_url()).content.decode()
    assert headline in detail
    assert model_version.name in detail
    assert client.get(reverse("classifier:thumbnail", args=[pet.pk])).status_code == 200


def test_pending_without_model_then_activation_classifies_it(client, user, worker, checkpoint_file):
    client.force_login(user)
    client.post(reverse("classifier:upload"), {"image": upload()})
    pet = PetImage.objects.get()

    # The worker has looked at it and left it waiting, saying why.
    waiting = "will be classified as soon as the classifier is set up"
    wait_for(lambda: waiting in _status(client, pet.pk)["message"], what="the no-model explanation")
    assert _status(client, pet.pk)["status"] == "pending"
    assert waiting in client.get(pet.get_absolute_url()).content.decode()

    call_command("import_model", str(checkpoint_file), "--name", "first", "--activate")
    wait_for(lambda: _status(client, pet.pk)["finished"], what="classification after activation")
    data = _status(client, pet.pk)
    assert data["status"] == "done"
    assert data["model_version"] == "first"
    assert data["message"] == ""
