"""An image's status and result as JSON: one serialisation for the site's scripts and the API.

The pages' live status (the single and the bulk status views, the upload's JSON answer)
and the JSON API (``api.serializers.ImageSerializer`` adds its own fields to these) read
the same fields from here, so the two cannot drift apart. A DRF serializer rather than a
dict: its declared types are what the API's OpenAPI schema says.
"""
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from registry.models import Verdict

from . import explanations
from .models import BREED_CHOICES, PetImage


class ProbabilityField(serializers.FloatField):
    """A probability from 0 to 1, to 4 places (0.01 %): the same precision for an image's
    ``confidence`` and each of its ``top_k``, finer than any page shows."""

    PLACES = 4

    def __init__(self, **kwargs) -> None:
        super().__init__(min_value=0, max_value=1, **kwargs)

    def to_representation(self, value) -> float:
        return round(float(value), self.PLACES)


class TopKSerializer(serializers.Serializer):
    """One of the likeliest breeds (``PetImage.top_k_display``)."""

    breed = serializers.ChoiceField(choices=BREED_CHOICES, help_text="breed key, as in ml/breeds.py")
    name = serializers.CharField(help_text="the breed's display name")
    probability = ProbabilityField()


class DisplaySerializer(serializers.Serializer):
    """What the pages say about the result, in words (``classifier.verdicts.VerdictDisplay``):
    the pages' scripts show these as they are, so a live update reads as a reload does."""

    note = serializers.CharField(help_text="the sentence under the answer: why not sure, or why not a cat or dog")
    top_k_title = serializers.CharField(
        help_text='what the breeds are: "The likeliest breeds", or "Closest breeds, all unlikely"'
    )
    top_k_bars = serializers.BooleanField(
        help_text="the breeds are shown with their probabilities (false when the photo does not look like a pet: "
        "its probabilities only rank breeds that are all unlikely)"
    )
    correct_choice = serializers.CharField(help_text='the "correct" answer in words: "Correct, it is a Pug"')
    heatmap_alt = serializers.CharField(help_text="the heatmap's alternative text")
    uploaded = serializers.CharField(help_text='when it was uploaded: "just now", "5 minutes ago", "3 Dec 2026, 16:37"')


class ImageStatusSerializer(serializers.Serializer):
    """What a page's script (and an API client) needs to show an image's state and answer."""

    id = serializers.IntegerField(source="pk")
    status = serializers.ChoiceField(choices=PetImage.Status.choices)
    status_display = serializers.CharField(source="get_status_display")
    finished = serializers.BooleanField(source="is_finished", help_text="done or failed: nothing more will change")
    message = serializers.CharField(
        source="status_message",
        help_text="what the owner is told about a waiting or failed image, in words: the new model is getting "
        "ready, it takes longer than usual, why it failed; empty otherwise",
    )
    error_code = serializers.ChoiceField(
        choices=PetImage.Error.choices, help_text="why it is not classified (yet), for programs: `no_active_model`, "
        "`unreadable`, `too_many_tries`, …; empty when nothing is wrong. `message` says it in words"
    )
    predicted_breed = serializers.CharField(help_text="breed key; empty until classified")
    breed_name = serializers.CharField(source="get_predicted_breed_display")
    verdict = serializers.ChoiceField(choices=[("", "None yet")] + Verdict.choices)
    verdict_display = serializers.CharField(source="get_verdict_display")
    headline = serializers.CharField(
        help_text='the answer in words: "Pug", "Not sure. Closest breed: Pug", "Does not look like a cat or dog"'
    )
    confident = serializers.BooleanField(source="is_confident", help_text="a result worth its percentage")
    confidence = ProbabilityField(
        allow_null=True, help_text="the first breed's probability among the 37 breeds, 0 to 1 (it says nothing "
        "about a `not_a_pet` photo: the probabilities of the breeds always add up to 1)"
    )
    top_k = TopKSerializer(many=True, source="top_k_display")
    display = DisplaySerializer(help_text="what the site's pages say about the result, in words")
    model_version = serializers.CharField(source="model_version.name", allow_null=True)
    classified_at = serializers.DateTimeField(allow_null=True)
    uploaded_at = serializers.DateTimeField()
    detail_url = serializers.SerializerMethodField(help_text="the photo's page on the site")
    thumbnail_url = serializers.SerializerMethodField(help_text="the thumbnail (JPEG), for a logged-in browser")
    heatmap_url = serializers.SerializerMethodField(help_text="the Grad-CAM heatmap, once a worker has made it")

    @extend_schema_field(serializers.URLField())
    def get_detail_url(self, pet: PetImage) -> str:
        return self._url("classifier:detail", pet)

    @extend_schema_field(serializers.URLField())
    def get_thumbnail_url(self, pet: PetImage) -> str:
        return self._url("classifier:thumbnail", pet)

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_heatmap_url(self, pet: PetImage) -> str | None:
        return self._url("classifier:heatmap", pet) if explanations.heatmap_is_current(pet) else None

    def _url(self, name: str, pet: PetImage) -> str:
        """A page or file of the site: absolute for the API (which passes the request, as
        for its own ``url`` and ``files``), a path for the site's scripts."""
        path = reverse(name, args=[pet.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


def image_status(pet: PetImage) -> dict:
    """An image's status and result as the pages' scripts read it: the one serialisation
    behind the single and the bulk status views, the upload's JSON answer and the API."""
    return ImageStatusSerializer(pet).data
