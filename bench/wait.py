"""How long a client waits for a result: ``GET /api/images/<id>/?wait=30`` against polling every second.

Starts the site on 127.0.0.1 (``bench/stack.py``: PostgreSQL, Redis, gunicorn with gthread
workers as docker/gunicorn.conf.py runs them) and no Celery worker: this process finishes
each image itself, through the worker's own path (``classification.claim`` then
``record_prediction``, which publishes the wake-up after the commit), at a random moment
0.2 to 1.8 s after the client started waiting. Measured: from the commit of the finish
to the client having the finished answer, and how many requests each client made.

    python bench/wait.py                 # 20 images each way, under a minute
    BENCH_REDIS=redis://127.0.0.1:6379/3 python bench/wait.py --images 40
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack, machine_load  # noqa: E402


def start_web(stack: Stack) -> None:
    """gunicorn as deployed (gthread, 2 processes x 4 threads), on 127.0.0.1 only."""
    stack.start(sys.executable, "-m", "gunicorn", "petsite.wsgi", "--bind", f"127.0.0.1:{stack.port}",
                "--workers", "2", "--threads", "4", "--worker-class", "gthread", log="gunicorn.log")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if urllib3.request("GET", stack.base + "/accounts/login/", retries=False).status == 200:
                return
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer; see {stack.scratch / 'gunicorn.log'}")


def setup_django(stack: Stack):
    """Django in this process, on the stack's database and broker; the owner's token and a model version."""
    os.environ.update({key: value for key, value in stack.env.items() if key != "DJANGO_SETTINGS_MODULE"})
    os.environ["DJANGO_SETTINGS_MODULE"] = "petsite.settings"
    import django

    django.setup()
    from django.contrib.auth.models import User

    from api import tokens
    from registry.models import ModelVersion

    owner = User.objects.get(username="owner")
    version = ModelVersion.objects.create(name="bench", file="models/bench/none.pt", is_active=True)
    return owner, tokens.issue_token(owner).key, version


def new_image(owner):
    from classifier import uploads
    from tests.helpers import upload

    return uploads.store_uploads(owner, [upload()])[0].image


def finish(pet, version) -> float:
    """Finish ``pet`` as a worker does; the moment its commit (and the wake-up) is done."""
    from django.utils import timezone

    from classifier import classification

    token, claimed = classification.claim([pet.pk], version)
    prediction = {"predicted_breed": "pug", "confidence": 0.9, "verdict": "confident", "verdict_scores": {},
                  "top_k": [{"breed": "pug", "probability": 0.9}]}
    classification.record_prediction(claimed[0], token, version, prediction, timezone.now())
    return time.monotonic()


def client(base: str, key: str, pk: int, mode: str, out: dict) -> None:
    http = urllib3.PoolManager()
    headers = {"Authorization": f"Token {key}"}
    url = f"{base}/api/images/{pk}/" + ("?wait=30" if mode == "wait" else "")
    requests = 0
    while True:
        requests += 1
        body = json.loads(http.request("GET", url, headers=headers, timeout=40).data)
        if body["finished"]:
            break
        if mode == "poll":
            time.sleep(1.0)
    out.update(answered=time.monotonic(), requests=requests)


def one(stack: Stack, owner, key: str, version, mode: str) -> tuple[float, int]:
    pet = new_image(owner)
    out: dict = {}
    thread = threading.Thread(target=client, args=(stack.base, key, pet.pk, mode, out))
    thread.start()
    time.sleep(random.uniform(0.2, 1.8))  # noqa: S311 - not security
    finished = finish(pet, version)
    thread.join()
    return out["answered"] - finished, out["requests"]


def summary(name: str, latencies: list[float], requests: list[int]) -> str:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"{name:>14}: finish -> answer median {statistics.median(latencies) * 1000:7.1f} ms, "
            f"p95 {p95 * 1000:7.1f} ms, max {max(latencies) * 1000:7.1f} ms; "
            f"{statistics.mean(requests):.1f} requests per image")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20, help="images per mode")
    args = parser.parse_args()
    print(f"start: {machine_load()}")
    with Stack("wait", redis=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/5")) as stack:
        stack.users("owner")
        start_web(stack)
        owner, key, version = setup_django(stack)
        results = {}
        for mode in ("wait", "poll"):
            runs = [one(stack, owner, key, version, mode) for _ in range(args.images)]
            results[mode] = ([latency for latency, _ in runs], [count for _, count in runs])
        print(summary("?wait=30", *results["wait"]))
        print(summary("poll every 1 s", *results["poll"]))
        ratio = statistics.median(results["poll"][0]) / statistics.median(results["wait"][0])
        print(f"median ratio poll / wait: {ratio:.0f} x")
        from django.db import connections

        connections.close_all()  # else the stack cannot drop its database
    print(f"end: {machine_load()}")


if __name__ == "__main__":
    main()
