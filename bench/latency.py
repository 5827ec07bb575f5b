"""Upload-to-result latency of one photo at a time on a warm stack, against the model's own.

Starts a deployment on 127.0.0.1 (``bench/stack.py``), warms the worker up, then uploads
``--uploads`` generated photos one at a time: each is timed from the start of its upload
request until its row is finished (the database polled every 5 ms), and split into the
upload request (validate, store, thumbnail, enqueue on commit) and the rest (broker,
claim, classify, save). Between two uploads the same photo goes through the model alone
(``Predictor.classify``: decode, preprocess, forward, verdict; the backend the worker
chose, as many torch threads), so both see the same machine load. Goal: upload-to-done
p50 <= model p50 + 150 ms.

    python bench/latency.py                   # 40 uploads, ~1 minute on 2 cores
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack, machine_load, photo  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=40)
    parser.add_argument("--backend", default="auto", help="PETSITE_INFERENCE_BACKEND for the worker and the Predictor")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between uploads (the worker idles)")
    parser.add_argument("--threads", type=int, default=0,
                        help="PETSITE_TORCH_THREADS for the worker, and the Predictor's threads here (0: cores)")
    args = parser.parse_args()

    print(f"start: {machine_load()}")
    env = {"PETSITE_INFERENCE_BACKEND": args.backend, "PETSITE_TORCH_THREADS": str(args.threads)}
    with Stack("latency", env=env) as stack:
        checkpoint = stack.model(image_size=224)
        stack.users("owner")
        stack.web(workers=2)
        stack.worker("w1")
        site = stack.site("owner")
        stack.wait_done([site.upload(f"warm-{i}.jpg", photo(10_000 + i)) for i in range(3)], timeout=300)

        import torch

        from ml.inference import Predictor

        torch.set_num_threads(args.threads or os.cpu_count())  # as the worker's one child
        predictor = Predictor(checkpoint, backend=args.backend,
                              backend_cache_dir=Path(stack.env["PETSITE_VAR_DIR"]) / "cache" / "backends")
        for i in range(3):
            predictor.classify(io.BytesIO(photo(20_000 + i)))
        total, request, rest, model = [], [], [], []
        for i in range(args.uploads):
            content = photo(i)
            time.sleep(args.pause)
            start = time.monotonic()
            pk = site.upload(f"latency-{i}.jpg", content)
            uploaded = time.monotonic()
            stack.wait_done([pk], timeout=60, poll=0.005)
            done = time.monotonic()
            total.append(done - start)
            request.append(uploaded - start)
            rest.append(done - uploaded)
            time.sleep(args.pause)
            start = time.monotonic()
            predictor.classify(io.BytesIO(content))
            model.append(time.monotonic() - start)
        print(f"end: {machine_load()}")

    print(f"\n{args.uploads} uploads of 1024x768 JPEGs, one at a time; backend {predictor.backend.name}, "
          f"{torch.get_num_threads()} threads\n")
    print("| what | p50 ms | p95 ms |")
    print("| --- | --- | --- |")
    for label, values in [("upload to done", total), ("  the upload request", request),
                          ("  request answered to done", rest), ("model alone (Predictor.classify)", model)]:
        print(f"| {label} | {1000 * statistics.median(values):.0f} | {1000 * percentile(values, 0.95):.0f} |")
    overhead = statistics.median(total) - statistics.median(model)
    print(f"\nupload-to-done p50 - model p50 = {1000 * overhead:.0f} ms (goal <= 150 ms)")


if __name__ == "__main__":
    main()
