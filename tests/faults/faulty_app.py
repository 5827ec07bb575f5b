"""The Petsite Celery app with faults injected into each worker child, for the fault tests.

Started as ``celery -A tests.faults.faulty_app worker``. Environment variables:

- ``PETSITE_FAULT_SLOW_SECONDS``: every forward pass takes this much longer, so that a
  test can kill a worker while it holds a batch.
- ``PETSITE_FAULT_POISON_NAME``: a worker child whose forward pass includes an image
  uploaded under this name dies in it (SIGKILL), like a process killed for memory.
"""
import os
import signal
import time

from celery.signals import worker_process_init

from petsite.celery import app

__all__ = ["app"]


class _FaultyPredictor:
    def __init__(self, predictor, slow: float, dies: bool):
        self.predictor, self.slow, self.dies = predictor, slow, dies
        self.preprocess = predictor.preprocess

    def classify_preprocessed(self, tensors, k):
        time.sleep(self.slow)
        if self.dies:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.predictor.classify_preprocessed(tensors, k)


@worker_process_init.connect
def _inject_faults(**kwargs) -> None:
    from classifier import classification

    slow = float(os.environ.get("PETSITE_FAULT_SLOW_SECONDS", "0"))
    poison = os.environ.get("PETSITE_FAULT_POISON_NAME", "")
    real = classification._classify_batch

    def faulty(pets, token, version, predictor):
        dies = bool(poison) and any(pet.original_name == poison for pet in pets)
        return real(pets, token, version, _FaultyPredictor(predictor, slow, dies))

    classification._classify_batch = faulty
