"""Heatmaps: asked for on first view of a classified photo, made once per model version."""
from unittest import mock

import pytest
from django.urls import reverse
from PIL import Image

from classifier import classification, explanations
from classifier.models import PetImage

Status = PetImage.Status


@pytest.fixture
def done(make_image):
    """A photo classified for real by the active (random-weight) model."""
    pet = make_image()
    PetImage.objects.filter(pk=pet.pk).update(status=Status.PENDING, model_version=None)
    classification.classify(pet.pk)
    pet.refresh_from_db()
    assert pet.status == Status.DONE
    return pet


def test_asked_for_once_and_only_with_a_result(done, make_image, django_capture_on_commit_callbacks):
    waiting = make_image(status=Status.PENDING)
    with mock.patch("classifier.tasks.make_heatmap.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            assert not explanations.request_heatmap(waiting)
            assert explanations.request_heatmap(done)
            assert not explanations.request_heatmap(done)  # a second view soon after: not again
    assert [call.args for call in delay.call_args_list] == [(done.pk,)]


def test_made_once_per_model_version(done, model_version, other_version):
    explanations.make_heatmap(done.pk)
    done.refresh_from_db()
    assert done.heatmap and done.heatmap_version == model_version
    with done.heatmap.open("rb") as f, Image.open(f) as heatmap:
        assert heatmap.format == "JPEG" and heatmap.size == (2 * model_version.image_size,) * 2
    first = done.heatmap.name
    explanations.make_heatmap(done.pk)
    done.refresh_from_db()
    assert done.heatmap.name == first  # current: not made again

    classification.classify_images([done.pk], other_version.pk)
    done.refresh_from_db()
    assert explanations.needs_heatmap(done)
    explanations.make_heatmap(done.pk)
    done.refresh_from_db()
    assert done.heatmap_version == other_version and done.heatmap.name != first
    assert not done.heatmap.storage.exists(first)  # the old one left storage


def test_the_photo_page_asks_for_it_and_offers_it_when_ready(client, user, done, django_capture_on_commit_callbacks):
    client.force_login(user)
    page = reverse("classifier:detail", args=[done.pk])
    with mock.patch("classifier.tasks.make_heatmap.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            html = client.get(page).content.decode()
    assert [call.args for call in delay.call_args_list] == [(done.pk,)]
    assert "data-heatmap-url" not in html and client.get(reverse("classifier:status", args=[done.pk])).json()[
        "heatmap_url"] is None

    explanations.make_heatmap(done.pk)  # what the worker does
    url = reverse("classifier:heatmap", args=[done.pk])
    assert f'data-heatmap-url="{url}"' in client.get(page).content.decode()
    assert client.get(reverse("classifier:status", args=[done.pk])).json()["heatmap_url"] == url
    response = client.get(url)
    assert response.status_code == 200 and b"".join(response.streaming_content).startswith(b"\xff\xd8")
