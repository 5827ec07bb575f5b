"""An image's status and result as JSON: one serialisation for the site's scripts and the API.

The pages' live status (the single and the bulk status views, the upload's JSON answer)
and the JSON API (``api.serializers.ImageSerializer`` adds its own fields to these) read
the same fields from here, so the two cannot drift apart. A DRF serializer rather than a
dict: its declared types are what the API's OpenAPI schema says.
"""
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ml.models import Verdict

from . import explanations
from .models import BREED_CHOICES, PetImage


class TopKSerializer(serializers.Serializer):
    """One of the likeliest breeds (``PetImage.top_k_display``)."""

    breed = serializers.ChoiceField(choices=BREED_CHOICES, help_text="breed key, as in ml/breeds.py")
    name = serializers.CharField(help_text="the breed's display name")
    probability = serializers.FloatField()


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
    predicted_breed = serializers.CharField(help_text="breed key; empty until classified")
    breed_name = serializers.CharField(source="get_predicted_breed_display")
    verdict = serializers.ChoiceField(choices=[("", "None yet")] + Verdict.choices)
    verdict_display = serializers.CharField(source="get_verdict_display")
    headline = serializers.CharField(help_text='the answer in words: "Pug", "Not sure: maybe …", "Not a cat or dog"')
    confident = serializers.BooleanField(source="is_confident", help_text="a result worth its percentage")
    confidence = serializers.FloatField(allow_null=True, help_text="the top breed's probability, 0 to 1")
    top_k = TopKSerializer(many=True, source="top_k_display")
    model_version = serializers.CharField(source="model_version.name", allow_null=True)
    classified_at = serializers.DateTimeField(allow_null=True)
    uploaded_at = serializers.DateTimeField()
    detail_url = serializers.SerializerMethodField(help_text="the photo's page on the site")
    thumbnail_url = serializers.SerializerMethodField(help_text="the thumbnail (JPEG), for a logged-in browser")
    heatmap_url = serializers.SerializerMethodField(help_text="the Grad-CAM heatmap, once a worker has made it")

    def get_detail_url(self, pet: PetImage) -> str:
        return reverse("classifier:detail", args=[pet.pk])

    def get_thumbnail_url(self, pet: PetImage) -> str:
        return reverse("classifier:thumbnail", args=[pet.pk])

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_heatmap_url(self, pet: PetImage) -> str | None:
        return reverse("classifier:heatmap", args=[pet.pk]) if explanations.heatmap_is_current(pet) else None


def image_status(pet: PetImage) -> dict:
    """An image's status and result as the pages' scripts read it: the one serialisation
    behind the single and the bulk status views, the upload's JSON answer and the API."""
    return ImageStatusSerializer(pet).data
