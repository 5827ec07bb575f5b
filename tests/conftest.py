"""Fixtures: users, a random-weight checkpoint, model versions and a real Celery worker."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import torch
from django.conf import settings

from ml.breeds import BREED_KEYS
from ml.checkpoints import save_checkpoint
from ml.model import build_resnet34

BASE_DIR = Path(settings.BASE_DIR)
TEST_IMAGE_SIZE = 64  # small: the worker classifies fast and the file stays the same size


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("bob", password="pw-bob-123")


@pytest.fixture
def reviewer(django_user_model):
    """Staff in the Reviewers group the migration creates: reviews photos and views model
    versions, changes neither."""
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user("ray", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Reviewers"))
    return user


def _random_checkpoint(directory: Path, seed: int) -> Path:
    """A checkpoint of a randomly initialised ResNet34 with the 37-class head (no download)."""
    torch.manual_seed(seed)
    model = build_resnet34(num_classes=len(BREED_KEYS), weights=None)
    path = directory / f"random-resnet34-seed{seed}.pt"
    return save_checkpoint(path, model, classes=BREED_KEYS, image_size=TEST_IMAGE_SIZE, metrics={"accuracy": 0.0})


@pytest.fixture(scope="session")
def checkpoint_file(tmp_path_factory) -> Path:
    return _random_checkpoint(tmp_path_factory.mktemp("checkpoints"), seed=0)


@pytest.fixture(scope="session")
def other_checkpoint_file(tmp_path_factory) -> Path:
    """A second, different model: for reclassification and model-change tests."""
    return _random_checkpoint(tmp_path_factory.mktemp("checkpoints"), seed=1)


@pytest.fixture(scope="session")
def stored_checkpoints(checkpoint_file, other_checkpoint_file) -> dict[str, str]:
    """Both checkpoints copied into media storage once: versions made by the fixtures
    below point at these files instead of copying 85 MB for every test."""
    from django.core.files import File
    from django.core.files.storage import default_storage

    stored = {}
    for key, path in [("random-v1", checkpoint_file), ("random-v2", other_checkpoint_file)]:
        with path.open("rb") as f:
            stored[key] = default_storage.save(f"models/{key}/model.pt", File(f))
    return stored


def _version(name: str, file_name: str, active: bool):
    from registry.models import ModelVersion

    return ModelVersion.objects.create(
        name=name, file=file_name, classes=BREED_KEYS, image_size=TEST_IMAGE_SIZE, metrics={"accuracy": 0.0},
        is_active=active,
    )


@pytest.fixture
def model_version(db, stored_checkpoints):
    """The active model: random weights, registered without a copy (register_model has its own tests)."""
    return _version("random-v1", stored_checkpoints["random-v1"], active=True)


@pytest.fixture
def other_version(db, stored_checkpoints):
    """A second, different model, not active."""
    return _version("random-v2", stored_checkpoints["random-v2"], active=False)


def database_url(db: dict) -> str:
    """The DATABASE_URL of the test database, for a worker running in another process."""
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = quote(db.get("USER") or "")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or ''}{port}/{db['NAME']}"


class WorkerProcess:
    """A real `celery worker` process (in a process group of its own, with its children).

    ``app`` is the Celery app module (the fault tests use one that injects faults),
    ``args`` more worker arguments (a node name, ``--beat``).
    """

    def __init__(self, env: dict[str, str], app: str = "petsite", args: tuple[str, ...] = ()):
        self.lines: list[str] = []
        self.times: list[float] = []  # when each line came (time.monotonic())
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", app, "worker", "--concurrency", "1",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat", *args],
            cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.times.append(time.monotonic())
            self.lines.append(line)
            if " ready." in line:
                self.ready.set()

    def log(self) -> str:
        return "".join(self.lines[-60:])

    def first_line_after(self, since: float, text: str) -> float | None:
        """When the first line containing ``text`` came after ``since`` (monotonic), if one did."""
        for at, line in zip(list(self.times), list(self.lines), strict=False):
            if at >= since and text in line:
                return at
        return None

    def children(self) -> list[int]:
        """Pids of the pool's child processes (the ones that classify)."""
        import psutil

        try:
            return [child.pid for child in psutil.Process(self.process.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the worker and its children at once, as a crashed machine would."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=20)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


def worker_env(**overrides: str) -> dict[str, str]:
    """The environment of a worker process on the test database, media and broker."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "PETSITE_TORCH_THREADS": "1",
        # Temporary files of killed workers land in the run's scratch folder, removed at the end.
        "TMPDIR": str(_scratch_tmp()),
    }
    return {**env, **overrides}


def _scratch_tmp() -> Path:
    folder = Path(settings.MEDIA_ROOT).parent / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """Start one worker for the session, after the test database exists.

    Tests that use it must be ``django_db(transaction=True)``: the worker is another
    process and sees committed rows only.
    """
    env = worker_env()
    worker = WorkerProcess(env)
    if not worker.ready.wait(timeout=90):
        worker.stop()
        pytest.fail("Celery worker did not start:\n" + worker.log())
    yield worker
    worker.stop()


@pytest.fixture
def worker(celery_worker, transactional_db):
    """The session's worker, for one transactional test; a test fails if the worker died."""
    yield celery_worker
    if celery_worker.process.poll() is not None:
        pytest.fail("The Celery worker died:\n" + celery_worker.log())


@pytest.fixture
def cpu_load(record_property):
    """The CPU saturated for the test: twice as many spinning processes as cores (at least
    four), started before the test and stopped after it (``tests.load.CpuLoad``).

    ``PETSITE_FAULT_LOAD=0`` leaves the machine as it is (no load process), to measure
    the quiet figures of the same tests. The load average at the end of the test is
    recorded as a junit property, beside the test's own figures.
    """
    from tests.load import CpuLoad

    load = None if os.environ.get("PETSITE_FAULT_LOAD") == "0" else CpuLoad().start()
    try:
        yield load
        record_property("busy_processes", load.count if load else 0)
        record_property("load_average", round(os.getloadavg()[0], 1))
    finally:
        if load is not None:
            load.stop()
