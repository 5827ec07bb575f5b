"""Workers on ``PETSITE_INFERENCE_BACKEND=auto`` and photos sent to them: the model-change
tests (tests/registry/test_warmup_worker.py, tests/faults/test_model_change.py)."""
from __future__ import annotations

import uuid
from pathlib import Path
from unittest import mock

import pytest

from classifier import tasks
from tests.conftest import WorkerProcess, worker_env
from tests.helpers import store_photo, upload


class AutoWorker(WorkerProcess):
    """A real worker that chooses its backend (``auto``), with a backend cache of its own
    (nothing measured before) and a queue of its own (no other test's worker takes its photos)."""

    def __init__(self, cache_dir: Path, **env: str):
        self.queue = f"petsite-auto-{uuid.uuid4().hex[:8]}"
        super().__init__(worker_env(PETSITE_INFERENCE_BACKEND="auto", PETSITE_BACKEND_CACHE_DIR=str(cache_dir),
                                    CELERY_TASK_DEFAULT_QUEUE=self.queue, **env),
                         args=("-n", f"{self.queue}@%h"))
        if not self.ready.wait(timeout=120):
            self.kill()
            pytest.fail("Celery worker did not start:\n" + self.log())

    def send(self, pks: list[int]) -> None:
        """Ask this worker to classify ``pks`` with the active model, as an upload does."""
        for pk in pks:
            tasks.classify_image.apply_async((pk,), queue=self.queue)

    def full_log(self) -> str:
        return "".join(self.lines)


def stored_photos(user, count: int, prefix: str = "pet") -> list[int]:
    """Uploads stored as the site stores them, their messages not sent yet (a test sends them
    to its own worker's queue)."""
    pks = []
    with mock.patch.object(tasks, "send", return_value=True):
        for i in range(count):
            file = upload(f"{prefix}-{i}.jpg")
            pks.append(store_photo(user, file).pk)
    return pks
