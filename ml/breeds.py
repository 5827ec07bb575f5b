"""The 37 breeds of the Oxford-IIIT Pet dataset: the one list every part of Petsite uses.

The order is the dataset's class order (class ids 1..37 in ``annotations/list.txt``,
0..36 in torchvision's ``OxfordIIITPet``), so an index into this list is a model
output index. Cat breeds are capitalised in the dataset's file names, dog breeds
are not; the keys below keep that spelling so that file names map back exactly.
"""
from __future__ import annotations

from typing import NamedTuple

CAT = "cat"
DOG = "dog"

# The label of a photo that shows no cat or dog (an owner's or a reviewer's answer), which is
# also the verdict of a prediction that does not look like a pet.
NOT_A_PET = "not_a_pet"
NOT_A_PET_NAME = "Not a cat or dog"

# The verdicts of a prediction (``ml.calibration`` decides them, the site shows them), in one
# place for the whole project: here, beside the labels, because ``ml.calibration`` needs
# PyTorch and the web tier, whose choices are derived from these names, must not load it.
CONFIDENT = "confident"
UNSURE = "unsure"
VERDICTS = (CONFIDENT, UNSURE, NOT_A_PET)


class Breed(NamedTuple):
    key: str  # as in the dataset's file names, e.g. "great_pyrenees", "British_Shorthair"
    species: str  # CAT or DOG

    @property
    def display_name(self) -> str:
        return display_name(self.key)


_CATS = {
    "Abyssinian", "Bengal", "Birman", "Bombay", "British_Shorthair", "Egyptian_Mau",
    "Maine_Coon", "Persian", "Ragdoll", "Russian_Blue", "Siamese", "Sphynx",
}

_KEYS = [
    "Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound",
    "beagle", "Bengal", "Birman", "Bombay", "boxer", "British_Shorthair", "chihuahua",
    "Egyptian_Mau", "english_cocker_spaniel", "english_setter", "german_shorthaired",
    "great_pyrenees", "havanese", "japanese_chin", "keeshond", "leonberger", "Maine_Coon",
    "miniature_pinscher", "newfoundland", "Persian", "pomeranian", "pug", "Ragdoll",
    "Russian_Blue", "saint_bernard", "samoyed", "scottish_terrier", "shiba_inu", "Siamese",
    "Sphynx", "staffordshire_bull_terrier", "wheaten_terrier", "yorkshire_terrier",
]

BREEDS: list[Breed] = [Breed(key, CAT if key in _CATS else DOG) for key in _KEYS]
BREED_KEYS: list[str] = [b.key for b in BREEDS]
BY_KEY: dict[str, Breed] = {b.key: b for b in BREEDS}
NUM_CLASSES = len(BREEDS)


def display_name(key: str) -> str:
    """``great_pyrenees`` -> ``Great Pyrenees``; the same rule torchvision uses for class names."""
    return " ".join(part.title() for part in key.split("_"))


def key_for_display_name(name: str) -> str:
    """Inverse of :func:`display_name`, for class names read from torchvision datasets."""
    for breed in BREEDS:
        if breed.display_name == name:
            return breed.key
    raise KeyError(f"Unknown breed name: {name!r}")


def species_of(key: str) -> str:
    return BY_KEY[key].species


def choices(species: str | None = None) -> list[tuple[str, str]]:
    """(key, display name) pairs sorted by display name, for forms and filters."""
    return sorted(
        ((b.key, b.display_name) for b in BREEDS if species in (None, b.species)),
        key=lambda pair: pair[1],
    )
