"""The staff model pages speak to staff in words and buttons, never in shell commands: a
"Make active" button for those who may change model versions (the admin's rule), and an
imported model's page says why it has no figures."""
import re

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from classifier.models import PetImage
from registry.models import ModelVersion
from tests.helpers import store_photo, upload

MODELS = reverse("registry:model_list")
COMMAND = re.compile(r"manage\.py|bin/manage|activate_model|import_model|--[a-z]")


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", password="pw")


def imported(name: str = "imported-v1") -> ModelVersion:
    """A version as import_model registers a bare checkpoint: no metrics, history or figures."""
    return ModelVersion.objects.create(name=name, file=ContentFile(b"not read", name=f"{name}.pt"))


def text(response) -> str:
    assert response.status_code == 200
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def activate_forms(page: str) -> list[str]:
    return re.findall(r'action="/models/([^/"]+)/activate"', page)


@pytest.mark.parametrize("active", [True, False], ids=["a-model-is-active", "none-active"])
def test_the_models_page_shows_no_command(client, root, reviewer, model_version, active):
    imported()
    ModelVersion.objects.filter(pk=model_version.pk).update(is_active=active)
    for who in (root, reviewer):
        client.force_login(who)
        page = text(client.get(MODELS))
        assert not COMMAND.search(page), (who.username, COMMAND.search(page))
        assert ("No model is active" in page) is not active


def test_who_may_change_versions_gets_make_active_buttons(client, root, reviewer, model_version):
    other = imported()
    client.force_login(root)
    page = client.get(MODELS).content.decode()
    assert activate_forms(page) == [other.name]  # the active one has none
    assert "“Make active” switches to another version" in text(client.get(MODELS))
    detail = client.get(reverse("registry:model_detail", args=[other.name])).content.decode()
    assert activate_forms(detail) == [other.name]
    detail = client.get(reverse("registry:model_detail", args=[model_version.name])).content.decode()
    assert activate_forms(detail) == []

    client.force_login(reviewer)  # may view model versions, not change them: words, no button
    page = client.get(MODELS)
    assert activate_forms(page.content.decode()) == []
    assert "needs the permission to change model versions: ask an administrator" in text(page)


def test_no_model_active_points_to_the_training_page_and_the_buttons(client, root, reviewer, model_version):
    ModelVersion.objects.update(is_active=False)
    client.force_login(root)
    response = client.get(MODELS)
    assert f'href="{reverse("training:run_list")}"' in response.content.decode()
    assert "Make a version above the active one with its “Make active” button." in text(response)
    client.force_login(reviewer)  # no training permission: words, no link to a page they cannot open
    response = client.get(MODELS)
    assert reverse("training:run_list") not in response.content.decode()
    assert "Someone allowed to train models can train one on the Training page." in text(response)


def test_make_active_switches_and_sends_the_waiting_photos(
    client, root, user, model_version, django_capture_on_commit_callbacks
):
    other = imported()
    photo = upload()
    waiting = store_photo(user, photo)
    PetImage.objects.filter(pk=waiting.pk).update(enqueue_count=0, enqueued_at=None)
    client.force_login(root)
    assert client.get(reverse("registry:model_activate", args=[other.name])).status_code == 405  # a button, not a link
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("registry:model_activate", args=[other.name]), follow=True)
    assert response.redirect_chain == [(MODELS, 302)]
    assert f"{other.name} is now the active model" in text(response)
    assert list(ModelVersion.objects.filter(is_active=True)) == [other]
    waiting.refresh_from_db()
    assert waiting.enqueue_count == 1
    assert waiting.enqueued_at is not None
    again = client.post(reverse("registry:model_activate", args=[other.name]), follow=True)
    assert f"{other.name} is already the active model." in text(again)


def test_make_active_needs_the_change_permission(client, reviewer, model_version):
    other = imported()
    client.force_login(reviewer)
    assert client.post(reverse("registry:model_activate", args=[other.name])).status_code == 403
    assert ModelVersion.objects.get(is_active=True) == model_version


def test_an_imported_models_page_says_why_it_has_no_figures(client, root, reviewer):
    version = imported()
    client.force_login(root)
    response = client.get(reverse("registry:model_detail", args=[version.name]))
    page = text(response)
    assert "This version has no figures: it was imported from a checkpoint file, not trained here." in page
    assert "the site cannot start an evaluation" in page
    assert not COMMAND.search(page)
    assert f'href="{reverse("training:run_list")}"' in response.content.decode()
    client.force_login(reviewer)
    response = client.get(reverse("registry:model_detail", args=[version.name]))
    assert "This version has no figures" in text(response)
    assert reverse("training:run_list") not in (
        response.content.decode())


def test_a_trained_models_page_shows_its_figures_without_the_note(client, root, model_version):
    model_version.figures = {"loss": "models/x/figures/loss.png"}
    model_version.history = {"epochs": [{"epoch": 1, "stage": "frozen"}]}
    model_version.save()
    client.force_login(root)
    page = client.get(reverse("registry:model_detail", args=[model_version.name])).content.decode()
    assert 'id="no-figures"' not in page
    assert reverse("registry:model_figure", args=[model_version.name, "loss"]) in page


def test_the_epochs_table_names_each_stage_in_words(client, root, model_version):
    """The same words as the training run's page (ml.progress), not the history's codes."""
    model_version.history = {"epochs": [{"epoch": 1, "stage": "frozen"}, {"epoch": 2, "stage": "unfrozen"}]}
    model_version.save()
    client.force_login(root)
    page = client.get(reverse("registry:model_detail", args=[model_version.name])).content.decode()
    assert "<td>last layer</td>" in page
    assert "<td>every layer</td>" in page
    assert "<td>frozen</td>" not in page
    assert "<td>unfrozen</td>" not in page
