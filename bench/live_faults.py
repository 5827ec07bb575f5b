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
import signal
import sys
import time
from pathlib import Path

import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import POSTGRES, Peak, Site, Stack, photo  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--burst", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--pixels", type=int, default=18_000_000, help="the pixel limit (PETSITE_MAX_IMAGE_PIXELS)")
    args = parser.parse_args()

    peak = Peak()
    # A Redis server of its own: the third fault restarts it.
    with Stack("live", postgres=args.postgres, redis="own", keep=True) as stack:
        run = FaultRun(stack, peak, args)
        try:
            run.all()
        finally:
            peak.running = False
    run.report()
    print(f"logs: {stack.scratch}")


class FaultRun:
    """The four faults against one running stack, and what each left behind."""

    def __init__(self, stack: Stack, peak: Peak, args: argparse.Namespace):
        self.stack, self.peak, self.args = stack, peak, args
        self.results: list[tuple[str, float, int, int]] = []
        self.burst_peaks: dict[str, int] | None = None
        self.worst: dict[str, float] | None = None
        stack.model(image_size=224)
        stack.users("owner")
        self.web = stack.web(workers=2)
        self.workers = {"w1": stack.worker("w1"), "w2": stack.worker("w2")}
        stack.beat()
        self.site = stack.site("owner")
        for child in psutil.Process(self.web.pid).children():
            peak.watch(f"gunicorn {child.pid}", child.pid)

    def all(self) -> None:
        self.burst("worker child SIGKILLed mid-batch", self.kill_child)
        self.burst("whole worker SIGKILLed, started again", self.kill_worker)
        self.burst("Redis restarted empty during a burst", self.restart_redis)
        self.burst_peaks = dict(self.peak.peaks)
        self.worst = worst_allowed_upload(self.site, self.peak, self.web, self.workers, self.args.pixels)

    def duplicates(self) -> int:
        return self.stack.db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM classifier_classification GROUP BY image_id, model_version_id"
            " HAVING count(*) > 1) AS d"
        ).fetchone()[0]

    def burst(self, label: str, fault) -> None:
        for name, process in self.workers.items():
            for child in psutil.Process(process.pid).children():
                self.peak.watch(f"{name} child {child.pid}", child.pid)
        seed = int(time.time())
        pks = [self.site.upload(f"{label}-{i}.jpg", photo(seed + i)) for i in range(self.args.burst)]
        fault_at = time.monotonic()
        fault()
        while self.stack.unfinished(pks) and time.monotonic() - fault_at < self.args.timeout:
            time.sleep(1)
        self.results.append(
            (label, round(time.monotonic() - fault_at, 1), self.stack.unfinished(pks), self.duplicates())
        )

    def kill_child(self) -> None:
        (child,) = psutil.Process(self.workers["w1"].pid).children()
        os.kill(child.pid, signal.SIGKILL)

    def kill_worker(self) -> None:
        os.killpg(self.workers["w2"].pid, signal.SIGKILL)
        self.workers["w2"].wait()
        time.sleep(2)
        self.workers["w2"] = self.stack.worker("w2", wait=False)

    def restart_redis(self) -> None:
        self.stack.redis.kill()
        time.sleep(2)
        self.stack.redis.start()

    def report(self) -> None:
        print("| fault | seconds until all finished | images lost | duplicate history rows |")
        print("|---|---|---|---|")
        for row in self.results:
            print("| " + " | ".join(str(x) for x in row) + " |")
        print(f"\nburst of {self.args.burst} uploads of 1024x768 JPEGs; peak RSS (MiB):")
        peaks = self.burst_peaks if self.burst_peaks is not None else self.peak.peaks
        for label, rss in sorted(peaks.items()):
            print(f"  {label}: {rss / 2**20:.0f}")
        if self.worst is not None:
            print(f"\nworst allowed upload ({self.args.pixels:,} px RGBA PNG), peak RSS above the process before it "
                  "(MiB):")
            for label, rise in self.worst.items():
                print(f"  {label}: {rise:.0f}")


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
