"""Faults with real processes, part two: the children of every worker killed and started
again slowly, poison images (killed, raising or hanging children) whose tries hit two
workers, heartbeats of dead workers, the embedded broker under several producers and
consumers, and bin/run's restart loop. How the tests work: tests/faults/test_faults.py.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from classifier import tasks, workers
from classifier.models import PetImage, WorkerHeartbeat
from petsite.broker import RedisServer as EmbeddedBroker
from petsite.broker import server_binary
from petsite.celery import app
from tests.conftest import BASE_DIR, WorkerProcess, worker_env
from tests.helpers import wait_for
from tests.load import scaled

from .fault_helpers import (
    HOST,
    SLOW_CHILD_START,
    assert_each_once,
    holders,
    record,
    send_each,
    stored_images,
    wait_finished,
)
from .faulty_app import CHILD_STARTED

pytestmark = [
    pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(900),
    pytest.mark.usefixtures("cpu_load"),
]


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
        assert worker.children()
        assert killed[worker] not in worker.children()
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
    assert failed.attempts == 3
    assert failed.error_message.startswith("Classification did not finish after 3 tries.")
    evidence = "signal 9 (SIGKILL)" if mode == "kill" else "PoisonError"
    if mode == "raise":
        assert "PoisonError: the forward pass failed on a poison image" in failed.error_message
    logs = ["".join(worker.lines) for worker in pair]
    assert sum(log.count(evidence) for log in logs) >= 3, logs
    assert all(evidence in log for log in logs), logs
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
    assert report.missing
    assert report.last_seen is not None
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
        assert worker.process.poll() is None
        assert "Unrecoverable error" not in log
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
    assert loop.returncode == 0
    assert not left
    assert restarted < bound, (restarted, bound)
    record(record_property, restarted_s=restarted, bound_s=bound)
