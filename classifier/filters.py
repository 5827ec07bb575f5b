"""The gallery: its filters (django-filter) and its order (newest first), which the
photo page's previous and next links follow too."""
import functools

import django_filters
from django import forms
from django.db.models import F, Q, QuerySet
from django.http import QueryDict
from django.template.loader import render_to_string

from ml import breeds
from registry.models import Verdict

from . import verdicts
from .models import PetImage

# Pending images have no confidence: they go last in either confidence order. Confidence
# is in a breed (verdicts.BREED_CONFIDENCE): none for a photo that does not look like a pet.
CONFIDENCE = "breed_confidence"
SORTS = {
    "newest": ("Newest first", ["-uploaded_at", "-pk"]),
    "oldest": ("Oldest first", ["uploaded_at", "pk"]),
    "confident": ("Most confident", [F(CONFIDENCE).desc(nulls_last=True), "-uploaded_at"]),
    "unsure": ("Least confident", [F(CONFIDENCE).asc(nulls_last=True), "-uploaded_at"]),
}
FEEDBACK_CHOICES = [("none", "No answer yet"), ("correct", "Said correct"), ("wrong", "Said wrong")]


def labelled_as(keys: list[str]) -> Q:
    """Images whose breed is one of ``keys``, by the best answer there is.

    A reviewer's label wins, then the owner's answer (``true_breed``), then the model's
    prediction: a photo the owner corrected from "Pug" to "Persian" is a cat. A photo
    answered "not a cat or dog" is neither, and so is one the model found not to look like
    a cat or dog: its first breed is only the closest (``verdicts.PREDICTION_NAMES_A_BREED``).
    """
    return (
        Q(reviewed_label__in=keys)
        | Q(reviewed_label="", true_breed__in=keys)
        | (Q(reviewed_label="", true_breed="", predicted_breed__in=keys) & verdicts.PREDICTION_NAMES_A_BREED)
    )


class GalleryFilter(django_filters.FilterSet):
    breed = django_filters.ChoiceFilter(
        choices=[("Cats", breeds.choices(breeds.CAT)), ("Dogs", breeds.choices(breeds.DOG))],
        method="filter_breed",
        empty_label="Any breed",
        label="Breed",
    )
    species = django_filters.ChoiceFilter(
        choices=[(breeds.CAT, "Cats"), (breeds.DOG, "Dogs")],
        method="filter_species",
        empty_label="Cats and dogs",
        label="Species",
    )
    status = django_filters.ChoiceFilter(choices=PetImage.Status.choices, empty_label="Any status")
    verdict = django_filters.ChoiceFilter(
        choices=Verdict.choices, method="filter_verdict", empty_label="Any verdict", label="Verdict"
    )
    feedback = django_filters.ChoiceFilter(
        choices=FEEDBACK_CHOICES, method="filter_feedback", empty_label="Any answer", label="Your answer"
    )
    # In percent, as people think of confidence; stored as a fraction.
    min_confidence = django_filters.NumberFilter(
        method="filter_min_confidence",
        label="Confidence from (%)",
        widget=forms.NumberInput(attrs={"min": 0, "max": 100, "step": 1, "inputmode": "numeric"}),
    )
    max_confidence = django_filters.NumberFilter(
        method="filter_max_confidence",
        label="Confidence up to (%)",
        widget=forms.NumberInput(attrs={"min": 0, "max": 100, "step": 1, "inputmode": "numeric"}),
    )
    sort = django_filters.ChoiceFilter(
        choices=[(key, label) for key, (label, _) in SORTS.items()], method="sort_by", empty_label=None, label="Sort"
    )

    CONFIDENCE_SCALE = 100  # the form's confidences are in percent

    class Meta:
        model = PetImage
        fields: list[str] = []

    def filter_breed(self, queryset, name, value):
        return queryset.filter(labelled_as([value]))

    def filter_species(self, queryset, name, value):
        return queryset.filter(labelled_as([b.key for b in breeds.BREEDS if b.species == value]))

    def filter_verdict(self, queryset, name, value):
        return queryset.filter(verdicts.with_verdict(value))

    def filter_feedback(self, queryset, name, value):
        return queryset.filter(is_correct={"none": None, "correct": True, "wrong": False}[value])

    def filter_min_confidence(self, queryset, name, value):
        return queryset.alias(**{CONFIDENCE: verdicts.BREED_CONFIDENCE}).filter(
            **{f"{CONFIDENCE}__gte": float(value) / self.CONFIDENCE_SCALE}
        )

    def filter_max_confidence(self, queryset, name, value):
        return queryset.alias(**{CONFIDENCE: verdicts.BREED_CONFIDENCE}).filter(
            **{f"{CONFIDENCE}__lte": float(value) / self.CONFIDENCE_SCALE}
        )

    def sort_by(self, queryset, name, value):
        return queryset.alias(**{CONFIDENCE: verdicts.BREED_CONFIDENCE}).order_by(*SORTS[value][1])


