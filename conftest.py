"""Test-run setup shared by every test: isolated media, broker folder and queue.

The suite runs on whatever database and broker the environment names (PostgreSQL and
Redis in CI) and on the embedded defaults when nothing is set; the header of every
run says which.
"""
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from tests.load import slowness


def pytest_configure(config):
    scratch = Path(tempfile.mkdtemp(prefix="petsite-test-"))
    settings.MEDIA_ROOT = scratch / "media"
    # A queue of its own, so that a run never takes (or leaves) another run's messages.
    settings.CELERY_TASK_DEFAULT_QUEUE = f"petsite-test-{uuid.uuid4().hex[:8]}"
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        settings.PETSITE_BROKER_DIR = scratch / "broker"
        settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
            **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            "data_folder_in": str(settings.PETSITE_BROKER_DIR),
            "data_folder_out": str(settings.PETSITE_BROKER_DIR),
            "control_folder": str(settings.PETSITE_BROKER_DIR / "control"),
        }
    # Real password hashing costs a quarter of a second per user; tests need no security.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    config.petsite_scratch = scratch
    # How slow the machine is as the run starts: per-test time limits (pytest-timeout, a
    # guard against hangs) are stretched by it, so that a busy machine does not fail them.
    # PETSITE_TEST_SLOWNESS sets it by hand.
    config.petsite_slowness = float(os.environ.get("PETSITE_TEST_SLOWNESS") or slowness())
    _no_downloads(scratch)
    # Hypothesis keeps its files (constants it found in the code) in the scratch too.
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(scratch / "hypothesis")


def _no_downloads(scratch: Path) -> None:
    """Hermetic tests: an empty torch hub cache and no downloads, with or without
    internet or cached ImageNet weights on the machine (subprocesses inherit TORCH_HOME)."""
    from urllib.error import URLError

    import torch.hub

    os.environ["TORCH_HOME"] = str(scratch / "torch")

    def refuse(url, *args, **kwargs):
        raise URLError(f"downloads are disabled in tests ({url})")

    torch.hub.download_url_to_file = refuse


def pytest_collection_modifyitems(config, items):
    """Every test's time limit (its own ``timeout`` mark, else the ini's) times the slowness."""
    factor = config.petsite_slowness
    default = float(config.getini("timeout") or 0)
    if factor <= 1 or not default:
        return
    for item in items:
        marker = item.get_closest_marker("timeout")
        seconds = default
        if marker is not None:
            seconds = float(marker.args[0] if marker.args else marker.kwargs.get("timeout", default))
        item.add_marker(pytest.mark.timeout(seconds * factor), append=False)


def pytest_unconfigure(config):
    """Leave no scratch behind: media, broker folder and checkpoints of the run."""
    scratch = getattr(config, "petsite_scratch", None)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


def pytest_report_header(config):
    db = settings.DATABASES["default"]
    test_name = db.get("TEST", {}).get("NAME") or f"test_{db['NAME']}"
    where = f" at {db['HOST']}:{db.get('PORT') or 'default port'}" if db.get("HOST") else ""
    broker = settings.CELERY_BROKER_URL.split("@")[-1]  # never print a password
    return [
        f"petsite database: {db['ENGINE'].rsplit('.', 1)[-1]}, test database {test_name}{where}",
        f"petsite broker: {broker} (queue {settings.CELERY_TASK_DEFAULT_QUEUE})",
        f"petsite machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
        f"slowness {config.petsite_slowness:.1f} (time limits x that)",
    ]
