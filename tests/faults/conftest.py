"""The fault tests' workers: real processes of the fault app, each test on a queue of its own."""
from __future__ import annotations

import uuid

import pytest

from tests.conftest import WorkerProcess, worker_env


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
