"""The Celery app. Configuration lives in Django settings under the CELERY_ prefix."""
import logging
import os

from celery import Celery
from celery.signals import setup_logging, worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "petsite.settings")

log = logging.getLogger(__name__)

app = Celery("petsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _create_broker_folder(sender: Celery, **kwargs) -> None:
    """The filesystem transport needs its folder to exist before the first message."""
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if options.get(key):
            os.makedirs(options[key], exist_ok=True)


@setup_logging.connect
def _log_like_the_site(**kwargs) -> None:
    """Workers and beat log as the web does (settings.LOGGING: one line per event, with
    the request id a task carries, JSON with LOG_FORMAT=json) instead of Celery's own
    format. LOG_LEVEL sets the level; a receiver here makes Celery leave logging alone."""
    from django.conf import settings

    from petsite.logs import configure

    configure(settings.LOGGING)


@worker_process_init.connect
def _limit_torch_threads(**kwargs) -> None:
    """Each prefork child gets its share of the cores, so children x threads <= cores.

    Runs in the child after fork: torch must never be initialised in the parent.
    """
    import torch
    from django.conf import settings

    children = app.conf.worker_concurrency or os.cpu_count() or 1
    threads = settings.PETSITE_TORCH_THREADS or max(1, (os.cpu_count() or 1) // children)
    torch.set_num_threads(threads)


@worker_ready.connect
def _resend_what_was_stranded(**kwargs) -> None:
    """A worker that starts sends again what a dead worker of this host held, and
    anything else that waited too long, instead of waiting for the next beat run."""
    from django.db import DatabaseError, connection

    from classifier.classification import requeue_stale

    try:
        count = requeue_stale()
        log.info("Worker start: re-sent %d stranded image(s)", count)
    except DatabaseError:
        log.warning("Worker start: the database is unreachable; the beat task re-sends stranded images later")
    finally:
        connection.close()  # the main process classifies nothing: hold no connection
