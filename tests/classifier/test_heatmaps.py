"""Heatmaps: asked for with a POST once a photo has a result (never by a read), made once
per model version."""
from http import HTTPStatus
from unittest import mock

import pytest
from django.urls import reverse
from kombu.exceptions import OperationalError as BrokerError
from PIL import Image

from classifier import classification, explanations, tasks
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


def test_asked_for_once_and_only_with_a_result(done, make_image):
    waiting = make_image(status=Status.PENDING)
    with mock.patch("classifier.tasks.make_heatmap.delay") as delay:
        assert tasks.ask_for_heatmap(waiting) == HTTPStatus.CONFLICT  # nothing to explain yet
        assert tasks.ask_for_heatmap(done) == HTTPStatus.ACCEPTED
        assert tasks.ask_for_heatmap(done) == HTTPStatus.ACCEPTED  # asked again soon after: not sent again
    assert [call.args for call in delay.call_args_list] == [(done.pk,)]
    explanations.make_heatmap(done.pk)
    done.refresh_from_db()
    assert tasks.ask_for_heatmap(done) == HTTPStatus.OK


def test_a_broker_away_sends_nothing_and_the_next_request_asks_again(done):
    with mock.patch("classifier.tasks.make_heatmap.delay", side_effect=BrokerError("broker away")) as delay:
        assert tasks.ask_for_heatmap(done) == HTTPStatus.ACCEPTED
    with mock.patch("classifier.tasks.make_heatmap.delay") as delay:
        assert tasks.ask_for_heatmap(done) == HTTPStatus.ACCEPTED
    assert [call.args for call in delay.call_args_list] == [(done.pk,)]


def test_made_once_per_model_version(done, model_version, other_version):
    explanations.make_heatmap(done.pk)
    done.refresh_from_db()
    assert done.heatmap
    assert done.heatmap_version == model_version
    with done.heatmap.open("rb") as f, Image.open(f) as heatmap:
        assert heatmap.format == "JPEG"
        assert heatmap.size == (2 * model_version.image_size,) * 2
    first = done.heatmap.name
    explanations.make_heatmap(done.pk)
    done.refresh_from_db()
    assert done.heatmap.name == first  # current: not made again

    classification.classify_images([done.pk], other_version.pk)
    done.refresh_from_db()
    assert explanations.needs_heatmap(done)
    explanations.make_heatmap(done.pk)
    done.refresh_from_db()
    assert done.heatmap_version == other_version
    assert done.heatmap.name != first
    assert not done.heatmap.storage.exists(first)  # the old one left storage


def test_reads_never_ask_for_it(client, user, done, django_capture_on_commit_callbacks):
    """The photo page, its status JSON and the API's image are reads: they send nothing."""
    client.force_login(user)
    with mock.patch("classifier.tasks.make_heatmap.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            for name in ("classifier:detail", "classifier:status", "api:image-detail"):
                assert client.get(reverse(name, args=[done.pk])).status_code == 200
            assert client.get(reverse("classifier:statuses"), {"ids": done.pk}).status_code == 200
    assert delay.call_count == 0
    assert callbacks == []


def test_the_photo_page_asks_with_a_post_and_offers_it_when_ready(client, user, done):
    client.force_login(user)
    page = reverse("classifier:detail", args=[done.pk])
    explain = reverse("classifier:explain", args=[done.pk])
    html = client.get(page).content.decode()
    assert f'data-explain-url="{explain}"' in html
    assert "data-heatmap-url" not in html
    assert client.get(explain).status_code == 405  # asking is a POST
    with mock.patch("classifier.tasks.make_heatmap.delay") as delay:
        response = client.post(explain)
    assert response.status_code == 202
    assert response.json()["heatmap_url"] is None
    assert [call.args for call in delay.call_args_list] == [(done.pk,)]

    explanations.make_heatmap(done.pk)  # what the worker does
    url = reverse("classifier:heatmap", args=[done.pk])
    assert f'data-heatmap-url="{url}"' in client.get(page).content.decode()
    assert client.get(reverse("classifier:status", args=[done.pk])).json()["heatmap_url"] == url
    assert client.post(explain).json()["heatmap_url"] == url  # 200: there already
    response = client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"\xff\xd8")


def test_the_api_asks_with_a_post(client, user, done, make_image):
    client.force_login(user)
    explain = reverse("api:image-explain", args=[done.pk])
    with mock.patch("classifier.tasks.make_heatmap.delay") as delay:
        assert client.post(explain).status_code == 202
        waiting = make_image(status=Status.PENDING)
        refused = client.post(reverse("api:image-explain", args=[waiting.pk]))
    assert refused.status_code == 409
    assert "no result to explain" in refused.json()["detail"]
    assert [call.args for call in delay.call_args_list] == [(done.pk,)]
    explanations.make_heatmap(done.pk)
    answer = client.post(explain)
    assert answer.status_code == 200
    assert answer.json()["files"]["heatmap"].endswith(
        reverse("api:image-heatmap", args=[done.pk]))
