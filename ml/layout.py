"""The Oxford-IIIT Pet dataset on disk: its layout, and a check that says what is missing.

Loading goes through torchvision's ``OxfordIIITPet`` (``ml.data``), so the real dataset
needs no conversion. This module only reads folders and text files, without torch: the
web process checks the dataset before it queues a training run, and the training code
checks it again before it loads anything.

Each problem found has a code (:class:`Problem`), so that the command line and the staff
pages can each say what to do in their own words: ``--download`` on the command line, the
training page's help for staff, who cannot run commands.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .breeds import BREED_KEYS, NUM_CLASSES

DATASET_DIR = "oxford-iiit-pet"  # torchvision's sub-folder of the root it is given
DATASET_PAGE = "https://www.robots.ox.ac.uk/~vgg/data/pets/"
DATASET_URLS = (
    "https://thor.robots.ox.ac.uk/datasets/pets/images.tar.gz",
    "https://thor.robots.ox.ac.uk/datasets/pets/annotations.tar.gz",
)
SPLITS = ("trainval", "test")

# Problem codes.
NO_ROOT = "no-root"  # the data folder does not exist
NO_DATASET_DIR = "no-dataset-dir"  # it has no oxford-iiit-pet/ folder
ROOT_IS_DATASET_DIR = "root-is-dataset-dir"  # the folder given is oxford-iiit-pet/ itself
NO_IMAGES = "no-images"  # images/ is missing
NO_ANNOTATIONS = "no-annotations"  # annotations/ is missing
NO_SPLIT = "no-split"  # annotations/<split>.txt is missing
BAD_ROWS = "bad-rows"  # a split file has a line that is not 'name class_id species breed_id'
MISSING_IMAGES = "missing-images"  # images listed in a split are not in images/
WRONG_CLASSES = "wrong-classes"  # class ids that do not match the breed in the name


class DatasetError(RuntimeError):
    """The dataset is missing or incomplete; the message says what and how to get it, and
    ``problems`` holds each :class:`Problem` found."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()):
        super().__init__(message)
        self.problems = list(problems)


@dataclass(frozen=True)
class Problem:
    code: str
    text: str  # what is wrong, in words (a path, a count), never what command to type


def how_to_get(root: str | os.PathLike) -> str:
    """How to get the dataset, for someone at a shell."""
    return (
        f"Download {DATASET_URLS[0]} and {DATASET_URLS[1]} and extract both into "
        f"{Path(root) / DATASET_DIR} (giving {DATASET_DIR}/images/ and {DATASET_DIR}/annotations/), "
        "or pass --download to let torchvision fetch them."
    )


def read_split(root: str | os.PathLike, split: str) -> list[tuple[str, int]]:
    """(image name, class index 0..36) per row of ``annotations/<split>.txt``, in file order.

    The same rows in the same order as torchvision reads them, so indices into this
    list are indices into the ``OxfordIIITPet`` dataset.
    """
    path = Path(root) / DATASET_DIR / "annotations" / f"{split}.txt"
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if len(fields) != 4 or not fields[1].isdigit():
            problem = Problem(BAD_ROWS, f"{path}, line {number}: expected 'name class_id species breed_id', "
                                        f"got {line!r}")
            raise DatasetError(problem.text + ".", [problem])
        rows.append((fields[0], int(fields[1]) - 1))
    return rows


def dataset_problems(root: str | os.PathLike, splits: Sequence[str] = SPLITS) -> list[Problem]:
    """Every problem found under ``root`` (empty: the dataset is there and complete).

    torchvision only says "Dataset not found"; someone with a half-extracted archive or a
    wrong path needs to know which part is missing. Costs one ``stat`` per listed image.
    """
    root = Path(root)
    base = root / DATASET_DIR
    if not root.is_dir():
        return [Problem(NO_ROOT, f"the data folder {root} does not exist")]
    if not base.is_dir():
        problems = [Problem(NO_DATASET_DIR, f"{root} has no {DATASET_DIR}/ directory")]
        if (root / "images").is_dir() or (root / "annotations").is_dir():
            problems.append(Problem(ROOT_IS_DATASET_DIR, f"{root} looks like the {DATASET_DIR}/ directory itself: "
                                                         f"its parent {root.parent} is the data folder"))
        return problems
    problems = []
    images_dir, annotations = base / "images", base / "annotations"
    if not images_dir.is_dir():
        problems.append(Problem(NO_IMAGES, f"{images_dir} is missing (from images.tar.gz)"))
    if not annotations.is_dir():
        return [*problems, Problem(NO_ANNOTATIONS, f"{annotations} is missing (from annotations.tar.gz)")]
    for split in splits:
        split_file = annotations / f"{split}.txt"
        if not split_file.is_file():
            problems.append(Problem(NO_SPLIT, f"{split_file} is missing (from annotations.tar.gz)"))
            continue
        try:
            rows = read_split(root, split)
        except DatasetError as exc:
            problems.extend(exc.problems)
            continue
        if images_dir.is_dir():
            missing = [name for name, _ in rows if not (images_dir / f"{name}.jpg").is_file()]
            if missing:
                problems.append(Problem(MISSING_IMAGES, (
                    f"{len(missing)} of the {len(rows)} images listed in {split_file.name} are missing "
                    f"from {images_dir} (e.g. {', '.join(m + '.jpg' for m in missing[:3])})")))
        wrong = [
            f"{name} (class {label + 1})" for name, label in rows
            if not 0 <= label < NUM_CLASSES or name.rsplit("_", 1)[0] != BREED_KEYS[label]
        ]
        if wrong:
            problems.append(Problem(WRONG_CLASSES, (
                f"{len(wrong)} rows of {split_file.name} have a class id that does not match the "
                f"breed in the image name or is outside 1..{NUM_CLASSES} (e.g. {', '.join(wrong[:3])})")))
    return problems


def check_dataset(root: str | os.PathLike, splits: Sequence[str] = SPLITS) -> None:
    """Raise one :class:`DatasetError` listing every problem found under ``root``, with how
    to get the dataset from a shell."""
    problems = dataset_problems(root, splits)
    if problems:
        raise DatasetError(
            f"The Oxford-IIIT Pet dataset at {root} is missing or incomplete: "
            + "; ".join(problem.text for problem in problems) + ". " + how_to_get(root),
            problems,
        )
