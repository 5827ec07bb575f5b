"""Reviewed images back to training: an export in the dataset's own layout."""
from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from django.db.models import QuerySet
from PIL import UnidentifiedImageError

from ml.breeds import BREED_KEYS
from ml.data import DATASET_DIR, open_image, write_annotations

from .models import NOT_A_PET, PetImage

log = logging.getLogger(__name__)


def export_reviewed(dest: str | os.PathLike, since=None, images: QuerySet | None = None,
                    on_image: Callable[[int, int], None] | None = None) -> Counter:
    """Write reviewed images in the Oxford-IIIT Pet layout that ``train --extra-data`` reads.

    Only staff-reviewed labels count as ground truth, and "not a cat or dog" is left out.
    ``images`` narrows the export (training from the site exports its training set only).
    Images are named ``<breed>_<id>.jpg`` (the id keeps names stable across exports),
    stored upright as RGB JPEG like the dataset's own files. Returns counts per breed.
    ``on_image(done, total)`` after each image (a training run's progress).
    """
    if images is None:
        images = PetImage.objects.labelled()
    images = images.exclude(reviewed_label=NOT_A_PET).order_by("pk")
    if since is not None:
        images = images.filter(reviewed_at__gte=since)
    images_dir = Path(dest) / DATASET_DIR / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rows, counts = [], Counter()
    total = images.count() if on_image is not None else 0
    for done, pet in enumerate(images.iterator(), 1):
        if on_image is not None:
            on_image(done - 1, total)
        name = f"{pet.reviewed_label}_{pet.pk}"
        try:
            with pet.image.open("rb") as f:
                open_image(f).save(images_dir / f"{name}.jpg", "JPEG", quality=95)
        except (OSError, UnidentifiedImageError) as exc:
            log.warning("Skipping image %s in the export: %s", pet.pk, exc)
            continue
        rows.append((name, BREED_KEYS.index(pet.reviewed_label)))
        counts[pet.reviewed_label] += 1
    if on_image is not None:
        on_image(total, total)
    write_annotations(dest, trainval=rows)
    return counts
