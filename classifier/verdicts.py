"""What a pet owner reads about a photo's result: one description per verdict, for every page.

The heading and the gallery caption (``headline``), the sentence under the heading, whether
the percentage is worth showing, how the likeliest breeds are listed, what "correct" stands
for in the feedback form, and which photos the gallery's and the API's filters count as a
cat or a dog (or as confident, not sure, not a cat or dog): all from here. The pages'
templates, their scripts (through the status JSON, ``classifier/serializers.py``) and the
API read these, so the words, the bars and the filters cannot disagree.

Why a photo can be "not a cat or dog" while its first breed has 95 %: the probabilities
are a softmax over the 37 breeds, which sums to one whatever the photo shows, so they only
rank the breeds against each other. Whether the photo looks like a cat or dog photo at all
is a separate score (``ml/calibration.py``): how far its features lie from every breed's
validation photos. Past the threshold that keeps 95 % of real pets the verdict is
not-a-pet, whatever the top probability, and the percentages say nothing about the photo:
its breeds are then shown as the closest ones, all unlikely, without bars or percentages.

The words claim no more than the model knows: "not sure" names the closest breed, not a
"maybe", and "not a cat or dog" says the photo does not look like one (a pet seen at an odd
angle can get it too, about 5 % of real pets do by construction).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.db.models import Case, F, FloatField, Q, Value, When

from ml.breeds import NUM_CLASSES
from petsite import dates
from registry.models import Verdict

from .choices import NOT_A_PET, Status, label_name


class Result(Protocol):
    """What the words are made from: a ``PetImage``'s result fields (this module imports no
    model, so that the model can use it without an import cycle)."""

    status: str
    verdict: str
    predicted_breed: str
    confidence: float | None
    uploaded_at: datetime


def with_article(name: str) -> str:
    """"a Pug", "an Abyssinian"."""
    return f"{'an' if name[:1].upper() in 'AEIOU' else 'a'} {name}"


def verdict_of(pet: Result) -> str:
    """The verdict the pages show: "" without a result; a result from before verdicts
    existed counts as confident (it was shown with its percentage then)."""
    if pet.status != Status.DONE:
        return ""
    return pet.verdict or Verdict.CONFIDENT


def with_verdict(verdict: str) -> Q:
    """The photos whose shown verdict (:func:`verdict_of`) is ``verdict``: the filters' rule."""
    shown = Q(verdict__in=["", Verdict.CONFIDENT]) if verdict == Verdict.CONFIDENT else Q(verdict=verdict)
    return Q(status=Status.DONE) & shown


# The model's prediction names a breed only when the photo looked like a cat or a dog:
# a not-a-pet photo's first breed is only the closest one, so it counts in no breed or
# species filter (the owner's and the reviewer's labels still do).
PREDICTION_NAMES_A_BREED = ~Q(verdict=Verdict.NOT_A_PET)


# How sure the model is of a breed, for the confidence filters and sorts: the first breed's
# probability for a result the pages show; none while a photo waits (an earlier result in
# its row is not shown); and nothing for a not-a-pet photo, whose probabilities only rank
# breeds that are all unlikely (module docstring).
BREED_CONFIDENCE = Case(
    When(~Q(status=Status.DONE), then=Value(None)),
    When(verdict=Verdict.NOT_A_PET, confidence__isnull=False, then=Value(0.0)),
    default=F("confidence"), output_field=FloatField(),
)


def model_answer(pet: Result) -> str:
    """What "correct" agrees with: ``NOT_A_PET`` for a not-a-pet verdict, else the first
    breed (the model's answer, or for "not sure" its closest guess); "" without a result."""
    if not pet.predicted_breed:
        return ""
    return NOT_A_PET if pet.verdict == Verdict.NOT_A_PET else pet.predicted_breed


@dataclass(frozen=True)
class VerdictDisplay:
    """Everything the pages say about one result, in words (the status JSON's ``display``)."""

    verdict: str  # CONFIDENT, UNSURE, NOT_A_PET, or "" without a result
    headline: str  # "Great Pyrenees", "Not sure. Closest breed: Pug", "Does not look like a cat or dog"
    note: str  # the sentence under the photo page's heading; "" for a confident answer
    show_confidence: bool  # the first breed's percentage is worth showing beside the headline
    top_k_title: str  # what the list of breeds is
    top_k_bars: bool  # the list shows probability bars and percentages (not for a not-a-pet photo)
    correct_choice: str  # the feedback form's "correct" answer, in words
    heatmap_alt: str  # the heatmap's alternative text: what it explains
    uploaded: str  # when the photo was uploaded, as the site writes dates (petsite.dates.when)


def describe(pet: Result) -> VerdictDisplay:
    """The words for ``pet``'s result (or its absence), the one source for every page."""
    verdict = verdict_of(pet)
    first = label_name(pet.predicted_breed) if pet.predicted_breed else ""
    common = {"verdict": verdict, "uploaded": dates.when(pet.uploaded_at),
              "heatmap_alt": _heatmap_alt(verdict, first)}
    if verdict == Verdict.CONFIDENT:
        return VerdictDisplay(
            headline=first, note="", show_confidence=True, top_k_title="The likeliest breeds", top_k_bars=True,
            correct_choice=f"Correct, it is {with_article(first)}", **common,
        )
    if verdict == Verdict.UNSURE:
        return VerdictDisplay(
            headline=f"Not sure. Closest breed: {first}",
            note=f"The classifier is not sure what this photo shows: its closest breed, {first}, has only "
            f"{_percent(pet.confidence)}. It knows {NUM_CLASSES} breeds of cats and dogs and nothing else, so this "
            "may also be another breed, or not a cat or dog at all. If you know, tell us below; a reviewer will "
            "look at it too.",
            show_confidence=False, top_k_title="Closest breeds, none of them sure", top_k_bars=True,
            correct_choice=f"It is {with_article(first)}", **common,
        )
    if verdict == Verdict.NOT_A_PET:
        return VerdictDisplay(
            headline="Does not look like a cat or dog",
            note="This photo does not look like the cat and dog photos the classifier learned from, so it is "
            "probably not a cat or a dog (an unusual angle or light can do this to a pet photo too). "
            f"Of the {NUM_CLASSES} breeds it knows, it looks most like {with_article(first)}, but only next to "
            "the other breeds, all of them unlikely. If it is a cat or a dog, tell us below.",
            show_confidence=False, top_k_title="Closest breeds, all unlikely", top_k_bars=False,
            correct_choice="Correct, it is not a cat or dog", **common,
        )
    return VerdictDisplay(headline="", note="", show_confidence=False, top_k_title="", top_k_bars=False,
                          correct_choice="Correct", **common)


def _percent(probability: float | None) -> str:
    return f"{round((probability or 0) * 100)}%"


def _heatmap_alt(verdict: str, first: str) -> str:
    if not verdict:
        return ""
    what = first if verdict == Verdict.CONFIDENT else f"its closest breed, {first}"
    return f"Heatmap of where the model found the most evidence for {what}, over the part of the photo it looked at"
