"""Faults with real processes: workers killed mid-batch, a poison image, two workers on
the same images, a broker restart and a database outage.

Every test starts its own Celery worker processes on a queue of its own (the fault
app of ``faulty_app.py`` slows forward passes or dies on a poison image), on the test
database and, except where a test brings its own Redis, on the configured broker.
Each asserts that every image ends DONE or FAILED with a reason, with exactly one
history row per image and model version, within a bounded time, and records the
measured recovery time as a junit property (docs/reliability.md lists the figures).
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from classifier import classification, tasks, uploads
from classifier.models import Classification, PetImage
from classifier.validators import inspect_image
from petsite.celery import app
from tests.conftest import WorkerProcess, worker_env
from tests.helpers import upload, wait_for

from .services import RedisServer, TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]
Status = PetImage.Status


@pytest.fixture
def start_worker():
    """start_worker(**env) -> a ready worker of the fault app on this test's own queue."""
    queue = f"petsite-fault-{uuid.uuid4().hex[:8]}"
    workers: list[WorkerProcess] = []

    def start(name: str = "w1", args: tuple[str, ...] = (), **env: str) -> WorkerProcess:
        env = worker_env(CELERY_TASK_DEFAULT_QUEUE=queue, PETSITE_REQUEUE_AFTER="3", PETSITE_CLAIM_TIMEOUT="20", **env)
        worker = WorkerProcess(env, app="tests.faults.faulty_app", args=("-n", f"{name}-{queue}@%h", *args))
        workers.append(worker)
        if not worker.ready.wait(timeout=90):
            pytest.fail("Celery worker did not start:\n" + worker.log())
        return worker

    start.queue = queue
    yield start
    for worker in workers:
        worker.kill()


def stored_images(user, count: int, names: tuple[str, ...] = ()) -> list[int]:
    """Uploads stored as the site stores them, whose messages were lost (never sent):
    a worker that starts sends them."""
    pks = []
    with mock.patch.object(classification, "send", return_value=True):
        for i in range(count):
            file = upload(names[i] if i < len(names) else f"pet-{i}.jpg")
            pks.append(uploads.create_pet_image(user, file, inspect_image(file)).pk)
    PetImage.objects.filter(pk__in=pks).update(uploaded_at=timezone.now() - timedelta(minutes=10))
    return pks


def finished(pks) -> bool:
    return not PetImage.objects.filter(pk__in=pks, status__in=[Status.PENDING, Status.PROCESSING]).exists()


def wait_finished(pks, timeout: float, *workers: WorkerProcess) -> float:
    """Seconds until every image is DONE or FAILED."""
    start = time.monotonic()
    try:
        wait_for(lambda: finished(pks), timeout=timeout, what="every image to finish")
    except AssertionError:
        states = list(PetImage.objects.filter(pk__in=pks).values_list("pk", "status", "attempts", "claimed_by"))
        raise AssertionError(f"{states}\n" + "\n".join(w.log() for w in workers)) from None
    return time.monotonic() - start


def assert_each_once(pks, failed: tuple[int, ...] = ()) -> None:
    """Every image DONE (or FAILED with a reason where expected), one history row per version."""
    for pet in PetImage.objects.filter(pk__in=pks):
        if pet.pk in failed:
            assert pet.status == Status.FAILED and pet.error_message, pet.error_message
        else:
            assert pet.status == Status.DONE and pet.claim_token is None, (pet.pk, pet.status, pet.error_message)
            assert pet.classifications.filter(model_version=pet.model_version).count() == 1
    per_version = Classification.objects.filter(image__in=pks).values("image", "model_version").annotate(n=Count("pk"))
    assert all(row["n"] == 1 for row in per_version)


def processing_started(pks) -> bool:
    return PetImage.objects.filter(pk__in=pks, status=Status.PROCESSING, attempts__gte=1).exists()


def test_worker_child_killed_mid_batch(user, model_version, start_worker, record_property):
    pks = stored_images(user, 6)
    worker = start_worker(PETSITE_FAULT_SLOW_SECONDS="1.0")  # it sends the lost uploads at start
    wait_for(lambda: processing_started(pks), timeout=30, what="a batch to be in a forward pass")
    (child,) = worker.children()
    killed_at = time.monotonic()
    os.kill(child, signal.SIGKILL)
    wait_finished(pks, 60, worker)
    recovery = time.monotonic() - killed_at
    assert_each_once(pks)
    assert recovery < 30, recovery
    record_property("recovery_s", round(recovery, 1))


def test_whole_worker_killed_then_a_new_worker_resends_what_it_held(user, model_version, start_worker, record_property):
    pks = stored_images(user, 6)
    first = start_worker(name="w1", PETSITE_FAULT_SLOW_SECONDS="1.0")
    wait_for(lambda: processing_started(pks), timeout=30, what="a batch to be in a forward pass")
    first.kill()
    killed_at = time.monotonic()
    assert PetImage.objects.filter(pk__in=pks, status=Status.PROCESSING).exists()
    second = start_worker(name="w2")
    wait_finished(pks, 60, second)
    recovery = time.monotonic() - killed_at
    assert_each_once(pks)
    assert recovery < 30, recovery  # not the visibility timeout, not the beat's cutoff
    record_property("recovery_s", round(recovery, 1))


