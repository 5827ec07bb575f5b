"""Container health checks for compose.yaml: ``python docker/healthcheck.py ROLE [NODE]``.

web     /readyz answers 200 (database, broker and storage answer).
worker  the Celery worker of this container answers a ping (node NODE@hostname; NODE is
        "celery" unless given, "trainer" for the training worker).
beat    beat wrote its schedule file within BEAT_STALE_SECONDS (it rewrites it at least
        every three minutes while it sends tasks).
Exit status 0 when healthy, 1 otherwise, with one line saying why.
"""
from __future__ import annotations

import glob
import os
import socket
import sys
import time
import urllib.error
import urllib.request

BEAT_STALE_SECONDS = 10 * 60


def web() -> str | None:
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return None if response.status == 200 else f"{url} answered {response.status}"
    except urllib.error.HTTPError as error:
        return f"{url} answered {error.code}: {error.read().decode(errors='replace')}"
    except OSError as error:
        return f"{url}: {error}"


def worker(node: str = "celery") -> str | None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from petsite.celery import app

    name = f"{node}@{socket.gethostname()}"
    replies = app.control.ping([name], timeout=5)
    return None if any(name in reply for reply in replies) else f"{name} did not answer a ping"


def beat() -> str | None:
    pattern = os.environ.get("PETSITE_BEAT_SCHEDULE", "/app/var/beat/celerybeat-schedule") + "*"
    ages = [time.time() - os.path.getmtime(path) for path in glob.glob(pattern)]
    if not ages:
        return f"no schedule file {pattern}"
    return None if min(ages) < BEAT_STALE_SECONDS else f"schedule not written for {min(ages):.0f} s"


def main(argv: list[str]) -> int:
    checks = {"web": web, "worker": worker, "beat": beat}
    if not argv or argv[0] not in checks:
        print(f"usage: healthcheck.py {'|'.join(checks)} [NODE]", file=sys.stderr)
        return 2
    problem = checks[argv[0]](*argv[1:])
    print(problem or "healthy")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
