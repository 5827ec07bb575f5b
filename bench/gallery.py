"""Gallery pages and thumbnails under load, against the log-in page as the baseline.

Starts PostgreSQL and gunicorn with 2 workers on 127.0.0.1 (``bench/stack.py``; no
Celery worker: nothing is classified), fills the database with ``--images`` classified
photos across ``--users`` users (rows made in bulk, all pointing at a few real files), and
then, for each page, runs 1 and then ``--clients`` concurrent clients (threads, each a
logged-in session with keep-alive) for ``--seconds``: the log-in page (the baseline: a
small template, no query), the first gallery page, a page in the middle, a filtered and
sorted page, and thumbnails (one owner's, in turn). Reports requests/s, p50 and p95 per
page and concurrency, and the gunicorn workers' RSS. Goals: gallery >= 0.7 x the log-in
page's requests/s; one-client p95 <= 15 ms; each web worker's RSS < 150 MB.

The client threads share the two cores with gunicorn and PostgreSQL (as in production
behind a proxy, they are not free); the figures are for this machine as it was.

    python bench/gallery.py                   # ~1.5 minutes on 2 cores
    python bench/gallery.py --seconds 2 --clients 10
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Site, Stack, children, machine_load, rss_mib  # noqa: E402

SEED = """
import io, random, hashlib
from datetime import timedelta
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image
from classifier.models import PetImage
from ml.breeds import BREED_KEYS
from registry.models import ModelVersion

random.seed(0)
version = ModelVersion.objects.get(is_active=True)
files = []
for i in range(20):
    image = Image.new("RGB", (1024, 768), (i * 12 % 256, 90, 160))
    thumb = image.resize((320, 240))
    def saved(img, prefix):
        buffer = io.BytesIO(); img.save(buffer, "JPEG", quality=85)
        return default_storage.save(f"{prefix}/seed-{i}.jpg", ContentFile(buffer.getvalue()))
    files.append((saved(image, "images"), saved(thumb, "thumbnails")))
users = [User.objects.create_user(f"user{u}", password=PASSWORD) for u in range(USERS)]
now = timezone.now()
rows = []
for n in range(IMAGES):
    image, thumb = files[n % len(files)]
    ranked = random.sample(BREED_KEYS, 5)
    probs = sorted((random.random() for _ in range(5)), reverse=True)
    total = sum(probs) * 1.2
    top = [{"breed": b, "probability": p / total} for b, p in zip(ranked, probs)]
    rows.append(PetImage(
        owner=users[n % USERS], image=image, thumbnail=thumb, original_name=f"pet-{n}.jpg",
        sha256=hashlib.sha256(str(n).encode()).hexdigest(), width=1024, height=768,
        uploaded_at=now - timedelta(minutes=n), status="done", predicted_breed=ranked[0],
        confidence=top[0]["probability"], top_k=top, model_version=version, classified_at=now,
        verdict=random.choice(["confident", "unsure", "not_a_pet"]),
    ))
PetImage.objects.bulk_create(rows, batch_size=1000)
print(list(PetImage.objects.filter(owner=users[0]).order_by("-uploaded_at").values_list("pk", flat=True)[:200]))
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def hammer(sites: list[Site], paths: list[str], seconds: float) -> tuple[int, list[float], set[int]]:
    """Each site requests the paths in turn for ``seconds``; (requests, latencies, statuses)."""
    latencies: list[list[float]] = [[] for _ in sites]
    statuses: set[int] = set()
    deadline = time.monotonic() + seconds

    def run(index: int) -> None:
        site, mine, i = sites[index], latencies[index], index
        while time.monotonic() < deadline:
            start = time.perf_counter()
            response = site.request("GET", paths[i % len(paths)])
            mine.append(time.perf_counter() - start)
            statuses.add(response.status)
            i += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(sites))]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    merged = [value for values in latencies for value in values]
    return len(merged) / elapsed, merged, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=4.0, help="per page and concurrency")
    args = parser.parse_args()

    print(f"start: {machine_load()}")
    results = []
    with Stack("gallery") as stack:
        stack.model(image_size=64)  # the gallery shows the active model's results
        started = time.monotonic()
        out = stack.shell(SEED.replace("PASSWORD", repr("a-Long-pass-42")).replace("USERS", str(args.users))
                          .replace("IMAGES", str(args.images)))
        pks = json.loads(out.strip().splitlines()[-1])  # the seed's last line: the first owner's ids
        print(f"seeded {args.images} images for {args.users} users in {time.monotonic() - started:.1f} s")
        stack.db.execute("ANALYZE")
        web = stack.web(workers=2)
        per_user = args.images // args.users
        middle = max(1, per_user // 24 // 2)
        pages = {
            "log-in page (baseline, anonymous)": ["/accounts/login/"],
            "gallery, first page": ["/"],
            f"gallery, page {middle}": [f"/?page={middle}"],
            "gallery, filtered (cats, confidence >= 0.3, most confident first)":
                ["/?species=cat&min_confidence=0.3&sort=confident"],
            "thumbnails": [f"/images/{pk}/thumbnail/" for pk in pks[:100]],
        }
        anonymous = [Site(stack.base) for _ in range(args.clients)]
        logged_in = [stack.site("user0", maxsize=2) for _ in range(args.clients)]
        for paths in pages.values():  # warm-up: templates, connections, PostgreSQL's caches
            hammer(logged_in[:2], paths, 0.5)
        for label, paths in pages.items():
            sites = anonymous if label.startswith("log-in") else logged_in
            for clients in (1, args.clients):
                rate, latencies, statuses = hammer(sites[:clients], paths, args.seconds)
                results.append((label, clients, rate, statuses, latencies))
        rss = {child.pid: rss_mib(child.pid) for child in children(web)}
        print(f"end: {machine_load()}")

    print(f"\n{args.images} images, {args.users} users ({per_user} each), gunicorn 2 workers, "
          f"{args.seconds:g} s per row\n")
    print("| page | clients | requests/s | p50 ms | p95 ms | vs log-in page | statuses |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    baseline = {clients: rate for label, clients, rate, _, _ in results if label.startswith("log-in")}
    for label, clients, rate, statuses, latencies in results:
        print(f"| {label} | {clients} | {rate:.0f} | {1000 * statistics.median(latencies):.1f} | "
              f"{1000 * percentile(latencies, 0.95):.1f} | {rate / baseline[clients]:.2f} | "
              f"{','.join(map(str, sorted(statuses)))} |")
    print("\nweb workers' RSS after the run: " + ", ".join(f"{pid}: {mib:.0f} MiB" for pid, mib in rss.items())
          + " (goal < 150 MB)")


if __name__ == "__main__":
    main()
