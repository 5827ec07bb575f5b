"""The Celery side of model warm-up: every classification worker warms a model version up
when it is registered or activated, and the active one when the worker starts.

A warm-up (``ml.warmup``: the ONNX export and the backend choice) runs once per model and
machine, in a process of its own, started from the worker's main process: that process
never imports torch, and never keeps the exporter's memory. The request reaches the main
process of every worker as a remote-control command (a broadcast; a task would reach one
worker, and a pool child that runs it would hold a slot for minutes). A worker that does
not serve the classification queue (the training worker) ignores it. Meanwhile the pool
children serve with eager FP32 and switch when the warm-up is done (``registry.services.predictor_for``).
"""
from __future__ import annotations

import logging
import os

from celery import current_app
from celery.signals import worker_ready
from celery.worker.control import control_command
from django.conf import settings
from django.db import DatabaseError, connection

from . import services
from .models import ModelVersion

log = logging.getLogger(__name__)

WARM_UP = "warm_up_model"  # the remote-control command's name


def torch_threads_per_child() -> int:
    """Torch threads of each pool child: ``PETSITE_TORCH_THREADS``, or the cores shared among
    the children (the backend choice is measured, and cached, for this thread count)."""
    children = current_app.conf.worker_concurrency or os.cpu_count() or 1
    return settings.PETSITE_TORCH_THREADS or max(1, (os.cpu_count() or 1) // children)


def _classifies(consumer) -> bool:
    """Whether this worker consumes the classification queue (the default queue)."""
    queues = consumer.task_consumer.queues if consumer is not None and consumer.task_consumer else []
    return settings.CELERY_TASK_DEFAULT_QUEUE in {queue.name for queue in queues}


@control_command(args=[("version_id", int)], signature="<version_id>")
def warm_up_model(state, version_id: int, **kwargs) -> dict:
    """Warm a model version up on this machine, in the background (runs in the main process)."""
    if not _classifies(state.consumer):
        return {"ok": "not a classification worker"}
    try:
        version = ModelVersion.objects.filter(pk=version_id).first()
    except DatabaseError:
        log.warning("Warm-up of model version %s: the database is unreachable; the children warm it up", version_id)
        return {"error": "database unreachable"}
    finally:
        connection.close()  # the main process classifies nothing: hold no connection
    if version is None:
        return {"error": f"no model version {version_id}"}
    started = services.start_warm_up(version, threads=torch_threads_per_child())
    return {"ok": "warming up" if started else "warming up already"}


def warm_up_everywhere(version: ModelVersion) -> None:
    """Ask every worker to warm ``version`` up (a broadcast, no reply awaited). A broker that
    is away is logged: each worker child then warms up the model it needs by itself."""
    try:
        current_app.control.broadcast(WARM_UP, arguments={"version_id": version.pk})
    except Exception:  # kombu raises several types when the broker is unreachable
        log.warning("Could not ask the workers to warm up model %s; each will when it first needs it", version.name)


def on_model_changed(sender, version: ModelVersion, **kwargs) -> None:
    """Receiver of ``model_registered`` and ``model_activated``."""
    warm_up_everywhere(version)


@worker_ready.connect
def _warm_up_the_active_model(sender=None, **kwargs) -> None:
    """A classification worker that starts warms the active model up (seconds when this
    machine has done it before: the warm-up finds its cached choice and file)."""
    if not _classifies(sender):
        return
    try:
        version = services.active_version()
    except DatabaseError:
        log.warning("Worker start: the database is unreachable; the children warm the model up when they need it")
        return
    finally:
        connection.close()
    if version is not None:
        services.start_warm_up(version, threads=torch_threads_per_child())