class StrictFilterForm(forms.Form):
    """A filter form that refuses a parameter given empty (``?status=``): a program that
    sends one meant something, and the API's enums do not include "" (the gallery's form
    sends empty fields for "any", and keeps the lenient form)."""

    def clean(self):
        for name in self.fields:
            if name in self.data and self.data.get(name) == "":
                self.add_error(name, forms.ValidationError("Leave the parameter out rather than empty.", "blank"))
        return super().clean()


class ApiImageFilter(GalleryFilter):
    """The API's filters: the gallery's, with confidences as fractions from 0 to 1 like the
    API's ``confidence`` field, bounds checked (anything else is a 400), and no empty values."""

    CONFIDENCE_SCALE = 1
    min_confidence = django_filters.NumberFilter(
        method="filter_min_confidence", min_value=0, max_value=1, help_text="lowest confidence, 0 to 1"
    )
    max_confidence = django_filters.NumberFilter(
        method="filter_max_confidence", min_value=0, max_value=1, help_text="highest confidence, 0 to 1"
    )

    class Meta(GalleryFilter.Meta):
        form = StrictFilterForm


def filter_fields_html(params: QueryDict) -> str:
    """The gallery filter form's fields as HTML.

    Rendering them (a select of 37 breeds, every option through a widget template) cost
    as much as the rest of the gallery page together (bench/gallery.py). They depend on
    nothing but the filter values in the query, so each combination is rendered once per
    process and kept (a bounded cache: odd queries cannot grow it).
    """
    return _render_filter_fields(tuple((name, tuple(params.getlist(name))) for name in GalleryFilter.base_filters))


@functools.lru_cache(maxsize=256)
def _render_filter_fields(values: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    data = QueryDict(mutable=True)
    for name, given in values:
        data.setlist(name, list(given))
    form = GalleryFilter(data, queryset=PetImage.objects.none()).form
    return render_to_string("classifier/_filter_fields.html", {"form": form})


def gallery_neighbours(pet: PetImage) -> tuple[PetImage | None, PetImage | None]:
    """``(previous, next)``: the owner's photos beside ``pet`` in the gallery's order
    (newest first), so previous is the newer one. Two small indexed queries
    (``petimage_owner_recent``), whatever the size of the gallery."""
    own: QuerySet = PetImage.objects.filter(owner_id=pet.owner_id).only("pk", "uploaded_at")
    at = pet.uploaded_at
    newer = own.filter(Q(uploaded_at__gt=at) | Q(uploaded_at=at, pk__gt=pet.pk)).order_by("uploaded_at", "pk")
    older = own.filter(Q(uploaded_at__lt=at) | Q(uploaded_at=at, pk__lt=pet.pk)).order_by("-uploaded_at", "-pk")
    return newer.first(), older.first()
