"""The Celery app. Configuration lives in Django settings under the CELERY_ prefix.

What runs where, and why:

- A pool child starts light: nothing heavy happens before it tells its main process that
  it is up (``worker_proc_alive_timeout``, settings). PyTorch is imported, and its thread
  count set, by the child's first task (:func:`_limit_torch_threads`), so a busy machine
  that takes 10 s to import it never gets a child killed and replaced forever.
- The main process never imports PyTorch (children are forked from it); it re-sends what
  dead workers of this host held when it starts, and writes the worker's heartbeat
  (classifier/workers.py) from a thread of its own.
"""
import logging
import os

from celery import Celery, bootsteps
from celery.signals import setup_logging, task_prerun, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "petsite.settings")

log = logging.getLogger(__name__)

app = Celery("petsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _log_like_the_site(**kwargs) -> None:
    """Workers and beat log as the web does (settings.LOGGING: one line per event, with
    the request id a task carries, JSON with LOG_FORMAT=json) instead of Celery's own
    format. LOG_LEVEL sets the level; a receiver here makes Celery leave logging alone."""
    from django.conf import settings

    from petsite.logs import configure

    configure(settings.LOGGING)


_torch_threads_set = False


@task_prerun.connect
def _limit_torch_threads(**kwargs) -> None:
    """Each prefork child gets its share of the cores, so children x threads <= cores.

    Done before the child's first task, not when the child starts: importing PyTorch takes
    8-13 s on a busy machine, longer than a child may take to report that it is up. Never
    in the main process of a prefork worker (its children are forked from it); a solo
    worker (training) runs its tasks in its main process, and sets them there.
    """
    global _torch_threads_set
    if _torch_threads_set:
        return
    _torch_threads_set = True
    import torch

    from ml.tasks import torch_threads_per_child  # the count the backend choice is measured and cached for

    torch.set_num_threads(torch_threads_per_child())


@worker_ready.connect
def _resend_what_was_stranded(**kwargs) -> None:
    """A worker that starts sends again what a dead worker of this host held, and
    anything else that waited too long, instead of waiting for the next beat run."""
    from django.db import DatabaseError, connection

    from classifier.tasks import requeue_stale

    try:
        count = requeue_stale()
        log.info("Worker start: re-sent %d stranded image(s)", count)
    except DatabaseError:
        log.warning("Worker start: the database is unreachable; the beat task re-sends stranded images later")
    finally:
        connection.close()  # the main process classifies nothing: hold no connection


class Heartbeat(bootsteps.StartStopStep):
    """The worker's heartbeat row, written by a thread of the main process (classifier/workers.py).

    A thread, not a timer of Celery's event loop: a loop busy with a slow database, or
    blocked, must not stop the heartbeat of a worker that still serves, and a heartbeat
    that cannot reach the database must never stop the worker.
    """

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.beat = None

    def start(self, worker) -> None:
        from classifier.workers import HeartbeatThread

        self.beat = HeartbeatThread(worker)
        self.beat.start()

    def stop(self, worker) -> None:
        if self.beat is not None:
            self.beat.stop()

    terminate = stop  # a cold shutdown too: the worker did not die


app.steps["worker"].add(Heartbeat)
