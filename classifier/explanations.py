"""Why did it say that: a Grad-CAM heatmap over the photo, made by a worker on first view.

The heatmap explains the prediction of the model that made it, for the predicted breed,
over the part of the photo the model saw (the centre crop). It is made once per image
and model version: when the photo's page is first opened after a classification (never
for bulk reclassification, which nobody is looking at), stored beside the thumbnail, and
made again only if a later model classifies the photo anew.
"""
from __future__ import annotations

import io
import logging

from django.core.cache import cache
from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image

from petsite.outages import BROKER, CACHE, outages, unreachable_service
from registry import services as ml_services

from .models import PetImage

log = logging.getLogger(__name__)

DISPLAY_SCALE = 2  # the overlay is made at twice the model's input size, for sharp display
REQUEST_TTL = 300  # seconds during which a second view does not ask again


def heatmap_is_current(pet: PetImage) -> bool:
    """Whether the stored heatmap explains the result the pages show now: none while the
    photo waits or is classified again ("Show why" is offered with an answer only)."""
    return pet.status == PetImage.Status.DONE and bool(pet.heatmap) and pet.heatmap_version_id == pet.model_version_id


def needs_heatmap(pet: PetImage) -> bool:
    return pet.status == PetImage.Status.DONE and pet.model_version_id is not None and not heatmap_is_current(pet)


def request_heatmap(pet: PetImage) -> bool:
    """Ask a worker for the heatmap if the photo has a result and no current heatmap;
    True if asked. Views of the page in the next minutes do not ask again (shared cache).

    A heatmap is a nicety: while the cache or the broker is unreachable, none is asked
    for and the page is shown without it (the next view after the outage asks)."""
    if not needs_heatmap(pet):
        return False
    key = f"petsite:heatmap:{pet.pk}:{pet.model_version_id}"
    try:
        if not cache.add(key, True, REQUEST_TTL):
            return False
    except Exception as error:
        if unreachable_service(error) != CACHE:
            raise
        outages.down(CACHE, error, "no heatmap is asked for until it answers again")
        return False
    transaction.on_commit(lambda: _send_heatmap_request(pet.pk, key))
    return True


def _send_heatmap_request(pk: int, key: str) -> None:
    from .tasks import make_heatmap

    try:
        make_heatmap.delay(pk)
    except Exception as error:
        if unreachable_service(error) != BROKER:
            raise
        outages.down(BROKER, error, "no heatmap is asked for until it answers again")
        cache.delete(key)  # the next view asks again
        return
    outages.up(BROKER)


def make_heatmap(pk: int) -> None:
    """Grad-CAM of image ``pk`` for its predicted breed by the model that predicted it (worker)."""
    from ml.data import open_image
    from ml.explain import explain_image, overlay  # torch: in the worker only

    pet = PetImage.objects.select_related("model_version").filter(pk=pk).first()
    if pet is None or not needs_heatmap(pet):
        return
    predictor = ml_services.predictor_for(pet.model_version)
    class_index = predictor.classes.index(pet.predicted_breed) if pet.predicted_breed in predictor.classes else None
    with pet.image.open("rb") as f:  # decoded once, large enough for the display
        photo = open_image(f, min_size=predictor.checkpoint.resize_size * DISPLAY_SCALE)
    explanation, _ = explain_image(predictor, photo, class_index)
    photo = _as_seen(photo, predictor.checkpoint)
    buffer = io.BytesIO()
    overlay(photo, explanation.heatmap).save(buffer, "JPEG", quality=88)
    old = pet.heatmap.name
    pet.heatmap.save("heatmap.jpg", ContentFile(buffer.getvalue()), save=False)
    saved = PetImage.objects.filter(pk=pk, model_version=pet.model_version_id).update(
        heatmap=pet.heatmap.name, heatmap_version=pet.model_version_id
    )
    stale = pet.heatmap.name if not saved else old  # reclassified meanwhile: this heatmap explains nothing
    if stale:
        pet.heatmap.storage.delete(stale)


def _as_seen(photo: Image.Image, checkpoint) -> Image.Image:
    """The centre crop the model saw (its resize, then its crop), at DISPLAY_SCALE times its size."""
    side = min(photo.size) * checkpoint.image_size / checkpoint.resize_size
    left, top = (photo.width - side) / 2, (photo.height - side) / 2
    size = checkpoint.image_size * DISPLAY_SCALE
    return photo.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))
