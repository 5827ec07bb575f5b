"""Gallery filters (django-filter): breed, species, status, feedback, confidence, sort."""
import django_filters
from django import forms
from django.db.models import F

from ml import breeds

from .models import BREED_CHOICES, PetImage

# Pending images have no confidence: they go last in either confidence order.
SORTS = {
    "newest": ("Newest first", ["-uploaded_at", "-pk"]),
    "oldest": ("Oldest first", ["uploaded_at", "pk"]),
    "confident": ("Most confident", [F("confidence").desc(nulls_last=True), "-uploaded_at"]),
    "unsure": ("Least confident", [F("confidence").asc(nulls_last=True), "-uploaded_at"]),
}
FEEDBACK_CHOICES = [("none", "No answer yet"), ("correct", "Said correct"), ("wrong", "Said wrong")]


class GalleryFilter(django_filters.FilterSet):
    breed = django_filters.ChoiceFilter(
        field_name="predicted_breed",
        choices=sorted(BREED_CHOICES, key=lambda c: c[1]),
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
    feedback = django_filters.ChoiceFilter(
        choices=FEEDBACK_CHOICES, method="filter_feedback", empty_label="Any feedback", label="Your answer"
    )
    # In percent, as people think of confidence; stored as a fraction.
    min_confidence = django_filters.NumberFilter(
        method="filter_min_confidence",
        label="Confidence from (%)",
        widget=forms.NumberInput(attrs={"min": 0, "max": 100, "step": 1}),
    )
    max_confidence = django_filters.NumberFilter(
        method="filter_max_confidence",
        label="to (%)",
        widget=forms.NumberInput(attrs={"min": 0, "max": 100, "step": 1}),
    )
    sort = django_filters.ChoiceFilter(
        choices=[(key, label) for key, (label, _) in SORTS.items()], method="sort_by", empty_label=None, label="Sort"
    )

    class Meta:
        model = PetImage
        fields: list[str] = []

    def filter_species(self, queryset, name, value):
        return queryset.filter(predicted_breed__in=[b.key for b in breeds.BREEDS if b.species == value])

    def filter_feedback(self, queryset, name, value):
        return queryset.filter(is_correct={"none": None, "correct": True, "wrong": False}[value])

    def filter_min_confidence(self, queryset, name, value):
        return queryset.filter(confidence__gte=float(value) / 100)

    def filter_max_confidence(self, queryset, name, value):
        return queryset.filter(confidence__lte=float(value) / 100)

    def sort_by(self, queryset, name, value):
        return queryset.order_by(*SORTS[value][1])
