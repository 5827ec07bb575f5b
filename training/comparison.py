"""Which reviewed photos a run learns from and which judge it, and the judging itself:
the new model (challenger) against the active one (champion).

The check set is every fifth reviewed photo by id: a fixed rule, so a photo never moves
between the sets whatever is reviewed later, and no run ever trains on a photo that
judges it. ``compare`` runs both models on the check set and on the dataset's test split.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db.models import QuerySet
from django.db.models.functions import Mod

from classifier.models import NOT_A_PET, PetImage
from ml import layout
from ml import progress as progress_
from registry import services as registry_services
from registry.models import ModelVersion

# Every fifth reviewed image, by id, is held out: a fixed rule, so an image never moves
# between the training set and the check set, whatever is reviewed later.
CHECK_SET_EVERY = 5
# Images per batch when the comparison evaluates a model on the test split: small, so that
# a step (a progress report, a chance to cancel) comes every few seconds on a busy CPU.
COMPARE_BATCH = 16


def _reviewed_breeds() -> QuerySet:
    """Images with a reviewed breed ("not a cat or dog" teaches no breed)."""
    return PetImage.objects.labelled().exclude(reviewed_label=NOT_A_PET).annotate(check_slot=Mod("pk", CHECK_SET_EVERY))


def check_set() -> QuerySet:
    return _reviewed_breeds().filter(check_slot=0)


def training_set() -> QuerySet:
    return _reviewed_breeds().exclude(check_slot=0)


def _test_images(dataset_dir: Path) -> int:
    """How many images the dataset's test split lists (0 without one: the comparison skips it)."""
    try:
        return len(layout.read_split(dataset_dir, "test"))
    except (OSError, layout.DatasetError):
        return 0


def comparison_work(champion: ModelVersion | None, image_size: int, dataset_dir: Path) -> float:
    """The work of :func:`compare` (``ml.progress`` units), both models taken at ``image_size``."""
    roles = 2 if champion is not None else 1
    check = check_set().count() * progress_.SINGLE_IMAGE_COST * (image_size / 224) ** 2
    return roles * (check + progress_.image_passes(_test_images(dataset_dir), image_size))


def compare(challenger_path: Path, champion: ModelVersion | None, dataset_dir: Path, out_dir: Path,
            on_progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Both models on the check set and on the dataset's test split (when it has one).

    Returns plain JSON: per set, each model's accuracy and top-5 accuracy; on the check set
    the images that go from right to wrong and from wrong to right; per breed, the change
    of recall on the test split. ``recommended``: the challenger is at least as good on
    every set that has images. ``on_progress``: the stage ``ml.progress.COMPARING``, a step
    per check-set image and per test batch of each model.

    Both models are evaluated here the same way (``run_evaluation``, FP32), rather than
    reusing the run's own test metrics: the quick recipe's come from its cached body
    features, possibly computed in BF16, and would not compare like with like.
    """
    from ml.data import DatasetError
    from ml.inference import Predictor
    from ml.outputs import run_evaluation

    report = progress_.Reporter(on_progress)
    images = list(check_set().order_by("pk"))
    roles = ["challenger"] + (["champion"] if champion else [])
    test_batches = math.ceil(_test_images(dataset_dir) / COMPARE_BATCH)
    steps = len(roles) * (len(images) + test_batches)
    report.stage(progress_.COMPARING, steps)
    models = {"challenger": Predictor(challenger_path)}
    comparison: dict[str, Any] = {"champion": champion.name if champion else None, "sets": {}}
    test_metrics = {}
    with registry_services.local_checkpoint(champion) if champion else contextlib.nullcontext() as champion_path:
        if champion_path:
            models["champion"] = Predictor(champion_path)
        comparison["sets"]["check"] = _compare_on_check_set(models, images, report.counter(steps))
        offset = len(roles) * len(images)
        for role, path in (("challenger", challenger_path), ("champion", champion_path)):
            if path is None:
                continue
            try:
                test_metrics[role], _ = run_evaluation(
                    path, dataset_dir, out_dir / role, split="test", batch_size=COMPARE_BATCH, workers=0,
                    progress=False, on_batch=report.counter(steps, offset), figures=False,
                )
            except DatasetError as exc:
                comparison["test_unavailable"] = str(exc)
                break
            offset += test_batches
    if test_metrics:
        comparison["sets"]["test"] = {
            "num_images": test_metrics["challenger"]["num_images"],
            **{role: {"accuracy": metrics["accuracy"], "top5_accuracy": metrics["top5_accuracy"]}
               for role, metrics in test_metrics.items()},
        }
        if "champion" in test_metrics:
            comparison["per_breed"] = _per_breed_changes(test_metrics["champion"], test_metrics["challenger"])
    comparison["recommended"] = champion is None or all(
        numbers["challenger"]["accuracy"] >= numbers["champion"]["accuracy"]
        for numbers in comparison["sets"].values() if numbers["num_images"] and "champion" in numbers
    )
    return comparison


def _compare_on_check_set(models: dict, images: list[PetImage],
                          on_image: Callable[[int, int], None]) -> dict[str, Any]:
    right: dict[str, dict[int, bool]] = {role: {} for role in models}
    numbers: dict[str, Any] = {"num_images": len(images)}
    done = 0
    for role, predictor in models.items():
        top1 = top5 = 0
        for pet in images:
            with pet.image.open("rb") as f:
                labels = [p.label for p in predictor.classify(f, k=5).top_k]
            right[role][pet.pk] = labels[0] == pet.reviewed_label
            top1 += right[role][pet.pk]
            top5 += pet.reviewed_label in labels
            done += 1
            on_image(done, len(images) * len(models))
        numbers[role] = {
            "accuracy": top1 / len(images) if images else None, "top5_accuracy": top5 / len(images) if images else None
        }
    if "champion" in models:
        before, after = right["champion"], right["challenger"]
        numbers["right_to_wrong"] = [pk for pk in before if before[pk] and not after[pk]]
        numbers["wrong_to_right"] = [pk for pk in before if not before[pk] and after[pk]]
    return numbers


def _per_breed_changes(champion: dict, challenger: dict) -> list[dict[str, Any]]:
    """Recall per breed, before and after, largest changes first (unchanged breeds left out)."""
    before = {row["class"]: row for row in champion["per_class"]}
    rows = []
    for row in challenger["per_class"]:
        old = before.get(row["class"])
        if old is None or abs(row["recall"] - old["recall"]) < 1e-9:
            continue
        rows.append({"breed": row["class"], "name": row["name"], "before": old["recall"], "after": row["recall"],
                     "change": row["recall"] - old["recall"], "support": row["support"]})
    return sorted(rows, key=lambda r: -abs(r["change"]))


