"""Celery tasks of training runs: thin wrappers that pass ids to ``training.services``."""
from celery import shared_task

from classifier.workers import TRAINING_QUEUE

from . import services


@shared_task(queue=TRAINING_QUEUE, acks_late=False)
def train_model(run_id: int) -> None:
    """A training run from the site, on its own queue (a worker started with ``-Q training``).

    Acknowledged when it starts, unlike classification: a run lasts longer than any
    sane visibility timeout, so a redelivery would start it twice. The TrainingRun row
    is the truth instead: its heartbeat tells a dead run from a live one.
    """
    services.execute(run_id)


@shared_task
def expire_dead_runs() -> int:
    """Beat's: mark failed the runs whose training worker stopped beating (on the default
    queue, so a dead training worker cannot hold up its own expiry)."""
    return services.expire_dead_runs()
