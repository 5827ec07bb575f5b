"""The Petsite Celery app with faults injected into each worker child, for the fault tests.

Started as ``celery -A tests.faults.faulty_app worker``. Environment variables:

- ``PETSITE_FAULT_SLOW_SECONDS``: every forward pass takes this much longer, so that a
  test can kill a worker while it holds a batch.
- ``PETSITE_FAULT_POISON_NAME``: a worker child whose forward pass includes an image
  uploaded under this name fails in it, as ``PETSITE_FAULT_POISON_MODE`` says: ``kill``
  (the default: SIGKILL, like a process killed for memory), ``raise`` (an exception in
  the forward pass) or ``hang`` (it never returns: the task's hard time limit kills it).
- ``PETSITE_FAULT_SLOW_CHILD_START_SECONDS``: every new pool child sleeps this long
  before it reports up, like a child that a busy machine starts slowly. It then logs
  whether PyTorch was imported during its start (it must not be: that is the first
  task's work).
"""
import logging
import os
import signal
import sys
import time

from celery.signals import worker_process_init

from petsite.celery import app

__all__ = ["app"]

log = logging.getLogger(__name__)
CHILD_STARTED = "fault: child started"  # the line a slowly started child logs, read by the tests


class PoisonError(RuntimeError):
    """What a poison image raises in the forward pass (mode ``raise``)."""


class _FaultyPredictor:
    def __init__(self, predictor, slow: float, poison_mode: str):
        self.predictor, self.slow, self.poison_mode = predictor, slow, poison_mode
        self.preprocess = predictor.preprocess

    def classify_batch(self, tensors, k, batch_size):
        time.sleep(self.slow)
        if self.poison_mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.poison_mode == "raise":
            raise PoisonError("the forward pass failed on a poison image")
        elif self.poison_mode == "hang":
            time.sleep(3600)
        return self.predictor.classify_batch(tensors, k, batch_size)


@worker_process_init.connect
def _slow_child_start(**kwargs) -> None:
    """Connected after petsite.celery's receivers (this module imports it first), so the
    line below sees everything the child's start did before it reports up."""
    seconds = float(os.environ.get("PETSITE_FAULT_SLOW_CHILD_START_SECONDS", "0"))
    if seconds:
        time.sleep(seconds)
        log.warning("%s after %.1f s (torch imported: %s)", CHILD_STARTED, seconds, "torch" in sys.modules)


@worker_process_init.connect
def _inject_faults(**kwargs) -> None:
    from classifier import classification

    slow = float(os.environ.get("PETSITE_FAULT_SLOW_SECONDS", "0"))
    poison = os.environ.get("PETSITE_FAULT_POISON_NAME", "")
    mode = os.environ.get("PETSITE_FAULT_POISON_MODE", "kill")
    real = classification._classify_batch

    def faulty(pets, token, version, predictor):
        poisoned = bool(poison) and any(pet.original_name == poison for pet in pets)
        return real(pets, token, version, _FaultyPredictor(predictor, slow, mode if poisoned else ""))

    classification._classify_batch = faulty
