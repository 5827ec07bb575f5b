"""The API's JSON shapes. Images extend the site's own status serialisation
(``classifier.serializers.ImageStatusSerializer``), so the pages and the API show the same
fields from the same code. Request bodies are validated by the site's forms (``UploadForm``,
``FeedbackForm``); the request serializers here only describe them in the OpenAPI schema,
from the forms' own fields, and never validate anything."""
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from classifier import formats
from classifier.forms import FeedbackForm
from classifier.serializers import ImageStatusSerializer
from registry.models import ModelVersion


class ImageSerializer(ImageStatusSerializer):
    """An image as the API shows it: its status and result, the file's facts and the owner's answer."""

    url = serializers.HyperlinkedIdentityField(
        view_name="api:image-detail", help_text="this image in the API: poll it until `finished`"
    )
    original_name = serializers.CharField(help_text="the file name as uploaded")
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    is_correct = serializers.BooleanField(
        allow_null=True, help_text="the owner's answer: true (correct), false (wrong) or null (none yet)"
    )
    true_label = serializers.CharField(source="true_breed", help_text="the owner's label when they said wrong")
    true_label_name = serializers.CharField(source="get_true_breed_display")
    feedback_at = serializers.DateTimeField(allow_null=True)
    files = serializers.SerializerMethodField(
        help_text="the API's URLs of the photo, its thumbnail and (once made) its heatmap, for token clients"
    )

    @extend_schema_field({"type": "object", "properties": {
        "file": {"type": "string", "format": "uri"}, "thumbnail": {"type": "string", "format": "uri"},
        "heatmap": {"type": "string", "format": "uri", "nullable": True}}})
    def get_files(self, pet) -> dict:
        request = self.context.get("request")
        urls = {
            "file": reverse("api:image-file", args=[pet.pk]),
            "thumbnail": reverse("api:image-thumbnail", args=[pet.pk]),
            "heatmap": reverse("api:image-heatmap", args=[pet.pk]) if self.get_heatmap_url(pet) else None,
        }
        return {name: request.build_absolute_uri(url) if request and url else url for name, url in urls.items()}


class UploadOutcomeSerializer(serializers.Serializer):
    """What became of one file (``classifier.uploads.UploadOutcome``)."""

    name = serializers.CharField(help_text="the file's name as sent")
    ok = serializers.BooleanField(source="saved", help_text="stored (the image follows) or refused (see `error`)")
    created = serializers.BooleanField(help_text="false for a photo the user had uploaded before")
    error = serializers.CharField(source="reason", help_text="why the file was refused, in words for people")
    code = serializers.CharField(allow_null=True, help_text='why, for programs: "empty", "rate_limited", …')
    image = ImageSerializer(allow_null=True)


class UploadResultSerializer(serializers.Serializer):
    files = UploadOutcomeSerializer(many=True, help_text="one entry per file, in the order sent")
    summary = serializers.CharField(help_text='one sentence, such as "2 photos uploaded, 1 refused: …"')


@extend_schema_field({"type": "array", "items": {"type": "string", "format": "binary"}})
class PhotosField(serializers.FileField):
    """Files sent as parts of one name: an array in the schema, a file input in the browsable API's form."""


class UploadRequestSerializer(serializers.Serializer):
    """The upload's multipart body (validated by the site's ``UploadForm``)."""

    image = PhotosField(
        help_text=f"one or several photos ({formats.names_in_words()}; "
        f"{formats.converted_to_jpeg_in_words()} are stored as JPEG), each as a part named `image`"
    )


def _choices(field) -> list[tuple[str, str]]:
    """A form field's choices, groups flattened and the empty "choose…" left out."""
    flat = []
    for key, value in field.choices:
        flat.extend(value if isinstance(value, list | tuple) else [(key, value)] if key else [])
    return flat


class FeedbackRequestSerializer(serializers.Serializer):
    """The owner's answer, described from the site's ``FeedbackForm``, which validates it
    (``api.views``): the form's fields and choices, so the schema cannot promise another rule."""

    answer = serializers.ChoiceField(choices=_choices(FeedbackForm.base_fields["answer"]))
    label = serializers.ChoiceField(
        choices=_choices(FeedbackForm.base_fields["label"]), required=False,
        help_text="with `wrong`: the right breed key, or `not_a_pet`",
    )


class ModelVersionSerializer(serializers.ModelSerializer):
    """A model version in the list: which one is active and how well it did."""

    url = serializers.HyperlinkedIdentityField(view_name="api:model-detail", lookup_field="name")
    page_url = serializers.SerializerMethodField(help_text="its report on the site")
    accuracy = serializers.FloatField(allow_null=True, read_only=True)

    class Meta:
        model = ModelVersion
        fields = ["name", "url", "page_url", "is_active", "created_at", "image_size", "accuracy", "notes"]

    @extend_schema_field(serializers.URLField())
    def get_page_url(self, version: ModelVersion) -> str:
        return self.context["request"].build_absolute_uri(reverse("registry:model_detail", args=[version.name]))


class ModelVersionDetailSerializer(ModelVersionSerializer):
    """A model version with everything its report shows: classes, metrics, training arguments, history."""

    figures = serializers.SerializerMethodField(help_text="figure name -> its PNG on the site")

    class Meta(ModelVersionSerializer.Meta):
        fields = ModelVersionSerializer.Meta.fields + ["classes", "metrics", "training_args", "history", "figures"]

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "string", "format": "uri"}})
    def get_figures(self, version: ModelVersion) -> dict[str, str]:
        request = self.context["request"]
        return {name: request.build_absolute_uri(reverse("registry:model_figure", args=[version.name, name]))
                for name in version.figures}