def test_poison_image_in_a_reclassification_batch_fails_alone(user, model_version, other_version, start_worker):
    pks = stored_images(user, 4, names=("a.jpg", "poison.jpg", "b.jpg", "c.jpg"))
    classification.classify_images(pks)  # classified once by the active model, in this process
    poison = PetImage.objects.get(pk__in=pks, original_name="poison.jpg").pk
    worker = start_worker(PETSITE_FAULT_POISON_NAME="poison.jpg")
    tasks.classify_batch.apply_async((pks, other_version.pk), queue=start_worker.queue)
    wait_for(
        lambda: PetImage.objects.filter(pk=poison, status=Status.FAILED).exists()
        and PetImage.objects.filter(pk__in=pks, model_version=other_version).count() == 3,
        timeout=120, what="the poison image to fail and the others to be reclassified",
    )
    assert_each_once(pks, failed=(poison,))
    assert "did not finish after 3 tries" in PetImage.objects.get(pk=poison).error_message
    assert Classification.objects.filter(image__in=pks, model_version=other_version).count() == 3
    assert worker.process.poll() is None  # the worker itself lives on


def test_two_workers_given_the_same_images(user, model_version, start_worker):
    pks = stored_images(user, 20)
    # Both send every lost upload when they start, and each image is sent twice more.
    workers = [start_worker(name="w1", PETSITE_FAULT_SLOW_SECONDS="0.2"),
               start_worker(name="w2", PETSITE_FAULT_SLOW_SECONDS="0.2")]
    for pk in pks:
        tasks.classify_image.apply_async((pk,), queue=start_worker.queue)
    tasks.classify_batch.apply_async((pks,), queue=start_worker.queue)
    wait_finished(pks, 90, *workers)
    time.sleep(2)  # duplicates still in the queue are consumed and must change nothing
    assert_each_once(pks)
    logs = "".join(w.log() for w in workers)
    assert "IntegrityError" not in logs


@pytest.mark.skipif(not RedisServer.available(), reason="redis-server is not installed")
def test_broker_restart_during_a_burst(user, model_version, start_worker, tmp_path, record_property):
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        worker = start_worker(
            args=("--beat", "--schedule", str(tmp_path / "beat-schedule")),
            CELERY_BROKER_URL=redis.url, PETSITE_REQUEUE_INTERVAL="2", PETSITE_FAULT_SLOW_SECONDS="0.3",
            PETSITE_BATCH_SIZE="1",  # one image per message: messages lost in the restart are images waiting
        )
        with mock.patch.object(classification, "send", return_value=True):
            pks = [uploads_one(user, i) for i in range(30)]
        with app.connection_for_write(redis.url) as connection:
            for pk in pks:
                tasks.classify_image.apply_async((pk,), queue=start_worker.queue, connection=connection)
        wait_for(lambda: PetImage.objects.filter(pk__in=pks, status=Status.DONE).count() >= 3, timeout=60,
                 what="the burst to start")
        redis.kill()  # every queued message is lost
        restarted_at = time.monotonic()
        time.sleep(1)
        redis.start()
        wait_finished(pks, 90, worker)
        recovery = time.monotonic() - restarted_at
    finally:
        redis.kill()
    assert_each_once(pks)
    assert PetImage.objects.filter(pk__in=pks, enqueue_count__gte=2).exists(), "nothing was lost and re-sent"
    record_property("recovery_s", round(recovery, 1))


def uploads_one(user, i: int) -> int:
    file = upload(f"burst-{i}.jpg")
    pet = uploads.create_pet_image(user, file, inspect_image(file))
    PetImage.objects.filter(pk=pet.pk).update(enqueued_at=timezone.now(), enqueue_count=1)
    return pet.pk


@pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    reason="needs a database server to lose (PostgreSQL); SQLite is a file",
)
def test_database_unreachable_for_a_worker_for_30_seconds(user, model_version, start_worker, record_property):
    db = settings.DATABASES["default"]
    proxy = TcpProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))
    url = worker_env()["DATABASE_URL"].replace(f":{db.get('PORT') or 5432}/", f":{proxy.port}/")
    pks = stored_images(user, 8)
    worker = start_worker(DATABASE_URL=url, PETSITE_FAULT_SLOW_SECONDS="0.5")
    wait_for(lambda: processing_started(pks), timeout=30, what="classification to start")
    proxy.cut()
    time.sleep(30)
    proxy.restore()
    restored_at = time.monotonic()
    wait_finished(pks, 120, worker)
    recovery = time.monotonic() - restored_at
    assert_each_once(pks)
    assert worker.process.poll() is None
    record_property("recovery_s", round(recovery, 1))
