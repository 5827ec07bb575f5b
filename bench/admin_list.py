"""The admin's list of photos (the review queue) with many photos: server time per request.

Starts PostgreSQL and gunicorn (1 worker, ``DEBUG=0``) on 127.0.0.1 (``bench/stack.py``;
no Celery worker), fills the database with ``--images`` photos in bulk (``bulk_create``,
all pointing at a few real files: ``bench/gallery.py``'s rows) across ``--users`` owners,
classified by three model versions with a trained model's metrics and history (the size
they have after ``train``), with a mix of verdicts, owners' answers and reviews; then asks each page ``--requests``
times, one request after the other, as a reviewer (staff in the Reviewers group), and
reports the server's time per request from its own request log (``petsite.logs``, the
time inside Django) and the time the client saw. Goal: every page under 300 ms on the
server with 10,000 photos.

    python bench/admin_list.py                    # ~1 minute on 2 cores
    python bench/admin_list.py --images 60 --requests 10
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gallery import SEED, percentile  # noqa: E402
from bench.stack import PASSWORD, Stack, machine_load  # noqa: E402

GOAL_MS = 300
# Three model versions with a trained model's report, as big as train writes it: the
# confusion matrix, the per-breed table, a step per batch in the history (the quick recipe:
# 40 epochs of the head, 58 batches each, on the 3,680 training images at batch size 64).
VERSIONS = """
import random
from django.contrib.auth.models import Group, User
from django.core.files.base import ContentFile
from ml.breeds import BREED_KEYS
from registry.models import ModelVersion

random.seed(0)
n_classes = len(BREED_KEYS)
metrics = {
    "split": "test", "num_images": 3669, "accuracy": 0.9, "error_rate": 0.1, "top5_accuracy": 0.99,
    "classes": BREED_KEYS,
    "per_class": [{"breed": k, "precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 99} for k in BREED_KEYS],
    "most_confused": [{"actual": a, "predicted": b, "count": 3} for a, b in zip(BREED_KEYS, BREED_KEYS[1:])],
    "confusion_matrix": [[random.randint(0, 99) for _ in range(n_classes)] for _ in range(n_classes)],
}
history = {"epochs": [{"epoch": e, "train_loss": 1.0, "valid_loss": 1.0, "accuracy": 0.9} for e in range(5)],
           "steps": [{"step": s, "epoch": s // 58, "stage": "head", "lr": [1e-4, 1e-3, 1e-2], "loss": 0.5}
                     for s in range(40 * 58)]}
for v in range(3):
    ModelVersion.objects.create(name=f"bench-v{v}", file=ContentFile(b"never read", name=f"v{v}.pt"),
                                classes=BREED_KEYS, metrics=metrics, history=history, is_active=v == 2)
reviewer = User.objects.create_user("reviewer", password=PASSWORD, is_staff=True)
reviewer.groups.add(Group.objects.get(name="Reviewers"))
"""
# After the gallery's rows (bench/gallery.py, all by the active version): each version
# classified a third, 30 % of the owners answered (a third of them "wrong"), 20 % reviewed.
MIX = """
UPDATE classifier_petimage SET
  model_version_id = (SELECT id FROM registry_modelversion ORDER BY id LIMIT 1 OFFSET (classifier_petimage.id % 3)),
  is_correct = CASE WHEN id % 10 < 7 THEN NULL ELSE id % 10 < 8 END,
  true_breed = CASE WHEN id % 10 < 7 THEN '' WHEN id % 10 < 8 THEN predicted_breed ELSE 'pug' END,
  reviewed_label = CASE WHEN id % 5 = 0 THEN predicted_breed ELSE '' END,
  reviewed_at = CASE WHEN id % 5 = 0 THEN now() END,
  reviewed_by_id = CASE WHEN id % 5 = 0 THEN (SELECT id FROM auth_user WHERE username = 'reviewer') END
"""

CHANGELIST = "/admin/classifier/petimage/"
PAGES = {
    "admin index (baseline)": "/admin/",
    "photo list, first page (the review queue)": CHANGELIST,
    "photo list, a page in the middle": CHANGELIST + "?p=MIDDLE",
    "photo list, needs review": CHANGELIST + "?review=needed",
    "photo list, owner said wrong, model version filter": CHANGELIST + "?feedback=wrong&model_version__id__exact=1",
    "photo list, sorted by confidence": CHANGELIST + "?o=4",
    "photo list, search for an owner": CHANGELIST + "?q=user3",
}


def server_times(log: Path, since: int) -> list[float]:
    """The request log's times (ms) for the admin's pages, from line ``since`` on."""
    times = []
    for line in log.read_text().splitlines()[since:]:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("logger") == "petsite.request" and event.get("path", "").startswith("/admin/"):
            times.append(float(event["duration_ms"]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--requests", type=int, default=20, help="per page, one after the other")
    args = parser.parse_args()

    print(f"start: {machine_load()}")
    results = []
    with Stack("admin_list", redis="redis://127.0.0.1:6379/4", env={"LOG_FORMAT": "json"}) as stack:
        started = time.monotonic()
        stack.shell(VERSIONS.replace("PASSWORD", repr(PASSWORD)))
        stack.shell(SEED.replace("PASSWORD", repr(PASSWORD)).replace("USERS", str(args.users))
                    .replace("IMAGES", str(args.images)))
        stack.db.execute(MIX)
        print(f"seeded {args.images} photos for {args.users} owners in {time.monotonic() - started:.1f} s")
        stack.db.execute("ANALYZE")
        stack.web(workers=1)
        log = stack.scratch / "gunicorn.log"
        site = stack.site("reviewer")
        pages = {label: path.replace("MIDDLE", str(max(1, args.images // 50 // 2))) for label, path in PAGES.items()}
        for path in pages.values():  # warm-up: templates, connections, PostgreSQL's caches
            for _ in range(2):
                assert site.request("GET", path).status == 200, path
        for label, path in pages.items():
            since = len(log.read_text().splitlines())
            client = []
            for _ in range(args.requests):
                start = time.perf_counter()
                response = site.request("GET", path)
                client.append(1000 * (time.perf_counter() - start))
                assert response.status == 200, (path, response.status)
            time.sleep(0.2)  # the last log line
            server = server_times(log, since)
            assert len(server) == args.requests, (label, len(server))
            results.append((label, path, server, client, len(response.data)))
        print(f"end: {machine_load()}")

    print(f"\n{args.images} photos, {args.users} owners, PostgreSQL, gunicorn 1 worker, "
          f"{args.requests} requests per page one after the other\n")
    print("| page | server p50 ms | server p95 ms | client p50 ms | page KiB | under 300 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, _path, server, client, size in results:
        p95 = percentile(server, 0.95)
        print(f"| {label} | {statistics.median(server):.1f} | {p95:.1f} | {statistics.median(client):.1f} | "
              f"{size / 1024:.0f} | {'yes' if p95 < GOAL_MS else 'no'} |")


if __name__ == "__main__":
    main()
