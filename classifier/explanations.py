"""Why did it say that: a Grad-CAM heatmap over the photo, made by a worker when asked.

The heatmap explains the prediction of the model that made it, for the predicted breed,
over the part of the photo the model saw (the centre crop). It is made once per image
and model version, stored beside the thumbnail, and made again only if a later model
classifies the photo anew.

**Asked for with a POST, never by a read.** The photo page's script, once the page shows
an answer without its heatmap, POSTs to ``classifier:explain`` (an API client to
``api:image-explain``); no GET (the page, the status JSON, the API's image) sends
anything. Not made by the worker with every result: Grad-CAM needs PyTorch in eager mode
(a backward pass through the whole ResNet, slower than the classification itself, and
never ONNX Runtime), and a heatmap only matters for a photo someone opens, which most
of a bulk reclassification's photos never are. So the cost is paid per photo looked at,
by the request that looks.

This module decides and makes; it sends nothing (``tasks.ask_for_heatmap`` does).
"""
from __future__ import annotations

import io
import logging

from django.core.cache import cache
from django.core.files.base import ContentFile
from PIL import Image

from petsite.outages import CACHE, outages, unreachable_service
from registry import services as registry_services

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


def reserve_heatmap_request(pet: PetImage) -> str | None:
    """The key under which a request for the heatmap of ``pet`` is now reserved, or None
    when none is to be sent: the photo has no result, its heatmap is current, or it was
    asked for in the last REQUEST_TTL seconds (shared cache: a page open in several tabs
    asks once). A heatmap is a nicety: while the cache is unreachable, none is asked for."""
    if not needs_heatmap(pet):
        return None
    key = f"petsite:heatmap:{pet.pk}:{pet.model_version_id}"
    try:
        if not cache.add(key, True, REQUEST_TTL):
            return None
    except Exception as error:
        if unreachable_service(error) != CACHE:
            raise
        outages.down(CACHE, error, "no heatmap is asked for until it answers again")
        return None
    return key


def forget_heatmap_request(key: str) -> None:
    """The request under ``key`` could not be sent: the next one may ask again."""
    cache.delete(key)


def make_heatmap(pk: int) -> None:
    """Grad-CAM of image ``pk`` for its predicted breed by the model that predicted it (worker)."""
    from ml.data import open_image
    from ml.explain import explain_image, overlay  # torch: in the worker only

    pet = PetImage.objects.select_related("model_version").filter(pk=pk).first()
    if pet is None or not needs_heatmap(pet):
        return
    predictor = registry_services.predictor_for(pet.model_version)
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
