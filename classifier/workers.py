"""Which Celery workers are alive: their heartbeats, written and read.

Every worker's main process writes a :class:`~classifier.models.WorkerHeartbeat` row
every ``PETSITE_WORKER_HEARTBEAT_SECONDS`` (a thread started by the ``Heartbeat``
bootstep of petsite/celery.py), saying which queues it serves and how many of its
processes can run a task. A worker not seen for ``PETSITE_WORKER_GONE_AFTER`` seconds
counts as gone: it was killed, its machine stopped, or it cannot reach the database.
``/readyz`` and the staff pages read :func:`queue_workers` to say so, since uploads are
still stored and wait, silently, while no worker serves the classification queue.

The writer never stops the worker: a database that is away is logged and tried again at
the next beat, and nothing here imports PyTorch (the main process forks the children).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psutil
from celery import bootsteps
from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import WorkerHeartbeat

log = logging.getLogger(__name__)

TRAINING_QUEUE = "training"  # training runs started from the site (training.tasks.train_model)
PRUNE_AFTER = timedelta(days=1)  # heartbeat rows of workers gone this long are deleted


def classification_queue() -> str:
    """The queue that classification tasks go to (the default queue)."""
    return settings.CELERY_TASK_DEFAULT_QUEUE


def process_running(pid: int) -> bool:
    """True while process ``pid`` of this host runs. A killed process that nobody has
    reaped yet (a zombie) counts as dead."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- Writing -------------------------------------------------------------------------------


def record_heartbeat(node: str, queues: list[str], processes: int, started_at: datetime) -> None:
    """Say that worker ``node`` (this process) is alive now, and prune rows gone for a day."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        node=node,
        defaults={"host": socket.gethostname(), "pid": os.getpid(), "queues": sorted(queues),
                  "processes": processes, "started_at": started_at, "last_seen": now},
    )
    WorkerHeartbeat.objects.filter(last_seen__lt=now - PRUNE_AFTER).delete()


def forget(node: str) -> None:
    """A worker that stops cleanly takes its row away: it is not a worker that died."""
    WorkerHeartbeat.objects.filter(node=node, pid=os.getpid()).delete()


def serving_processes(pool) -> int:
    """How many processes of a worker's pool can run a task now.

    Prefork: the children that are alive and have reported up (a child still starting,
    or killed and not yet replaced, does not count). Read without waiting on any child:
    ``waitpid`` here would take an exit status that the pool needs. Solo (training): the
    main process itself.
    """
    inner = getattr(pool, "_pool", None)
    children = getattr(inner, "_pool", None)
    if children is None:
        return 1
    starting = set(getattr(inner, "_waiting_to_start", ()))
    return sum(1 for child in list(children) if child not in starting and child.pid and process_running(child.pid))


class HeartbeatThread(threading.Thread):
    """Writes a Celery worker's heartbeat until :meth:`stop`; a daemon thread of its main process."""

    def __init__(self, worker):
        super().__init__(name="petsite-heartbeat", daemon=True)
        self.worker = worker
        self.started_at = timezone.now()
        self.stopping = threading.Event()
        self.failing = False

    def run(self) -> None:
        while True:
            self.beat()
            if self.stopping.wait(settings.PETSITE_WORKER_HEARTBEAT_SECONDS):
                return

    def beat(self) -> None:
        worker = self.worker
        queues = list(worker.app.amqp.queues.consume_from)
        try:
            record_heartbeat(worker.hostname, queues, serving_processes(worker.pool), self.started_at)
        except Exception as error:  # the database is away: try again at the next beat, never stop the worker
            if not self.failing:
                log.warning("Worker heartbeat could not be written (%s: %s); trying again every %.0f s",
                            type(error).__name__, error, settings.PETSITE_WORKER_HEARTBEAT_SECONDS)
            self.failing = True
        else:
            if self.failing:
                log.info("Worker heartbeat written again")
            self.failing = False
        finally:
            connection.close()  # this thread's own connection: none is held between beats

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=5)
        try:
            forget(self.worker.hostname)
        except Exception as error:  # the row then simply ages until it counts as gone
            log.warning("Worker heartbeat row not removed at stop (%s)", type(error).__name__)
        finally:
            connection.close()


# --- Reading -------------------------------------------------------------------------------


@dataclass
class QueueWorkers:
    """The workers of one queue: those seen lately (``live``), and when any was last seen."""

    queue: str
    live: list[WorkerHeartbeat] = field(default_factory=list)
    last_seen: datetime | None = None

    @property
    def missing(self) -> bool:
        """No worker of this queue seen for ``PETSITE_WORKER_GONE_AFTER`` seconds."""
        return not self.live

    def as_json(self) -> dict:
        return {"queue": self.queue, "live": len(self.live),
                "last_seen": self.last_seen.isoformat() if self.last_seen else None}


def _seen_since(now: datetime | None) -> datetime:
    return (now or timezone.now()) - timedelta(seconds=settings.PETSITE_WORKER_GONE_AFTER)


def live_workers(queue: str | None = None, now: datetime | None = None) -> list[WorkerHeartbeat]:
    """Workers seen within ``PETSITE_WORKER_GONE_AFTER`` seconds, of ``queue`` if given."""
    seen = WorkerHeartbeat.objects.filter(last_seen__gte=_seen_since(now))
    return [worker for worker in seen if queue is None or queue in worker.queues]  # a few rows: filtered here


def queue_workers(queue: str, now: datetime | None = None) -> QueueWorkers:
    """The workers of ``queue``: those alive, and when any was last seen (/readyz, staff pages)."""
    rows = [worker for worker in WorkerHeartbeat.objects.all() if queue in worker.queues]
    since = _seen_since(now)
    return QueueWorkers(
        queue=queue,
        live=[worker for worker in rows if worker.last_seen >= since],
        last_seen=max((worker.last_seen for worker in rows), default=None),
    )


class Heartbeat(bootsteps.StartStopStep):
    """The worker's heartbeat row, written by a thread of the main process (:class:`HeartbeatThread`).

    A thread, not a timer of Celery's event loop: a loop busy with a slow database, or
    blocked, must not stop the heartbeat of a worker that still serves, and a heartbeat
    that cannot reach the database must never stop the worker.
    """

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.beat = None

    def start(self, worker) -> None:
        self.beat = HeartbeatThread(worker)
        self.beat.start()

    def stop(self, worker) -> None:
        if self.beat is not None:
            self.beat.stop()

    terminate = stop  # a cold shutdown too: the worker did not die
