"""The Celery app. Configuration lives in Django settings under the CELERY_ prefix.

What runs where, and why:

- A pool child starts light: nothing heavy happens before it tells its main process that
  it is up (``worker_proc_alive_timeout``, settings). PyTorch is imported, and its thread
  count set, by the child's first task (:func:`_limit_torch_threads`), so a busy machine
  that takes 10 s to import it never gets a child killed and replaced forever.
- The main process never imports PyTorch (children are forked from it); it re-sends what
  dead workers of this host held when it starts (classifier/tasks.py), and writes the
  worker's heartbeat (classifier/workers.py) from a thread of its own.
"""
import logging
import os

from celery import Celery
from celery.signals import setup_logging, task_prerun

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

    from registry.tasks import torch_threads_per_child  # the count the backend choice is measured and cached for

    torch.set_num_threads(torch_threads_per_child())


# The worker's heartbeat (classifier/workers.py), named, not imported: this module imports
# nothing of the apps, which import it (no import cycle). Celery loads a step by its name.
app.steps["worker"].add("classifier.workers:Heartbeat")
