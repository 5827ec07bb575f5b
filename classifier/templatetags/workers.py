"""``{% worker_status "classification" %}``: the staff pages' word on a queue's workers
(classifier/workers.py), a warning when none has been seen lately."""
from django import template
from django.conf import settings
from django.utils import timezone

from classifier import workers

register = template.Library()

QUEUES = {"classification": workers.classification_queue, "training": lambda: workers.TRAINING_QUEUE}


@register.inclusion_tag("registry/_workers.html")
def worker_status(role: str) -> dict:
    """``role``: "classification" or "training"."""
    now = timezone.now()
    report = workers.queue_workers(QUEUES[role](), now)
    live = [
        {"node": worker.node, "processes": worker.processes, "seen_s": int((now - worker.last_seen).total_seconds())}
        for worker in report.live
    ]
    return {"role": role, "report": report, "live": live, "gone_after": settings.PETSITE_WORKER_GONE_AFTER}
