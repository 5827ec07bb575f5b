"""Faults against a running deployment, with the default settings: what docs/reliability.md reports.

Starts everything on 127.0.0.1 on its own: a fresh PostgreSQL database (on the server
of --postgres), a Redis server of its own on a free port, gunicorn (2 workers), two
Celery workers (one child each) and beat. Then, through the real upload endpoint:

1. a burst of uploads while one worker's child is SIGKILLed mid-batch,
2. a burst while a whole worker is SIGKILLed and started again,
3. a burst while the Redis server restarts empty (every queued message lost),
4. the worst upload the limits allow, watching the web and worker processes' memory.

For each: seconds until every image is finished, images lost (not finished after the
timeout), duplicate history rows, and peak RSS. Everything stops by itself.

    python bench/live_faults.py [--postgres postgres://postgres@127.0.0.1:5432] [--burst 40]
"""
from __future__ import annotations

import argparse
import io
import os
import re
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


def photo(seed: int, size=(1024, 768)) -> bytes:
    image = Image.radial_gradient("L").resize(size).convert("RGB")
    image.paste((seed * 37 % 256, seed * 91 % 256, 120), (0, 0, size[0] // 3, size[1] // 3))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class Site:
    """A logged-in visitor of the running site (cookies and CSRF by hand, urllib3)."""

    def __init__(self, base: str):
        self.base, self.http, self.cookies = base, urllib3.PoolManager(), {}

    def request(self, method: str, path: str, **kwargs) -> urllib3.BaseHTTPResponse:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), "Referer": self.base + path}
        response = self.http.request(method, self.base + path, headers=headers, redirect=False, **kwargs)
        for header in response.headers.getlist("Set-Cookie"):
            name, value = header.split(";", 1)[0].split("=", 1)
            self.cookies[name] = value
        return response

    def csrf(self, path: str) -> str:
        page = self.request("GET", path).data.decode()
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    def login(self, username: str, password: str) -> None:
        token = self.csrf("/accounts/login/")
        response = self.request("POST", "/accounts/login/", fields={
            "csrfmiddlewaretoken": token, "username": username, "password": password})
        assert response.status == 302, response.status

    def upload(self, name: str, content: bytes) -> int:
        token = self.csrf("/upload/")
        response = self.request("POST", "/upload/", fields={
            "csrfmiddlewaretoken": token, "image": (name, content, "image/jpeg")})
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--burst", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--pixels", type=int, default=18_000_000, help="the pixel limit (PETSITE_MAX_IMAGE_PIXELS)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="petsite-live-"))
    database = f"petsite_live_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", args.postgres + "/postgres", "-qc", f"CREATE DATABASE {database}"], check=True)
    redis = RedisServer(scratch)
    redis.start()
    port = free_port()
    env = {
        **os.environ, "DATABASE_URL": f"{args.postgres}/{database}", "CELERY_BROKER_URL": redis.url,
        "SECRET_KEY": uuid.uuid4().hex * 2, "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1",
        "MEDIA_ROOT": str(scratch / "media"), "PETSITE_VAR_DIR": str(scratch), "PETSITE_UPLOAD_RATE": "10000/m",
        "DJANGO_SETTINGS_MODULE": "petsite.settings",
    }
    processes: list[subprocess.Popen] = []

    def start(*command: str, log: str) -> subprocess.Popen:
        with (scratch / log).open("w") as out:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        processes.append(process)
        return process

    def manage(*command: str) -> str:
        return subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True,
                              capture_output=True, text=True).stdout

    def worker(name: str) -> subprocess.Popen:
        return start(sys.executable, "-m", "celery", "-A", "petsite", "worker", "-n", f"{name}@%h", "--loglevel",
                     "INFO", "--concurrency", "1", log=f"{name}.log")

    results = []
    peak = Peak()
    try:
        manage("migrate", "--noinput")
        manage("shell", "-c", (
            "import torch; from ml.model import build_resnet34; from ml.checkpoints import save_checkpoint;"
            "from ml.breeds import BREED_KEYS; from django.contrib.auth.models import User;"
            f"save_checkpoint('{scratch}/model.pt', build_resnet34(weights=None), classes=BREED_KEYS);"
            "User.objects.create_user('owner', password='a-Long-pass-42')"))
        manage("import_model", str(scratch / "model.pt"), "--name", "bench", "--activate")
        web = start(sys.executable, "-m", "gunicorn", "petsite.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                    log="gunicorn.log")
        workers = {"w1": worker("w1"), "w2": worker("w2")}
        start(sys.executable, "-m", "celery", "-A", "petsite", "beat", "--schedule", str(scratch / "beat"),
              log="beat.log")
        time.sleep(8)
        site = Site(f"http://127.0.0.1:{port}")
        site.login("owner", "a-Long-pass-42")
        for child in psutil.Process(web.pid).children():
            peak.watch(f"gunicorn {child.pid}", child.pid)

        db = psycopg.connect(env["DATABASE_URL"].replace("postgres://", "postgresql://"), autocommit=True)

        def unfinished(pks) -> int:
            return db.execute(
                "SELECT count(*) FROM classifier_petimage WHERE id = ANY(%s) AND status IN ('pending', 'processing')",
                [list(pks)],
            ).fetchone()[0]

        def duplicates() -> int:
            return db.execute(
                "SELECT count(*) FROM (SELECT 1 FROM classifier_classification GROUP BY image_id, model_version_id"
                " HAVING count(*) > 1) AS d"
            ).fetchone()[0]

        def burst(label: str, fault) -> None:
            for name, process in workers.items():
                for child in psutil.Process(process.pid).children():
                    peak.watch(f"{name} child {child.pid}", child.pid)
            seed = int(time.time())
            pks = [site.upload(f"{label}-{i}.jpg", photo(seed + i)) for i in range(args.burst)]
            fault_at = time.monotonic()
            fault()
            while unfinished(pks) and time.monotonic() - fault_at < args.timeout:
                time.sleep(1)
            results.append((label, round(time.monotonic() - fault_at, 1), unfinished(pks), duplicates()))

        def kill_child() -> None:
            (child,) = psutil.Process(workers["w1"].pid).children()
            os.kill(child.pid, signal.SIGKILL)

        def kill_worker() -> None:
            os.killpg(workers["w2"].pid, signal.SIGKILL)
            workers["w2"].wait()
            time.sleep(2)
            workers["w2"] = worker("w2")

        def restart_redis() -> None:
            redis.kill()
            time.sleep(2)
            redis.start()

        burst("worker child SIGKILLed mid-batch", kill_child)
        burst("whole worker SIGKILLed, started again", kill_worker)
        burst("Redis restarted empty during a burst", restart_redis)
        burst_peaks = dict(peak.peaks)
        worst = worst_allowed_upload(site, peak, web, workers, args.pixels)
    finally:
        peak.running = False
        if "db" in locals():
            db.close()
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        redis.kill()
        time.sleep(1)
        subprocess.run(["psql", args.postgres + "/postgres", "-qc", f"DROP DATABASE IF EXISTS {database}"])
    print("| fault | seconds until all finished | images lost | duplicate history rows |")
    print("|---|---|---|---|")
    for row in results:
        print("| " + " | ".join(str(x) for x in row) + " |")
    print(f"\nburst of {args.burst} uploads of 1024x768 JPEGs; peak RSS (MiB):")
    for label, rss in sorted(locals().get("burst_peaks", peak.peaks).items()):
        print(f"  {label}: {rss / 2**20:.0f}")
    if "worst" in locals():
        print(f"\nworst allowed upload ({args.pixels:,} px RGBA PNG), peak RSS above the process before it (MiB):")
        for label, rise in worst.items():
            print(f"  {label}: {rise:.0f}")
    print(f"logs: {scratch}")


def worst_allowed_upload(site: Site, peak: Peak, web, workers, pixels: int) -> dict[str, float]:
    """Upload an RGBA PNG at the pixel limit (a few KiB of flat colour) and compare each web
    and worker process's peak RSS with its RSS just before."""
    side = int(pixels**0.5)
    image = Image.new("RGBA", (side, pixels // side), (200, 120, 40, 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    del image
    processes = {f"gunicorn {c.pid}": c for c in psutil.Process(web.pid).children()}
    for name, process in workers.items():
        processes.update({f"{name} child {c.pid}": c for c in psutil.Process(process.pid).children()})
    before = {label: process.memory_info().rss for label, process in processes.items()}
    peak.peaks = {}
    peak.processes = dict(processes)
    time.sleep(0.2)
    pk = site.upload("worst.png", buffer.getvalue())
    time.sleep(8)  # the worker reads it
    del pk
    return {label: (peak.peaks.get(label, rss) - rss) / 2**20 for label, rss in before.items()}


if __name__ == "__main__":
    main()
