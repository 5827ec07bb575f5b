"""A Celery worker's memory: with the model loaded, and after many classifications.

Starts PostgreSQL, Redis and one Celery worker (default settings, ``bench/stack.py``),
stores ``--files`` distinct generated photos, and makes ``--images`` pending images that
use them (rows in bulk, as uploads would leave them). The worker first classifies
``--warm`` of them (model loaded, backend chosen, batch sizes met): its child's RSS then
is the baseline. Then it classifies the rest, sent as the upload path sends them (one
task per image; micro-batching takes up to PETSITE_BATCH_SIZE per forward pass), and the
child's RSS is read again, with its peak in between (sampled every 50 ms).
Goal: growth <= 5 % of the baseline.

    python bench/worker_memory.py             # 1,000 classifications, ~1-2 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Peak, Stack, children, machine_load, rss_mib  # noqa: E402

SEED = """
import hashlib
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from bench.stack import photo
from classifier.models import PetImage

owner = User.objects.create_user("owner", password="a-Long-pass-42")
files = [default_storage.save(f"images/seed-{i}.jpg", ContentFile(photo(i))) for i in range(FILES)]
rows = [PetImage(owner=owner, image=files[n % len(files)], original_name=f"pet-{n}.jpg",
                 sha256=hashlib.sha256(str(n).encode()).hexdigest(), width=1024, height=768,
                 status="pending", enqueued_at=timezone.now())
        for n in range(IMAGES)]
print(json.dumps([row.pk for row in PetImage.objects.bulk_create(rows, batch_size=1000)]))
"""

SEND = """
from classifier.tasks import classify_image
for pk in PKS:
    classify_image.delay(pk)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="classifications after the warm-up")
    parser.add_argument("--warm", type=int, default=48)
    parser.add_argument("--files", type=int, default=50, help="distinct photos behind the images")
    parser.add_argument("--backend", default="auto", help="PETSITE_INFERENCE_BACKEND")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    print(f"start: {machine_load()}")
    peak = Peak()
    with Stack("memory", env={"PETSITE_INFERENCE_BACKEND": args.backend}) as stack:
        stack.model(image_size=224)
        out = stack.shell("import json\n" + SEED.replace("FILES", str(args.files))
                          .replace("IMAGES", str(args.warm + args.images)))
        pks = json.loads(out.strip().splitlines()[-1])
        warm, rest = pks[:args.warm], pks[args.warm:]
        worker = stack.worker("w1")
        (child,) = children(worker)
        started_rss = rss_mib(child.pid)
        stack.shell(SEND.replace("PKS", repr(warm)))
        stack.wait_done(warm, timeout=args.timeout)
        time.sleep(1)
        baseline = rss_mib(child.pid)
        peak.watch("child", child.pid)
        started = time.monotonic()
        stack.shell(SEND.replace("PKS", repr(rest)))
        stack.wait_done(rest, timeout=args.timeout)
        seconds = time.monotonic() - started
        time.sleep(1)
        after = rss_mib(child.pid)
        left = stack.unfinished(pks)
        done = stack.db.execute(
            "SELECT count(*) FROM classifier_petimage WHERE id = ANY(%s) AND status = 'done'", [rest]).fetchone()[0]
        (still,) = children(worker)
        cache = Path(stack.env["PETSITE_VAR_DIR"]) / "cache" / "backends" / "backends.json"
        chosen = [c["backend"] for c in json.loads(cache.read_text())["choices"].values()] if cache.exists() else "?"
        peak.running = False
        print(f"end: {machine_load()}")

    growth = (after - baseline) / baseline
    print(f"\nbackend {args.backend} ({chosen}); worker child {child.pid} (same process at the end: "
          f"{still.pid == child.pid}); "
          f"{done} of {len(rest)} classified in {seconds:.1f} s ({done / seconds:.1f} images/s), {left} unfinished")
    print("| worker child RSS | MiB |")
    print("| --- | --- |")
    print(f"| started, no model yet | {started_rss:.0f} |")
    print(f"| model loaded, {len(warm)} classified (baseline) | {baseline:.0f} |")
    print(f"| after {len(rest)} more classifications | {after:.0f} |")
    print(f"| peak during them | {peak.peaks.get('child', 0) / 2**20:.0f} |")
    print(f"\ngrowth {100 * growth:+.1f} % (goal <= 5 %)")


if __name__ == "__main__":
    main()
