"""The admin's list of photos stays fast as photos pile up: the same queries for 10 rows as
for 50 (no query per row), none that loads a model version's metrics or history (large
JSON documents: parsing them for every row made the list take seconds), and thumbnails
that the browser loads only when they come into view. bench/admin_list.py measures the
time with 10,000 photos on PostgreSQL.
"""
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from classifier.models import PetImage

CHANGELIST = reverse("admin:classifier_petimage_changelist")


@pytest.fixture
def add_photos(make_image, django_user_model, model_version, other_version):
    """add_photos(n): n more classified photos, by several owners and both model versions,
    some answered and reviewed (rows copied in bulk from one real upload)."""
    template = make_image("pug", 0.4, verdict="unsure")
    owners = [django_user_model.objects.create_user(f"owner{i}", password="pw") for i in range(3)]
    made = [0]

    def add(count: int) -> None:
        rows = []
        for _ in range(count):
            n = made[0] = made[0] + 1
            row = PetImage.objects.get(pk=template.pk)
            row.pk = None
            row.sha256 = f"{n:064x}"
            row.owner = owners[n % len(owners)]
            row.model_version = (model_version, other_version)[n % 2]
            row.is_correct = (None, False, True)[n % 3]
            row.true_breed = ("", "boxer", "pug")[n % 3]
            row.top_k = [{"breed": "pug", "probability": 0.4}, {"breed": "boxer", "probability": 0.3}]
            rows.append(row)
        PetImage.objects.bulk_create(rows)

    return add


def changelist_queries(client, **params) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(CHANGELIST, params)
    assert response.status_code == 200
    return [query["sql"] for query in queries.captured_queries]


@pytest.mark.parametrize("params", [{}, {"review": "needed"}, {"feedback": "wrong"}, {"o": "4"}, {"q": "owner1"}],
                         ids=["queue", "needs-review", "owner-said-wrong", "by-confidence", "search"])
def test_the_list_makes_the_same_queries_for_10_rows_as_for_50(client, reviewer, add_photos, params):
    client.force_login(reviewer)
    add_photos(10)
    few = changelist_queries(client, **params)
    add_photos(40)
    many = changelist_queries(client, **params)
    assert client.get(CHANGELIST, params).context["cl"].result_count > 10
    assert len(many) == len(few), "\n".join(many)


def test_no_query_of_the_list_reads_the_model_versions_reports(client, reviewer, add_photos, model_version):
    client.force_login(reviewer)
    add_photos(20)
    for sql in changelist_queries(client) + changelist_queries(client, model_version__id__exact=model_version.pk):
        assert not re.search(r'"registry_modelversion"\."(metrics|history|figures|training_args)"', sql), sql
        assert not re.search(r'"classifier_petimage"\."(top_k|verdict_scores)"', sql), sql


def test_the_model_version_filter_lists_versions_by_name(client, reviewer, add_photos, model_version, other_version):
    client.force_login(reviewer)
    add_photos(6)
    response = client.get(CHANGELIST)
    page = response.content.decode()
    assert f"?model_version__id__exact={model_version.pk}" in page
    assert model_version.name in page
    chosen = client.get(CHANGELIST, {"model_version__id__exact": other_version.pk}).context["cl"].result_list
    assert chosen
    assert {pet.model_version_id for pet in chosen} == {other_version.pk}


def test_thumbnails_load_lazily(client, reviewer, add_photos):
    client.force_login(reviewer)
    add_photos(3)
    page = client.get(CHANGELIST).content.decode()
    previews = re.findall(r'<img class="petsite-preview"[^>]*>', page)
    assert len(previews) == 4
    assert all('loading="lazy"' in img for img in previews)


def test_rows_select_for_actions_as_django_does(client, reviewer, add_photos):
    """The checkbox written by hand is Django's: the actions still act on the chosen rows."""
    client.force_login(reviewer)
    add_photos(2)
    page = client.get(CHANGELIST).content.decode()
    boxes = re.findall(r'<input type="checkbox" name="_selected_action" value="(\d+)" class="action-select" '
                       r'aria-label="Select this object for an action - [^"]+">', page)
    assert len(boxes) == 3
    client.post(CHANGELIST, {"action": "confirm_prediction", "_selected_action": boxes[:2]})
    assert set(PetImage.objects.exclude(reviewed_label="").values_list("pk", flat=True)) == {int(b) for b in boxes[:2]}


def test_a_photos_page_names_its_history_in_one_query(client, reviewer, make_image, model_version):
    """The change page lists the photo's predictions, each by its model version: joined, not
    one query (and one report) per prediction."""
    from django.core.files.base import ContentFile

    from classifier.models import Classification
    from registry.models import ModelVersion

    pet = make_image("pug", 0.4)
    versions = [ModelVersion.objects.create(name=f"v{n}", file=ContentFile(b"-", name=f"v{n}.pt"),
                                            metrics={"accuracy": 0.5}, history={"epochs": []}) for n in range(4)]
    url = reverse("admin:classifier_petimage_change", args=[pet.pk])
    client.force_login(reviewer)

    def queries() -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return [query["sql"] for query in captured.captured_queries]

    Classification.objects.create(image=pet, model_version=model_version, predicted_breed="pug", confidence=0.4)
    queries()  # the session's first request
    one = queries()
    for version in versions:
        Classification.objects.create(image=pet, model_version=version, predicted_breed="boxer", confidence=0.3)
    five = queries()
    assert len(five) == len(one), "\n".join(q[:200] for q in five)
    version_reports = r'"registry_modelversion"\."(metrics|history)"'
    assert not any(re.search(version_reports, sql) and "classifier_classification" in sql for sql in five)
