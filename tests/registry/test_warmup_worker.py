"""Model changes seen from the site: a real worker warms a newly activated model up in the
background while its child serves eager FP32, then switches; the photo pages say the new
model is getting ready meanwhile, and the staff model page shows each machine's backend."""
from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from filelock import FileLock

from classifier.models import PetImage
from ml import backends, warmup
from registry import services
from registry.models import ModelWarmup
from tests.auto_workers import AutoWorker, stored_photos
from tests.helpers import wait_for

GETTING_READY = "The new model is getting ready"
State = ModelWarmup.State


def message(client, pk: int) -> str:
    return client.get(reverse("classifier:status", args=[pk])).json()["message"]


@pytest.mark.django_db
def test_photos_say_the_new_model_is_getting_ready_while_it_warms_up(client, user, model_version, other_version):
    (pk,) = stored_photos(user, 1)
    client.force_login(user)
    assert message(client, pk) == ""

    warming = ModelWarmup.objects.create(version=model_version, host="worker-1", state=State.RUNNING)
    assert message(client, pk).startswith(GETTING_READY)
    page = client.get(reverse("classifier:detail", args=[pk])).content.decode()
    assert GETTING_READY in page
    assert "ONNX" not in page
    assert "backend" not in page
    assert "manage" not in page

    # Ready on one machine: the workers there run it at full speed; nobody waits for a warm-up.
    ready = ModelWarmup.objects.create(version=model_version, host="worker-2", state=State.READY, backend="bf16")
    assert message(client, pk) == ""
    ready.delete()
    # A warm-up that failed (eager FP32 serves), or one that died long ago, is not "getting ready".
    ModelWarmup.objects.filter(pk=warming.pk).update(state=State.FAILED)
    assert message(client, pk) == ""
    ModelWarmup.objects.filter(pk=warming.pk).update(
        state=State.RUNNING, started_at=timezone.now() - timedelta(seconds=warmup.WARMUP_TIMEOUT + 60))
    assert message(client, pk) == ""
    # Another model than the active one warming up changes nothing for new photos.
    ModelWarmup.objects.filter(pk=warming.pk).update(version=other_version, started_at=timezone.now())
    assert message(client, pk) == ""
    ModelWarmup.objects.filter(pk=warming.pk).update(version=model_version)
    assert message(client, pk).startswith(GETTING_READY)
    PetImage.objects.filter(pk=pk).update(status=PetImage.Status.DONE)
    assert message(client, pk) == ""  # a finished photo has nothing to wait for


@pytest.mark.django_db
def test_the_model_page_shows_each_machines_backend_and_speedup(admin_client, model_version):
    choice = {"cached": False, "candidates": {
        "eager": {"accepted": True, "speedup_vs_eager": 1.0},
        "bf16": {"accepted": True, "speedup_vs_eager": 2.41},
        "onnx": {"accepted": False, "reason": "unavailable: onnxruntime does not import"},
    }}
    ModelWarmup.objects.create(version=model_version, host="gpu-box", state=State.READY, backend="bf16",
                               finished_at=timezone.now(), report={"backend": "bf16", "choice": choice, "seconds": 93})
    ModelWarmup.objects.create(version=model_version, host="small-box", state=State.RUNNING)
    page = admin_client.get(reverse("registry:model_detail", args=[model_version.name])).content.decode()
    assert 'id="warmups"' in page
    assert "gpu-box" in page
    assert "bf16" in page
    assert "2.41×" in page
    assert "93 s" in page
    assert "onnx: unavailable: onnxruntime does not import" in page
    assert "eager: 1.00×" in page
    assert "small-box" in page
    assert "Getting ready" in page


@pytest.mark.django_db
def test_no_warm_up_for_a_backend_that_needs_none(model_version, settings):
    settings.PETSITE_INFERENCE_BACKEND = "channels_last"
    assert services.warm_up_version(model_version) is None
    assert not ModelWarmup.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(900)
def test_activation_warms_the_worker_up_while_its_child_serves_eager_fp32(client, user, other_version, tmp_path):
    cache = tmp_path / "backends"
    lock = FileLock(warmup.lock_path(cache, warmup.checkpoint_key(Path(other_version.file.path))))
    worker = AutoWorker(cache)
    client.force_login(user)
    try:
        with lock:  # a warm-up of this model holds the lock: this machine's warm-up must wait for it
            services.activate_version(other_version)  # after commit: every worker is asked to warm it up
            wait_for(lambda: ModelWarmup.objects.filter(version=other_version, state=State.RUNNING).exists(),
                     timeout=30, what="the worker to start warming the new model up")
            (first,) = stored_photos(user, 1, prefix="first")
            assert message(client, first).startswith(GETTING_READY)
            worker.send([first])
            wait_for(lambda: PetImage.objects.get(pk=first).is_finished, timeout=60, what="the first photo")
            # Classified by the new model, with eager FP32, while its warm-up still waits.
            assert PetImage.objects.get(pk=first).status == PetImage.Status.DONE, worker.full_log()
            assert PetImage.objects.get(pk=first).model_version == other_version
            assert ModelWarmup.objects.get(version=other_version).state == State.RUNNING
            assert "now runs on the" not in worker.full_log()

        wait_for(lambda: ModelWarmup.objects.get(version=other_version).state != State.RUNNING, timeout=300,
                 what="the warm-up to finish")
        done = ModelWarmup.objects.get(version=other_version)
        assert done.state == State.READY, done.report
        assert done.host == socket.gethostname(), done.report
        assert done.backend in backends.AUTO_CANDIDATES
        assert done.report["exported"]
        assert done.report["threads"] == 1
        assert done.report["choice"]["candidates"][done.backend]["accepted"]
        assert done.finished_at >= PetImage.objects.get(pk=first).classified_at

        (second,) = stored_photos(user, 1, prefix="second")
        assert message(client, second) == ""  # ready: nothing to explain
        worker.send([second])
        wait_for(lambda: PetImage.objects.get(pk=second).is_finished, timeout=60, what="the second photo")
        assert PetImage.objects.get(pk=second).status == PetImage.Status.DONE
        assert f"now runs on the {done.backend!r} backend" in worker.full_log()  # the child switched
        assert len(list((cache / "onnx").iterdir())) == 1  # one export for the machine
    finally:
        worker.kill()
