"""A model activated during a burst of uploads, on a busy machine, with a real worker on
``PETSITE_INFERENCE_BACKEND=auto`` and nothing measured before (an empty backend cache).

Before issue 15 the first photo after an activation waited for the ONNX export and the
timing of every backend inside its task: 1.5 to 5 minutes. Now the worker's main process
warms the new model up in a process of its own, and the child classifies with eager FP32
at once. The test asserts completeness and order: every photo ends DONE (classified by
either model, one history row per photo and version), and the first photo sent after the
activation is classified by the new model before its warm-up (export and timing) is
done, within a bound that is scaled by the machine's measured slowness. It records the
figures that docs/reliability.md gives as junit properties.
"""
from __future__ import annotations

import os
import time

import pytest
from django.db.models import Count

from classifier.models import Classification, PetImage
from registry import services
from registry.models import ModelWarmup
from tests.auto_workers import AutoWorker, stored_photos
from tests.helpers import wait_for
from tests.load import scaled, slowness

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]
Status = PetImage.Status
State = ModelWarmup.State

# The first photo after an activation, on a quiet machine: the goal is 10 s plus
# the model's own time (loading the new checkpoint, one eager forward pass). Stretched by
# the measured slowness under load (about 4 on two cores at load 8: 60 s, the goal there).
FIRST_PHOTO_S = 15
BURST = 8  # photos sent before the activation, and as many after


def done(pks) -> bool:
    return PetImage.objects.filter(pk__in=pks, status=Status.DONE).count() == len(pks)


def test_model_activated_during_a_burst(user, model_version, other_version, tmp_path, cpu_load, record_property):
    worker = AutoWorker(tmp_path / "backends")  # it starts warming the active model up at once
    try:
        # A worker that has been classifying: its child has torch and the active model loaded.
        earlier = stored_photos(user, 1, prefix="earlier")
        worker.send(earlier)
        wait_for(lambda: done(earlier), timeout=60, what="the worker's first photo")
        assert ModelWarmup.objects.filter(version=model_version).exists()  # warming up since the worker started
        before = stored_photos(user, BURST, prefix="before")
        worker.send(before)
        services.activate_version(other_version)  # after commit: every worker warms it up
        after = []
        for i in range(BURST):
            (pk,) = stored_photos(user, 1, prefix=f"after-{i}")
            worker.send([pk])
            if i == 0:
                first, first_sent = pk, time.monotonic()
            after.append(pk)
            time.sleep(0.25)
        wait_for(lambda: done([first]), timeout=FIRST_PHOTO_S * 4, what="the first photo after the activation")
        first_photo_s = time.monotonic() - first_sent
        bound, load_then = scaled(FIRST_PHOTO_S), os.getloadavg()[0]
        warming = ModelWarmup.objects.filter(version=other_version).first()
        wait_for(lambda: done(before + after), timeout=120, what="every photo of the burst")

        # The new model classified its first photo while its warm-up was still running.
        assert PetImage.objects.get(pk=first).model_version == other_version
        assert warming is not None, worker.full_log()
        assert warming.state == State.RUNNING, worker.full_log()
        assert first_photo_s < bound, (first_photo_s, bound)
        # Every photo is classified once, by one model or the other.
        assert PetImage.objects.filter(pk__in=after).exclude(model_version=other_version).count() == 0
        assert set(PetImage.objects.filter(pk__in=before).values_list("model_version", flat=True)) <= {
            model_version.pk, other_version.pk}
        per_version = Classification.objects.filter(image__in=before + after).values("image", "model_version")
        assert all(row["n"] == 1 for row in per_version.annotate(n=Count("pk")))
        assert Classification.objects.filter(image__in=before + after).values("image").distinct().count() == 2 * BURST

        # The warm-up ends, measured: the figures for docs/reliability.md.
        wait_for(lambda: ModelWarmup.objects.get(version=other_version).state != State.RUNNING, timeout=300,
                 what="the new model's warm-up to finish")
        warmed = ModelWarmup.objects.get(version=other_version)
        assert warmed.state == State.READY, warmed.report
        last_classified = max(PetImage.objects.filter(pk__in=before + after).values_list("classified_at", flat=True))
        assert warmed.finished_at > last_classified  # no photo of the burst waited for the export
    finally:
        worker.kill()
    record_property("first_photo_after_activation_s", round(first_photo_s, 1))
    record_property("first_photo_bound_s", round(bound, 1))
    record_property("load_average_at_first_photo", round(load_then, 1))
    record_property("warm_up_s", warmed.report["seconds"])
    record_property("export_s", warmed.report["export_s"])
    record_property("backend", warmed.backend)
    record_property("load_average_at_end", round(os.getloadavg()[0], 1))
    record_property("slowness_at_end", round(slowness(), 1))
