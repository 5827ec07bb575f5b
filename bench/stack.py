"""A running deployment on 127.0.0.1 for the benchmarks: one place that starts and stops it.

``Stack`` makes a fresh PostgreSQL database, uses a Redis database of its own (a number on
the machine's server, emptied first) or starts a private ``redis-server`` (for benchmarks
that restart it), migrates, and starts gunicorn, Celery workers and beat as the
deployment runs them (``DEBUG=0``, the default worker settings unless told otherwise).
Every process runs in a process group of its own; ``close()`` (or leaving the ``with``
block, also on Ctrl-C) kills every group, drops the database, empties the Redis database
and removes the scratch folder unless ``keep`` is set. Traffic goes to 127.0.0.1 only.

``Site`` is a logged-in visitor (cookies and CSRF by hand, urllib3); ``Peak`` samples
processes' RSS; ``photo`` makes a camera-like JPEG.
"""
from __future__ import annotations

import fcntl
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import psycopg
import urllib3
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults.services import RedisServer, free_port  # noqa: E402

POSTGRES = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/5")  # the perf helper's database number
PASSWORD = "a-Long-pass-42"


def photo(seed: int, size: tuple[int, int] = (1024, 768)) -> bytes:
    """A JPEG like a downscaled phone photo: a gradient, a coloured block, some noise."""
    image = Image.radial_gradient("L").resize(size).convert("RGB")
    image.paste((seed * 37 % 256, seed * 91 % 256, 120), (0, 0, size[0] // 3, size[1] // 3))
    noise = Image.effect_noise((size[0] // 4, size[1] // 4), 40).resize(size).convert("RGB")
    image = Image.blend(image, noise, 0.2)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class Site:
    """A logged-in visitor of the running site (cookies and CSRF by hand, urllib3).

    One instance per thread (urllib3's pool is thread-safe, the cookie jar here is not)."""

    def __init__(self, base: str, maxsize: int = 4):
        self.base, self.http, self.cookies = base, urllib3.PoolManager(maxsize=maxsize), {}

    def request(self, method: str, path: str, **kwargs) -> urllib3.BaseHTTPResponse:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), "Referer": self.base + path,
                   **kwargs.pop("headers", {})}
        response = self.http.request(method, self.base + path, headers=headers, redirect=False, **kwargs)
        for header in response.headers.getlist("Set-Cookie"):
            name, value = header.split(";", 1)[0].split("=", 1)
            self.cookies[name] = value
        return response

    def csrf(self, path: str) -> str:
        page = self.request("GET", path).data.decode()
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    def login(self, username: str, password: str = PASSWORD) -> None:
        token = self.csrf("/accounts/login/")
        response = self.request("POST", "/accounts/login/", fields={
            "csrfmiddlewaretoken": token, "username": username, "password": password})
        assert response.status == 302, response.status
        self.token = self.csrf("/upload/")

    def upload(self, name: str, content: bytes) -> int:
        """One photo through the upload form (as the page's script sends it); its id."""
        response = self.request("POST", "/upload/", fields={
            "csrfmiddlewaretoken": self.token, "image": (name, content, "image/jpeg")})
        assert response.status == 302, (response.status, response.data[:300])
        return int(re.search(r"/images/(\d+)/", response.headers["Location"]).group(1))


class Peak:
    """Samples the RSS of processes every 50 ms and keeps each one's peak."""

    def __init__(self):
        self.peaks: dict[str, int] = {}
        self.processes: dict[str, psutil.Process] = {}
        self.running = True
        threading.Thread(target=self._run, daemon=True).start()

    def watch(self, label: str, pid: int) -> None:
        self.processes[label] = psutil.Process(pid)

    def _run(self) -> None:
        while self.running:
            for label, process in list(self.processes.items()):
                try:
                    rss = process.memory_info().rss
                except psutil.Error:
                    continue
                self.peaks[label] = max(self.peaks.get(label, 0), rss)
            time.sleep(0.05)


def children(process: subprocess.Popen) -> list[psutil.Process]:
    """A gunicorn master's or Celery worker's child processes (the ones doing the work)."""
    try:
        return psutil.Process(process.pid).children()
    except psutil.NoSuchProcess:
        return []


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


class Stack:
    """PostgreSQL + Redis + gunicorn + Celery on 127.0.0.1, for one benchmark run.

    ``redis="own"`` starts a private redis-server (it can then be restarted: ``self.redis``);
    otherwise a Redis URL whose database is emptied at start and at the end.
    """

    def __init__(self, name: str = "bench", *, postgres: str = POSTGRES, redis: str = REDIS,
                 env: dict[str, str] | None = None, keep: bool = False):
        self.scratch = Path(tempfile.mkdtemp(prefix=f"petsite-{name}-"))
        self.database = f"petsite_{name}_{uuid.uuid4().hex[:6]}"
        self.postgres, self.keep = postgres, keep
        self.redis: RedisServer | None = None
        if redis == "own":
            self.redis = RedisServer(self.scratch)
            self.redis.start()
            self.redis_url = self.redis.url
        else:
            self.redis_url = redis
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []
        self.env = {
            **os.environ, "DATABASE_URL": f"{postgres}/{self.database}", "CELERY_BROKER_URL": self.redis_url,
            "SECRET_KEY": uuid.uuid4().hex * 2, "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1",
            "MEDIA_ROOT": str(self.scratch / "media"), "PETSITE_VAR_DIR": str(self.scratch),
            "PETSITE_UPLOAD_RATE": "100000/m", "DJANGO_SETTINGS_MODULE": "petsite.settings",
            "PETSITE_ENV_FILE": "/nonexistent", **(env or {}),
        }
        self.db: psycopg.Connection | None = None
        self._lock = None

    # --- lifetime -----------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        if self.redis is None:  # one stack at a time on a shared Redis database: it empties it
            lock_name = f"petsite-bench-{self.redis_url.replace('/', '_')}.lock"
            self._lock = (Path(tempfile.gettempdir()) / lock_name).open("w")
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._lock.close()
                shutil.rmtree(self.scratch, ignore_errors=True)
                raise RuntimeError(f"Another benchmark is using {self.redis_url}: run one at a time, or give this "
                                   "one another database with BENCH_REDIS=redis://127.0.0.1:6379/<n>.") from None
        self._flush_redis()
        subprocess.run(["psql", f"{self.postgres}/postgres", "-qc", f"CREATE DATABASE {self.database}"], check=True)
        self.manage("migrate", "--noinput")
        self.db = psycopg.connect(self.env["DATABASE_URL"].replace("postgres://", "postgresql://"), autocommit=True)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and exc_type is not KeyboardInterrupt:
            self.keep = True  # the logs say what went wrong
            print(f"bench stack failed; logs kept in {self.scratch}", file=sys.stderr)
        self.close()

    def close(self) -> None:
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        self.processes.clear()
        if self.db is not None:
            self.db.close()
            self.db = None
        if self.redis is not None:
            self.redis.kill()
        else:
            self._flush_redis()
            if self._lock is not None:
                self._lock.close()  # releases the lock
        subprocess.run(["psql", f"{self.postgres}/postgres", "-qc", f"DROP DATABASE IF EXISTS {self.database}"],
                       check=False)
        if not self.keep:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _flush_redis(self) -> None:
        if self.redis is None:
            import redis

            redis.Redis.from_url(self.redis_url).flushdb()

    # --- processes ----------------------------------------------------------------------------

    def start(self, *command: str, log: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        with (self.scratch / log).open("a") as out:
            process = subprocess.Popen(command, cwd=ROOT, env={**self.env, **(env or {})}, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def manage(self, *command: str, input: str | None = None) -> str:
        return subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=self.env, check=True,
                              capture_output=True, text=True, input=input).stdout

    def shell(self, code: str) -> str:
        """Python run by ``manage.py shell`` against this stack's database and media."""
        return self.manage("shell", "-c", code)

    def web(self, workers: int = 2) -> subprocess.Popen:
        process = self.start(sys.executable, "-m", "gunicorn", "petsite.wsgi", "--bind", f"127.0.0.1:{self.port}",
                             "--workers", str(workers), log="gunicorn.log")
        deadline = time.monotonic() + 180  # the first request imports the site: slow on a busy machine
        while time.monotonic() < deadline:
            try:
                if urllib3.request("GET", self.base + "/accounts/login/", retries=False).status == 200:
                    return process
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer; see {self.scratch / 'gunicorn.log'}")

    def worker(self, name: str = "w1", concurrency: int = 1, env: dict[str, str] | None = None,
               wait: bool = True) -> subprocess.Popen:
        log = f"{name}.log"
        process = self.start(sys.executable, "-m", "celery", "-A", "petsite", "worker", "-n", f"{name}@%h",
                             "--loglevel", "INFO", "--concurrency", str(concurrency), "--without-gossip",
                             "--without-mingle", log=log, env=env)
        if wait:
            deadline = time.monotonic() + 90
            while " ready." not in (self.scratch / log).read_text():
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"worker {name} did not start; see {self.scratch / log}")
                time.sleep(0.2)
        return process

    def beat(self) -> subprocess.Popen:
        return self.start(sys.executable, "-m", "celery", "-A", "petsite", "beat", "--schedule",
                          str(self.scratch / "beat"), log="beat.log")

    # --- data ---------------------------------------------------------------------------------

    def model(self, image_size: int = 224, seed: int = 0) -> Path:
        """A random-weight ResNet34 checkpoint (37 breeds), imported and active; its path."""
        path = self.scratch / "model.pt"
        self.shell(
            "import torch; from ml.model import build_resnet34; from ml.checkpoints import save_checkpoint;"
            f"from ml.breeds import BREED_KEYS; torch.manual_seed({seed});"
            f"save_checkpoint('{path}', build_resnet34(weights=None), classes=BREED_KEYS, image_size={image_size})")
        self.manage("import_model", str(path), "--name", "bench", "--activate")
        return path

    def users(self, *names: str) -> None:
        self.shell("from django.contrib.auth.models import User\n"
                   f"for name in {list(names)!r}: User.objects.create_user(name, password={PASSWORD!r})")

    def site(self, user: str = "owner", maxsize: int = 4) -> Site:
        site = Site(self.base, maxsize=maxsize)
        site.login(user)
        return site

    def unfinished(self, pks) -> int:
        return self.db.execute(
            "SELECT count(*) FROM classifier_petimage WHERE id = ANY(%s) AND status IN ('pending', 'processing')",
            [list(pks)],
        ).fetchone()[0]

    def wait_done(self, pks, timeout: float = 300, poll: float = 0.05) -> float:
        """Seconds until none of ``pks`` is pending or processing (the timeout if never)."""
        start = time.monotonic()
        while self.unfinished(pks) and time.monotonic() - start < timeout:
            time.sleep(poll)
        return time.monotonic() - start


def machine_load() -> str:
    """The load average (other helpers' work shares these cores), for the report."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"
