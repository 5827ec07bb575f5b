"""Test-run setup shared by every test: isolated media, broker and queue.

The suite runs on whatever database and broker the environment names (PostgreSQL and
Redis in CI) and on the embedded defaults when nothing is set; the header of every
run says which. On the embedded default the run starts a Redis server of its own, as
bin/run does (petsite/broker.py), on a unix socket in its scratch folder, and every
process the tests start inherits its URL.
"""
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from petsite.broker import RedisServer
from tests.load import slowness


def pytest_configure(config):
    scratch = Path(tempfile.mkdtemp(prefix="petsite-test-"))
    settings.MEDIA_ROOT = scratch / "media"
    # A queue of its own, so that a run never takes (or leaves) another run's messages.
    settings.CELERY_TASK_DEFAULT_QUEUE = f"petsite-test-{uuid.uuid4().hex[:8]}"
    if settings.PETSITE_EMBEDDED_BROKER:
        config.petsite_broker = _embedded_broker(scratch)
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


def _embedded_broker(scratch: Path) -> RedisServer:
    """The run's own Redis server, as bin/run's; Celery (here and in the workers the tests
    start) reads CELERY_BROKER_URL from the environment before its configuration."""
    server = RedisServer(scratch / "redis.sock", scratch / "redis").start()
    settings.PETSITE_BROKER_SOCKET = server.socket
    settings.CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"] = server.url
    return server


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
    """Leave nothing behind: the run's broker, and its scratch (media, checkpoints)."""
    broker = getattr(config, "petsite_broker", None)
    if broker is not None:
        broker.stop()
    scratch = getattr(config, "petsite_scratch", None)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


def pytest_report_header(config):
    db = settings.DATABASES["default"]
    test_name = db.get("TEST", {}).get("NAME") or f"test_{db['NAME']}"
    where = f" at {db['HOST']}:{db.get('PORT') or 'default port'}" if db.get("HOST") else ""
    broker = settings.CELERY_BROKER_URL.split("@")[-1]  # never print a password
    if getattr(config, "petsite_broker", None) is not None:
        broker += ", the run's own Redis server"
    return [
        f"petsite database: {db['ENGINE'].rsplit('.', 1)[-1]}, test database {test_name}{where}",
        f"petsite broker: {broker} (queue {settings.CELERY_TASK_DEFAULT_QUEUE})",
        f"petsite machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
        f"slowness {config.petsite_slowness:.1f} (time limits x that)",
    ]
