"""Faults with real processes: worker children killed (on every worker, and started again
slowly), whole workers killed, poison images (killed, raising or hanging children, on two
workers), two workers on the same images, a broker restart, a database outage, the
embedded broker under several producers and consumers, heartbeats of dead workers and
bin/run's restart loop.

Every test starts its own Celery worker processes on a queue of its own (the fault
app of ``faulty_app.py`` slows forward passes, slows a child's start, or fails on a
poison image), on the test database and, except where a test brings its own Redis, on
the configured broker. Every test runs with the CPU saturated (the ``cpu_load`` fixture:
twice as many spinning processes as cores; ``PETSITE_FAULT_LOAD=0`` runs them on a quiet
machine). Each asserts that every image ends DONE or FAILED with a reason, with exactly
one history row per image and model version, within a bound stated in quiet-machine
seconds and stretched by the slowness measured at the fault (``tests.load.scaled``), and
records the measured recovery time and the load average as junit properties
(docs/reliability.md lists the figures).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from unittest import mock

import psutil
import pytest
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from classifier import classification, tasks, workers
from classifier.models import Classification, PetImage, WorkerHeartbeat
from petsite.broker import RedisServer as EmbeddedBroker
from petsite.broker import server_binary
from petsite.celery import app
from tests.conftest import BASE_DIR, WorkerProcess, worker_env
from tests.helpers import store_photo, upload, wait_for
from tests.load import scaled

from .faulty_app import CHILD_STARTED
from .services import RedisServer, TcpProxy

pytestmark = [
    pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(900),
    pytest.mark.usefixtures("cpu_load"),
]
Status = PetImage.Status
HOST = socket.gethostname()
# Seconds a new pool child of the fault tests sleeps before it reports up: longer than
# Celery's default worker_proc_alive_timeout (4 s), which killed such children forever.
SLOW_CHILD_START = 6.0


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
    with mock.patch.object(tasks, "send", return_value=True):
        for i in range(count):
            file = upload(names[i] if i < len(names) else f"pet-{i}.jpg")
            pks.append(store_photo(user, file).pk)
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


def holders(pks) -> set[str]:
    """The processes (host:pid) holding claims on ``pks`` now."""
    return set(PetImage.objects.filter(pk__in=pks, status=Status.PROCESSING).values_list("claimed_by", flat=True))


def send_each(pks, queue: str) -> None:
    for pk in pks:
        tasks.classify_image.apply_async((pk,), queue=queue)


def record(record_property, **figures: float) -> None:
    for name, value in figures.items():
        record_property(name, round(value, 1))


def test_worker_child_killed_mid_batch(user, model_version, start_worker, record_property):
    pks = stored_images(user, 6)
    worker = start_worker(PETSITE_FAULT_SLOW_SECONDS="1.0")  # it sends the lost uploads at start
    wait_for(lambda: processing_started(pks), timeout=30, what="a batch to be in a forward pass")
    (child,) = worker.children()
    bound = scaled(30)  # the message comes back at once; the new child imports PyTorch and loads the model
    killed_at = time.monotonic()
    os.kill(child, signal.SIGKILL)
    # The new child's first result: it took the message back, imported PyTorch, loaded the model.
    wait_for(lambda: PetImage.objects.filter(pk__in=pks, status=Status.DONE).exists(), timeout=bound,
             what="the new child's first result")
    serving = time.monotonic() - killed_at
    wait_finished(pks, bound, worker)
    recovery = time.monotonic() - killed_at
    assert_each_once(pks)
    assert recovery < bound, (recovery, bound)
    record(record_property, child_serving_s=serving, recovery_s=recovery, bound_s=bound)


def test_whole_worker_killed_then_a_new_worker_resends_what_it_held(user, model_version, start_worker, record_property):
    pks = stored_images(user, 6)
    first = start_worker(name="w1", PETSITE_FAULT_SLOW_SECONDS="1.0")
    wait_for(lambda: processing_started(pks), timeout=30, what="a batch to be in a forward pass")
    bound = scaled(30)  # not the visibility timeout (60 s), not the beat's cutoff
    first.kill()
    killed_at = time.monotonic()
    assert PetImage.objects.filter(pk__in=pks, status=Status.PROCESSING).exists()
    second = start_worker(name="w2")
    wait_finished(pks, bound, second)
    recovery = time.monotonic() - killed_at
    assert_each_once(pks)
    assert recovery < bound, (recovery, bound)
    record(record_property, recovery_s=recovery, bound_s=bound)


def test_poison_image_in_a_reclassification_batch_fails_alone(
    user, model_version, other_version, start_worker, record_property
):
    pks = stored_images(user, 4, names=("a.jpg", "poison.jpg", "b.jpg", "c.jpg"))
    classification.classify_images(pks)  # classified once by the active model, in this process
    poison = PetImage.objects.get(pk__in=pks, original_name="poison.jpg").pk
    worker = start_worker(PETSITE_FAULT_POISON_NAME="poison.jpg")
    bound = scaled(120)  # three children killed and started again, each loading PyTorch and the model
    sent_at = time.monotonic()
    tasks.classify_batch.apply_async((pks, other_version.pk), queue=start_worker.queue)
    wait_for(
        lambda: PetImage.objects.filter(pk=poison, status=Status.FAILED).exists()
        and PetImage.objects.filter(pk__in=pks, model_version=other_version).count() == 3,
        timeout=bound, what="the poison image to fail and the others to be reclassified",
    )
    took = time.monotonic() - sent_at
    assert took < bound, (took, bound)
    record(record_property, recovery_s=took, bound_s=bound)
    assert_each_once(pks, failed=(poison,))
    assert "did not finish after 3 tries" in PetImage.objects.get(pk=poison).error_message
    assert Classification.objects.filter(image__in=pks, model_version=other_version).count() == 3
    assert worker.process.poll() is None  # the worker itself lives on


def test_two_workers_given_the_same_images(user, model_version, start_worker, record_property):
    pks = stored_images(user, 20)
    # Both send every lost upload when they start, and each image is sent twice more.
    pair = [start_worker(name="w1", PETSITE_FAULT_SLOW_SECONDS="0.2"),
            start_worker(name="w2", PETSITE_FAULT_SLOW_SECONDS="0.2")]
    bound = scaled(90)
    sent_at = time.monotonic()
    send_each(pks, start_worker.queue)
    tasks.classify_batch.apply_async((pks,), queue=start_worker.queue)
    wait_finished(pks, bound, *pair)
    took = time.monotonic() - sent_at
    time.sleep(2)  # duplicates still in the queue are consumed and must change nothing
    assert_each_once(pks)
    assert took < bound, (took, bound)
    record(record_property, recovery_s=took, bound_s=bound)
    logs = "".join(w.log() for w in pair)
    assert "IntegrityError" not in logs


@pytest.mark.skipif(server_binary() is None, reason="redis-server is not installed")
def test_broker_restart_during_a_burst(user, model_version, start_worker, tmp_path, record_property):
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        worker = start_worker(
            args=("--beat", "--schedule", str(tmp_path / "beat-schedule")),
            CELERY_BROKER_URL=redis.url, PETSITE_REQUEUE_INTERVAL="2", PETSITE_FAULT_SLOW_SECONDS="0.3",
            PETSITE_BATCH_SIZE="1",  # one image per message: messages lost in the restart are images waiting
        )
        with mock.patch.object(tasks, "send", return_value=True):
            pks = [uploads_one(user, i) for i in range(30)]
        with app.connection_for_write(redis.url) as connection:
            for pk in pks:
                tasks.classify_image.apply_async((pk,), queue=start_worker.queue, connection=connection)
        wait_for(lambda: PetImage.objects.filter(pk__in=pks, status=Status.DONE).count() >= 3, timeout=60,
                 what="the burst to start")
        bound = scaled(60)  # re-sent after 3 s by a beat every 2 s, then classified
        redis.kill()  # every queued message is lost
        time.sleep(1)
        redis.start()
        restarted_at = time.monotonic()
        wait_finished(pks, bound, worker)
        recovery = time.monotonic() - restarted_at
    finally:
        redis.kill()
    assert_each_once(pks)
    assert PetImage.objects.filter(pk__in=pks, enqueue_count__gte=2).exists(), "nothing was lost and re-sent"
    assert recovery < bound, (recovery, bound)
    record(record_property, recovery_s=recovery, bound_s=bound)


def uploads_one(user, i: int) -> int:
    file = upload(f"burst-{i}.jpg")
    pet = store_photo(user, file)
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
    worker = start_worker(DATABASE_URL=url, PETSITE_FAULT_SLOW_SECONDS="0.5", PETSITE_WORKER_HEARTBEAT_SECONDS="2")
    wait_for(lambda: processing_started(pks), timeout=30, what="classification to start")
    proxy.cut()
    time.sleep(30)
    proxy.restore()
    restored = timezone.now()
    restored_at = time.monotonic()
    bound = scaled(60)  # the tasks retry every 30 s at most (classifier/tasks.py)
    wait_finished(pks, bound, worker)
    recovery = time.monotonic() - restored_at
    assert_each_once(pks)
    assert recovery < bound, (recovery, bound)
    # The worker lived through it, and so did its heartbeat, which said so once and resumed.
    assert worker.process.poll() is None
    wait_for(lambda: WorkerHeartbeat.objects.filter(pid=worker.process.pid, last_seen__gt=restored).exists(),
             timeout=30, what="the heartbeat to be written again")
    log = "".join(worker.lines)
    assert log.count("Worker heartbeat could not be written") == 1 and "Worker heartbeat written again" in log
    record(record_property, recovery_s=recovery, bound_s=bound)


# --- Children that come back under load ------------------------------------------------------


def test_children_of_every_worker_killed_come_back_though_they_start_slowly(
    user, model_version, start_worker, record_property
):
    """Both workers lose their child mid-batch; each new child takes SLOW_CHILD_START s to
    report up (longer than Celery's default alive timeout) and imports PyTorch only after,
    in its first task. Each is serving again within a bound, and nothing is lost."""
    faults = {"PETSITE_FAULT_SLOW_SECONDS": "0.5", "PETSITE_FAULT_SLOW_CHILD_START_SECONDS": str(SLOW_CHILD_START),
              "PETSITE_BATCH_SIZE": "4"}
    pair = [start_worker(name="w1", **faults), start_worker(name="w2", **faults)]
    pks = stored_images(user, 16)
    send_each(pks, start_worker.queue)
    killed: dict[WorkerProcess, int] = {}

    def each_child_holds_a_batch() -> bool:
        children = {worker: worker.children() for worker in pair}
        if not all(len(pids) == 1 for pids in children.values()):
            return False
        killed.update({worker: pids[0] for worker, pids in children.items()})
        return {f"{HOST}:{pid}" for pid in killed.values()} <= holders(pks)

    wait_for(each_child_holds_a_batch, timeout=60, what="a batch in a forward pass on each worker")
    serving_bound = SLOW_CHILD_START + scaled(20)  # the child's slow start, then PyTorch, the model and a batch
    bound = SLOW_CHILD_START + scaled(60)
    killed_at = time.monotonic()
    for pid in killed.values():
        os.kill(pid, signal.SIGKILL)
    wait_finished(pks, bound, *pair)
    recovery = time.monotonic() - killed_at
    assert_each_once(pks)

    serving = []
    for worker in pair:
        log = "".join(worker.lines)
        served_at = worker.first_line_after(killed_at, "succeeded in")
        assert served_at is not None, log  # each worker's new child classified
        serving.append(served_at - killed_at)
        assert worker.children() and killed[worker] not in worker.children()
        assert "Timed out waiting for UP message" not in log  # no child killed for its slow start
        assert f"{CHILD_STARTED} after {SLOW_CHILD_START:.1f} s (torch imported: False)" in log
        assert "(torch imported: True)" not in log  # heavy imports come after the child is up
        # The main process never imports PyTorch, though its children have by now.
        assert not [m.path for m in psutil.Process(worker.process.pid).memory_maps() if "libtorch" in m.path]
    assert max(serving) < serving_bound, (serving, serving_bound)
    assert recovery < bound, (recovery, bound)
    record(record_property, child_serving_s=max(serving), recovery_s=recovery, bound_s=bound)


@pytest.mark.parametrize("mode", ["kill", "raise"])
def test_a_poison_image_whose_tries_hit_two_workers_fails_after_three(
    mode, user, model_version, start_worker, record_property
):
    """Each try of the poison image kills its child (or raises in the forward pass), and the
    tries land on both workers (a dead child's message goes back to the queue, where the
    other worker waits): the count is kept in the row, so it still ends FAILED after three."""
    faults = {"PETSITE_FAULT_POISON_NAME": "poison.jpg", "PETSITE_FAULT_POISON_MODE": mode}
    pair = [start_worker(name="w1", **faults), start_worker(name="w2", **faults)]
    pks = stored_images(user, 4, names=("a.jpg", "poison.jpg", "b.jpg", "c.jpg"))
    poison = PetImage.objects.get(pk__in=pks, original_name="poison.jpg").pk
    bound = scaled(120)  # three tries, each in a new child that loads PyTorch and the model first
    sent_at = time.monotonic()
    tasks.classify_batch.apply_async((pks,), queue=start_worker.queue)
    wait_finished(pks, bound, *pair)
    took = time.monotonic() - sent_at
    assert_each_once(pks, failed=(poison,))
    failed = PetImage.objects.get(pk=poison)
    assert failed.attempts == 3 and failed.error_message.startswith("Classification did not finish after 3 tries.")
    evidence = "signal 9 (SIGKILL)" if mode == "kill" else "PoisonError"
    if mode == "raise":
        assert "PoisonError: the forward pass failed on a poison image" in failed.error_message
    logs = ["".join(worker.lines) for worker in pair]
    assert sum(log.count(evidence) for log in logs) >= 3 and all(evidence in log for log in logs), logs
    assert all(worker.process.poll() is None for worker in pair)
    assert took < bound, (took, bound)
    record(record_property, recovery_s=took, bound_s=bound)


def test_a_poison_image_that_hangs_is_stopped_by_the_time_limit_and_fails_after_three(
    user, model_version, start_worker, tmp_path, record_property
):
    """A forward pass that never returns: the task's hard time limit kills the child, the
    beat re-sends what the dead child held, and the third such try fails the image."""
    limit = scaled(8)  # above a new child's first task (PyTorch, the model: about 3 s quiet, 12 s at load 8)
    worker = start_worker(
        args=("--beat", "--schedule", str(tmp_path / "beat-schedule")),
        PETSITE_FAULT_POISON_NAME="poison.jpg", PETSITE_FAULT_POISON_MODE="hang",
        PETSITE_CLASSIFY_TIME_LIMIT=str(limit), PETSITE_REQUEUE_INTERVAL="2",
    )
    pks = stored_images(user, 2, names=("a.jpg", "poison.jpg"))
    poison = PetImage.objects.get(pk__in=pks, original_name="poison.jpg").pk
    bound = 3 * limit + scaled(60)
    sent_at = time.monotonic()
    # A task's time limit travels in its message, from the sender's settings (the worker's beat sends the rest).
    tasks.classify_batch.apply_async((pks,), queue=start_worker.queue, time_limit=limit)
    wait_finished(pks, bound, worker)
    took = time.monotonic() - sent_at
    assert_each_once(pks, failed=(poison,))
    assert PetImage.objects.get(pk=poison).attempts == 3
    assert "".join(worker.lines).count("Hard time limit") >= 3  # one more if a busy machine slowed a normal try
    assert took < bound, (took, bound)
    record(record_property, recovery_s=took, bound_s=bound, time_limit_s=limit)


# --- Workers that are seen and kept alive ------------------------------------------------------


def test_a_killed_worker_is_seen_gone_by_its_heartbeat(start_worker, settings, client, record_property):
    heartbeat, gone_after = 2, 15
    settings.PETSITE_WORKER_GONE_AFTER = gone_after
    queue = start_worker.queue
    worker = start_worker(PETSITE_WORKER_HEARTBEAT_SECONDS=str(heartbeat))
    node = f"w1-{queue}@{HOST}"
    wait_for(lambda: [(w.node, w.pid, w.processes) for w in workers.live_workers(queue)]
             == [(node, worker.process.pid, 1)], timeout=60, what="the worker's heartbeat with its child up")
    worker.kill()  # the main process and its child, at once
    killed_at = time.monotonic()
    bound = gone_after + scaled(2 * heartbeat + 2)  # its last beat, up to one period before the kill, then a poll
    wait_for(lambda: not workers.live_workers(queue), timeout=bound, what="the worker to be seen gone")
    detected = time.monotonic() - killed_at
    assert gone_after - 2 * heartbeat <= detected < bound, (detected, bound)  # by its age, not removed
    report = workers.queue_workers(queue)
    assert report.missing and report.last_seen is not None
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    assert client.get("/readyz").json()["workers"]["classification"]["live"] == 0
    record(record_property, detected_s=detected, bound_s=bound)


@pytest.mark.skipif(server_binary() is None, reason="redis-server is not installed")
def test_the_embedded_broker_with_several_producers_and_consumers(
    user, model_version, start_worker, tmp_path, record_property
):
    """bin/run's broker (a Redis server on a unix socket, petsite/broker.py) with two
    producer processes sending at once and two workers taking: every image once, no
    worker dies (the file-system transport it replaces lost a worker this way)."""
    with EmbeddedBroker(tmp_path / "redis.sock", tmp_path / "redis", persist=True) as broker:
        faults = {"CELERY_BROKER_URL": broker.url, "PETSITE_BATCH_SIZE": "1"}
        pair = [start_worker(name="w1", **faults), start_worker(name="w2", **faults)]
        pks = stored_images(user, 40)
        env = worker_env(CELERY_BROKER_URL=broker.url, CELERY_TASK_DEFAULT_QUEUE=start_worker.queue)
        code = "import sys, django; django.setup(); from classifier import tasks\n" \
               "for pk in sys.argv[1:]: tasks.classify_image.delay(int(pk))"
        bound = scaled(90)
        sent_at = time.monotonic()
        other = subprocess.Popen([sys.executable, "-c", code, *map(str, reversed(pks))], cwd=BASE_DIR, env=env)
        with app.connection_for_write(broker.url) as connection:
            for pk in pks:
                tasks.classify_image.apply_async((pk,), queue=start_worker.queue, connection=connection)
        assert other.wait(timeout=120) == 0
        wait_finished(pks, bound, *pair)
        took = time.monotonic() - sent_at
    assert_each_once(pks)
    for worker in pair:
        log = "".join(worker.lines)
        assert worker.process.poll() is None and "Unrecoverable error" not in log
        assert "succeeded in" in log  # both consumed
    assert took < bound, (took, bound)
    record(record_property, recovery_s=took, bound_s=bound)


def test_bin_runs_restart_loop_brings_back_a_killed_worker(transactional_db, tmp_path, settings, record_property):
    """bin/_keep_running, as bin/run starts each worker: the worker's main process is
    SIGKILLed; the loop says so, kills what it left behind, and starts it again; stopping
    the loop stops the worker and leaves no process."""
    queue = f"petsite-fault-{uuid.uuid4().hex[:8]}"
    node = f"loop-{queue}@{HOST}"
    log = tmp_path / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "petsite", "worker", "-n", node, "--concurrency", "1",
               "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    env = worker_env(CELERY_TASK_DEFAULT_QUEUE=queue, PETSITE_WORKER_HEARTBEAT_SECONDS="2")
    loop = subprocess.Popen([str(BASE_DIR / "bin" / "_keep_running"), "classification worker", str(log), *command],
                            cwd=BASE_DIR, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True)
    seen: list[psutil.Process] = []  # every worker process the loop ran, to check that none is left

    def worker_up(not_pid: int = 0) -> int | None:
        """The pid of the loop's worker, once its heartbeat says its child is up."""
        row = WorkerHeartbeat.objects.filter(node=node).exclude(pid=not_pid).first()
        if row is None or row.processes != 1:
            return None
        main = psutil.Process(row.pid)
        seen.extend([main, *main.children(recursive=True)])
        return row.pid

    def alive(processes) -> list[psutil.Process]:
        living = []
        for process in processes:
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    living.append(process)
            except psutil.NoSuchProcess:
                pass
        return living

    try:
        wait_for(lambda: worker_up() is not None, timeout=90, what="the worker to start")
        first, first_family = worker_up(), list(seen)
        bound = scaled(30)  # the loop waits 2 s, then a worker starts and its child reports up
        os.kill(first, signal.SIGKILL)  # its main process only, as a crash would
        killed_at = time.monotonic()
        wait_for(lambda: worker_up(not_pid=first) is not None, timeout=bound, what="the worker to be restarted")
        restarted = time.monotonic() - killed_at
        assert "bin/run: the classification worker stopped (exit status 137); restarting it in" in log.read_text()
        assert not alive(first_family)  # its child went with it (the loop kills the process group)
    finally:
        loop.terminate()
        loop.wait(timeout=60)
        left = alive(seen)
        for process in left:  # a failed test still leaves nothing behind
            process.kill()
    assert loop.returncode == 0 and not left  # the worker stopped with the loop
    assert restarted < bound, (restarted, bound)
    record(record_property, restarted_s=restarted, bound_s=bound)
