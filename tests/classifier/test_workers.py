"""Worker heartbeats (classifier/workers.py): written, read as live or gone, pruned, and
shown on /readyz and the staff pages. A real worker's heartbeat, its death and a database
outage under it are in tests/faults/."""
from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from classifier import workers
from classifier.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db


def beat(node: str, queues: list[str], seconds_ago: float = 0, processes: int = 1) -> WorkerHeartbeat:
    """A heartbeat as a worker writes it, ``seconds_ago``."""
    started = timezone.now() - timedelta(hours=1)
    workers.record_heartbeat(node, queues, processes, started)
    WorkerHeartbeat.objects.filter(node=node).update(last_seen=timezone.now() - timedelta(seconds=seconds_ago))
    return WorkerHeartbeat.objects.get(node=node)


def test_a_worker_is_live_until_not_seen_for_the_gone_after_setting(settings):
    settings.PETSITE_WORKER_GONE_AFTER = 60
    queue = workers.classification_queue()
    beat("celery@a", [queue], seconds_ago=5)
    beat("celery@b", [queue], seconds_ago=61)
    beat("training@a", [workers.TRAINING_QUEUE], seconds_ago=1)
    assert [w.node for w in workers.live_workers(queue)] == ["celery@a"]
    assert {w.node for w in workers.live_workers()} == {"celery@a", "training@a"}
    WorkerHeartbeat.objects.filter(node="celery@a").update(last_seen=timezone.now() - timedelta(seconds=61))
    report = workers.queue_workers(queue)
    assert report.missing
    assert report.live == []
    assert report.last_seen == WorkerHeartbeat.objects.get(node="celery@a").last_seen  # the latest of the gone
    assert workers.queue_workers("nobody-serves-this").as_json() == {
        "queue": "nobody-serves-this", "live": 0, "last_seen": None}


def test_a_heartbeat_updates_one_row_per_node_and_prunes_rows_gone_for_a_day():
    beat("celery@old", ["petsite"], seconds_ago=workers.PRUNE_AFTER.total_seconds() + 1)
    first = beat("celery@a", ["petsite"], seconds_ago=30, processes=0)
    again = beat("celery@a", ["petsite", "extra"], processes=2)
    assert first.pk == again.pk
    assert (again.processes, again.queues, again.pid) == (2, ["extra", "petsite"], os.getpid())
    assert list(WorkerHeartbeat.objects.values_list("node", flat=True)) == ["celery@a"]


def test_a_worker_that_stops_takes_its_row_away():
    beat("celery@a", ["petsite"])
    WorkerHeartbeat.objects.create(node="celery@b", host="h", pid=1, queues=["petsite"], started_at=timezone.now(),
                                   last_seen=timezone.now())
    workers.forget("celery@a")
    workers.forget("celery@b")  # another process's row: not ours to remove
    assert list(WorkerHeartbeat.objects.values_list("node", flat=True)) == ["celery@b"]


def test_readiness_lists_the_workers_without_failing_on_their_absence(client, settings):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["workers"] == {
        "classification": {"queue": settings.CELERY_TASK_DEFAULT_QUEUE, "live": 0, "last_seen": None},
        "training": {"queue": "training", "live": 0, "last_seen": None},
    }
    seen = beat("celery@a", [settings.CELERY_TASK_DEFAULT_QUEUE])
    body = client.get("/readyz").json()
    assert body["status"] == "ok"
    assert body["workers"]["classification"] == {
        "queue": settings.CELERY_TASK_DEFAULT_QUEUE, "live": 1, "last_seen": seen.last_seen.isoformat()}


@pytest.fixture
def reviewer_client(client, django_user_model):
    from django.contrib.auth.models import Group

    reviewer = django_user_model.objects.create_user("ray", password="pw", is_staff=True)
    reviewer.groups.add(Group.objects.get(name="Reviewers"))
    client.force_login(reviewer)
    return client


def test_the_model_pages_warn_when_no_classification_worker_was_seen(reviewer_client, model_version, settings):
    pages = [reverse("registry:model_list"), reverse("registry:model_detail", args=[model_version.name])]
    beat("celery@gone", [settings.CELERY_TASK_DEFAULT_QUEUE], seconds_ago=settings.PETSITE_WORKER_GONE_AFTER + 1)
    beat("training@here", [workers.TRAINING_QUEUE])  # a training worker does not classify
    for page in pages:
        html = reviewer_client.get(page).content.decode()
        assert 'id="no-classification-worker"' in html, page
        assert "No classification worker has been seen in the last 60 seconds" in html
        assert "Photos are still saved, and wait" in html
    beat("celery@here", [settings.CELERY_TASK_DEFAULT_QUEUE], processes=1)
    for page in pages:
        html = reviewer_client.get(page).content.decode()
        assert 'id="no-classification-worker"' not in html, page
        assert 'id="classification-workers"' in html
        assert "celery@here (1 process ready" in html
        assert "celery@gone" not in html


def test_the_training_page_warns_when_no_training_worker_was_seen(client, django_user_model, settings):
    client.force_login(django_user_model.objects.create_superuser("boss", password="pw"))
    beat("celery@here", [settings.CELERY_TASK_DEFAULT_QUEUE])
    html = client.get(reverse("training:run_list")).content.decode()
    assert 'id="no-training-worker"' in html
    assert "Training runs wait in the queue" in html
    beat("training@here", [workers.TRAINING_QUEUE])
    html = client.get(reverse("training:run_list")).content.decode()
    assert 'id="no-training-worker"' not in html
    assert "training@here" in html

