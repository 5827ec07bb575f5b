"""A burst of uploads through the real stack against the raw batched Predictor, in one run.

Starts a deployment on 127.0.0.1 (``bench/stack.py``: PostgreSQL, Redis, gunicorn with 2
workers, one Celery worker with the default settings), warms the worker up (model loaded,
backend chosen), then uploads ``--images`` generated photos (1024x768 JPEGs) through the
upload form from ``--clients`` threads at once, and waits until every one is classified.
Reports the time from the first upload to the last result, images/s, and the ratio to the
raw throughput of ``Predictor.classify_batch`` (decode + preprocess + forward, batches of
PETSITE_BATCH_SIZE, the backend the worker chose, as many torch threads as the worker)
on the same photos, measured in the same run before and after the burst (the better of
the two: the ratio is not flattered by a slow moment). Goal: ratio >= 0.85.

    python bench/burst.py                     # 200 photos, ~1-2 minutes on 2 cores
    python bench/burst.py --images 64 --clients 2
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack, children, machine_load, photo, rss_mib  # noqa: E402


def raw_throughput(predictor, photos: list[bytes], batch_size: int) -> tuple[float, float]:
    """(images/s, CPU seconds per image) of the Predictor alone: decode, preprocess and
    classify, ``batch_size`` at a time."""
    me = [psutil.Process()]
    cpu, start = cpu_seconds(me), time.perf_counter()
    predictor.classify_batch([io.BytesIO(p) for p in photos], batch_size=batch_size)
    return len(photos) / (time.perf_counter() - start), (cpu_seconds(me) - cpu) / len(photos)


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU time of these processes (and their threads) so far."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def upload_all(stack: Stack, photos: list[bytes], clients: int) -> tuple[list[int], float]:
    """Upload every photo from ``clients`` logged-in threads; (ids, seconds the uploads took)."""
    sites = [stack.site("owner") for _ in range(clients)]
    pks: list[int] = []
    lock = threading.Lock()

    def send(index: int) -> None:
        mine = [sites[index].upload(f"burst-{i}.jpg", photos[i]) for i in range(index, len(photos), clients)]
        with lock:
            pks.extend(mine)

    start = time.monotonic()
    threads = [threading.Thread(target=send, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return pks, time.monotonic() - start


def raw_predictor(stack: Stack, checkpoint, worker, args: argparse.Namespace):
    """A Predictor in this process as the worker's one child has it (backend, threads), and that child."""
    import torch

    from ml.inference import Predictor

    torch.set_num_threads(args.threads or psutil.cpu_count())  # as the worker's one child
    (child,) = children(worker)
    predictor = Predictor(checkpoint, backend=args.backend,
                          backend_cache_dir=Path(stack.env["PETSITE_VAR_DIR"]) / "cache" / "backends")
    print(f"worker child {child.pid}: backend {predictor.backend.name}, torch threads here "
          f"{torch.get_num_threads()}, RSS {rss_mib(child.pid):.0f} MiB")
    return predictor, child


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4, help="threads uploading at once")
    parser.add_argument("--backend", default="auto", help="PETSITE_INFERENCE_BACKEND for the worker and the Predictor")
    parser.add_argument("--batch-size", type=int, default=16, help="PETSITE_BATCH_SIZE")
    parser.add_argument("--threads", type=int, default=0,
                        help="PETSITE_TORCH_THREADS for the worker, and the raw Predictor's threads (0: cores)")
    parser.add_argument("--timeout", type=float, default=300)
    return parser.parse_args()


def main() -> None:
    args = parse_args()

    photos = [photo(seed) for seed in range(args.images)]
    print(f"start: {machine_load()}")
    env = {"PETSITE_INFERENCE_BACKEND": args.backend, "PETSITE_BATCH_SIZE": str(args.batch_size),
           "PETSITE_TORCH_THREADS": str(args.threads)}
    with Stack("burst", env=env) as stack:
        checkpoint = stack.model(image_size=224)
        stack.users("owner")
        web = stack.web(workers=2)
        worker = stack.worker("w1")
        site = stack.site("owner")
        warm = [site.upload(f"warm-{i}.jpg", photo(10_000 + i)) for i in range(3)]
        stack.wait_done(warm, timeout=args.timeout)  # model loaded, backend chosen and cached

        predictor, child = raw_predictor(stack, checkpoint, worker, args)
        rate_before, cpu_before_raw = raw_throughput(predictor, photos, args.batch_size)
        raw, raw_cpu = [rate_before], [cpu_before_raw]

        processes = {"web (gunicorn workers)": children(web), "worker child": [child],
                     "this client": [psutil.Process()]}
        cpu_before = {label: cpu_seconds(ps) for label, ps in processes.items()}
        started = time.monotonic()
        pks, upload_s = upload_all(stack, photos, args.clients)
        waited = stack.wait_done(pks, timeout=args.timeout)
        total = time.monotonic() - started
        left = stack.unfinished(pks)
        cpu = {label: cpu_seconds(ps) - cpu_before[label] for label, ps in processes.items()}
        first_claim, last_done = stack.db.execute(
            "SELECT min(claimed_at), max(classified_at) FROM classifier_petimage WHERE id = ANY(%s)", [pks]
        ).fetchone()
        rate_after, cpu_after = raw_throughput(predictor, photos, args.batch_size)
        raw.append(rate_after)
        raw_cpu.append(cpu_after)
        print(f"end: {machine_load()}")

    rate = len(pks) / total
    worker_span = (last_done - first_claim).total_seconds() if first_claim and last_done else float("nan")
    print(f"\n{len(pks)} uploads of 1024x768 JPEGs from {args.clients} clients, backend {predictor.backend.name}, "
          f"batch size {args.batch_size}; {left} not finished after the timeout")
    print(f"uploads took {upload_s:.1f} s ({len(pks) / upload_s:.1f} uploads/s); all classified "
          f"{total:.1f} s after the first upload began (the last {max(waited, 0):.1f} s after the last upload)")
    print(f"worker: first claim to last result {worker_span:.1f} s ({len(pks) / worker_span:.1f} images/s)")
    print(f"raw Predictor.classify_batch: {', '.join(f'{r:.1f}' for r in raw)} images/s (before, after)")
    print(f"CPU seconds used during the burst ({total:.1f} s x {psutil.cpu_count()} cores = "
          f"{total * psutil.cpu_count():.0f} available): "
          + ", ".join(f"{label} {seconds:.1f} ({1000 * seconds / len(pks):.0f} ms per image)"
                      for label, seconds in cpu.items()))
    worker_cpu = cpu["worker child"] / len(pks)
    print(f"CPU per image: worker child {1000 * worker_cpu:.0f} ms in the burst, raw Predictor "
          f"{1000 * min(raw_cpu):.0f} ms (ratio {min(raw_cpu) / worker_cpu:.2f}: the share of the worker's CPU that "
          "went into what the raw Predictor does)")
    print("\n| burst images/s | raw Predictor images/s (best) | ratio (goal >= 0.85) |")
    print("| --- | --- | --- |")
    print(f"| {rate:.1f} | {max(raw):.1f} | {rate / max(raw):.2f} |")
    print(f"(mean raw {statistics.mean(raw):.1f}: ratio {rate / statistics.mean(raw):.2f})")


if __name__ == "__main__":
    main()
