"""bin/run as a person runs it: the site answers with its workers seen, and stopping bin/run
(SIGTERM, as a process manager or a closed terminal does) stops everything it started."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.conftest import BASE_DIR
from tests.faults.services import free_port
from tests.helpers import wait_for
from tests.load import scaled

pytestmark = pytest.mark.slow
VENV = Path(sys.prefix)


def readiness(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return json.load(response)
    except (OSError, ValueError):
        return {}


@pytest.mark.skipif(not (VENV / ".installed").exists(), reason="runs in the project's own virtualenv (bin/_venv.sh)")
def test_bin_run_serves_and_stops_everything_it_started(tmp_path):
    port = free_port()
    # A fresh machine's environment: nothing names a database, broker or cache, and
    # everything bin/run writes goes to a folder of this test.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PETSITE_", "CELERY_", "DATABASE_", "CACHE_", "DJANGO_"))}
    env.update(PETSITE_VENV=str(VENV), PETSITE_VAR_DIR=str(tmp_path / "var"), PETSITE_ENV_FILE="/dev/null",
               PORT=str(port))
    run = subprocess.Popen([str(BASE_DIR / "bin" / "run")], cwd=BASE_DIR, env=env, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started: list[psutil.Process] = []
    try:
        wait_for(lambda: readiness(port).get("workers", {}).get("classification", {}).get("live"), timeout=120,
                 what="bin/run's site to answer with its classification worker seen")
        body = readiness(port)
        assert body["status"] == "ok", body
        assert body["workers"]["training"]["live"] == 1, body
        started = psutil.Process(run.pid).children(recursive=True)
        names = " ".join(" ".join(process.cmdline()) for process in started)
        assert "runserver" in names, names
        assert "redis-server" in names, names
        assert names.count("celery") >= 2, names

        run.send_signal(signal.SIGTERM)
        run.wait(timeout=scaled(60))
        wait_for(lambda: not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE],
                 timeout=30, what="every process bin/run started to stop")
    finally:
        for process in [*started, psutil.Process(run.pid)] if run.poll() is None else started:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        run.wait(timeout=30)
    assert not [p.pid for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert (tmp_path / "var" / "worker.log").exists()  # its files went where PETSITE_VAR_DIR says
