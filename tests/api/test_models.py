"""Model versions through the API: for callers with the permission the site's model pages need."""
import pytest
from django.urls import reverse

from registry.models import ModelVersion

MODELS = reverse("api:model-list")


@pytest.fixture
def versions(model_version, other_version):
    """The active random-v1 and the inactive random-v2, with a report's worth of metrics on v2."""
    other_version.metrics = {"accuracy": 0.5, "top5_accuracy": 0.9, "per_class": [{"breed": "pug", "f1": 0.4}]}
    other_version.training_args = {"epochs": 3}
    other_version.figures = {"loss": "models/random-v2/figures/loss.png"}
    other_version.save()
    return {"active": model_version, "other": other_version}


def detail(version: ModelVersion) -> str:
    return reverse("api:model-detail", args=[version.name])


@pytest.mark.parametrize("caller", ["reviewer", "superuser"])
def test_reviewers_see_every_version_and_which_is_active(request, versions, caller):
    client = request.getfixturevalue(caller)
    response = client.get(MODELS)
    assert response.status_code == 200
    listed = {row["name"]: row for row in response.json()["results"]}
    assert set(listed) == {"random-v1", "random-v2"}
    assert (listed["random-v1"]["is_active"], listed["random-v2"]["is_active"]) == (True, False)
    assert listed["random-v2"]["accuracy"] == 0.5
    assert listed["random-v2"]["url"] == f"http://testserver{detail(versions['other'])}"
    assert listed["random-v2"]["page_url"] == f"http://testserver{reverse('registry:model_detail', args=['random-v2'])}"


def test_a_version_in_full(reviewer, versions):
    response = reviewer.get(detail(versions["other"]))
    assert response.status_code == 200
    body = response.json()
    assert body["metrics"]["per_class"] == [{"breed": "pug", "f1": 0.4}]
    assert body["metrics"]["top5_accuracy"] == 0.9
    assert body["training_args"] == {"epochs": 3}
    assert len(body["classes"]) == 37
    assert body["image_size"] == 64
    figure = reverse("registry:model_figure", args=["random-v2", "loss"])
    assert body["figures"] == {"loss": f"http://testserver{figure}"}
    assert reviewer.get(reverse("api:model-detail", args=["no-such-model"])).status_code == 404


@pytest.mark.parametrize("caller", ["owner", "staff"])
def test_without_the_permission_the_answer_is_403(request, versions, caller):
    client = request.getfixturevalue(caller)
    for url in (MODELS, detail(versions["active"])):
        response = client.get(url)
        assert response.status_code == 403
        assert "reviewers" in response.json()["detail"]


def test_anonymous_callers_get_401(anonymous, versions):
    assert anonymous.get(MODELS).status_code == 401
    assert anonymous.get(detail(versions["active"])).status_code == 401


def test_models_are_read_only(superuser, versions):
    assert superuser.post(MODELS, {"name": "mine"}, format="json").status_code == 405
    assert superuser.delete(detail(versions["active"])).status_code == 405
    assert ModelVersion.objects.count() == 2
