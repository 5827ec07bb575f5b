"""The admin's list of photos (the review queue) with many photos: server time per request.

Starts PostgreSQL and gunicorn (1 worker, ``DEBUG=0``) on 127.0.0.1 (``bench/stack.py``;
no Celery worker), fills the database with ``--images`` photos in bulk (``bulk_create``,
all pointing at a few real files) across ``--users`` owners, each classified by a model
version with a trained model's metrics and history (the size they have after ``train``),
a mix of verdicts, owners' answers and reviews (a third of the photos each, by
three versions); then asks each page ``--requests``
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

from bench.stack import PASSWORD, Stack, machine_load  # noqa: E402

GOAL_MS = 300
SEED = """
import hashlib, io, random
from datetime import timedelta
from django.contrib.auth.models import Group, User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image
from classifier.models import NOT_A_PET, PetImage
from ml.breeds import BREED_KEYS
from ml.models import ModelVersion

random.seed(0)
n_classes = len(BREED_KEYS)
# A trained model's report, as big as train writes it: the confusion matrix, the per-breed
# table, a step per batch in the history (the quick recipe: 40 epochs of the head, 58
# batches each, on the 3,680 training images at batch size 64).
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
versions = [
    ModelVersion.objects.create(name=f"bench-v{v}", file=ContentFile(b"never read", name=f"v{v}.pt"),
                                classes=BREED_KEYS, metrics=metrics, history=history, is_active=v == 2)
    for v in range(3)
]
files = []
for i in range(20):
    image = Image.new("RGB", (1024, 768), (i * 12 % 256, 90, 160))
    def saved(img, prefix):
        buffer = io.BytesIO(); img.save(buffer, "JPEG", quality=85)
        return default_storage.save(f"{prefix}/seed-{i}.jpg", ContentFile(buffer.getvalue()))
    files.append((saved(image, "images"), saved(image.resize((320, 240)), "thumbnails")))
users = [User(username=f"user{u}", email=f"user{u}@example.com") for u in range(USERS)]
for user in users:
    user.set_unusable_password()
users = User.objects.bulk_create(users)
reviewer = User.objects.create_user("reviewer", password=PASSWORD, is_staff=True)
reviewer.groups.add(Group.objects.get(name="Reviewers"))
now = timezone.now()
rows = []
for n in range(IMAGES):
    image, thumb = files[n % len(files)]
    ranked = random.sample(BREED_KEYS, 5)
    probs = sorted((random.random() for _ in range(5)), reverse=True)
    total = sum(probs) * 1.2
    top = [{"breed": b, "probability": p / total} for b, p in zip(ranked, probs)]
    answer = random.random()
    reviewed = random.random() < 0.2
    rows.append(PetImage(
        owner=users[n % USERS], image=image, thumbnail=thumb, original_name=f"pet-{n}.jpg",
        sha256=hashlib.sha256(str(n).encode()).hexdigest(), width=1024, height=768,
        uploaded_at=now - timedelta(minutes=n), status="done", predicted_breed=ranked[0],
        confidence=top[0]["probability"], top_k=top, model_version=versions[n % 3], classified_at=now,
        verdict=random.choice(["confident", "unsure", "not_a_pet"]),
        is_correct=None if answer < 0.7 else answer < 0.85,
        true_breed="" if answer < 0.7 else ranked[0] if answer < 0.85 else random.choice(BREED_KEYS + [NOT_A_PET]),
        reviewed_label=ranked[0] if reviewed else "", reviewed_by=reviewer if reviewed else None,
        reviewed_at=now if reviewed else None,
    ))
PetImage.objects.bulk_create(rows, batch_size=1000)
"""

CHANGELIST = "/admin/classifier/petimage/"
PAGES = {
    "admin index (baseline)": "/admin/",
    "photo list, first page (the review queue)": CHANGELIST,
    "photo list, page 100": CHANGELIST + "?p=100",
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="per page, one after the other")
    args = parser.parse_args()

    print(f"start: {machine_load()}")
    results = []
    with Stack("admin_list", redis="redis://127.0.0.1:6379/4", env={"LOG_FORMAT": "json"}) as stack:
        started = time.monotonic()
        stack.shell(SEED.replace("PASSWORD", repr(PASSWORD)).replace("USERS", str(args.users))
                    .replace("IMAGES", str(args.images)))
        print(f"seeded {args.images} photos for {args.users} owners in {time.monotonic() - started:.1f} s")
        stack.db.execute("ANALYZE")
        stack.web(workers=1)
        log = stack.scratch / "gunicorn.log"
        site = stack.site("reviewer")
        for path in PAGES.values():  # warm-up: templates, connections, PostgreSQL's caches
            for _ in range(2):
                assert site.request("GET", path).status == 200, path
        for label, path in PAGES.items():
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
