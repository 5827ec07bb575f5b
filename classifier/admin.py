from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from .models import PetImage


@admin.register(PetImage)
class PetImageAdmin(admin.ModelAdmin):
    list_display = ["preview", "original_name", "owner", "status", "predicted_breed", "confidence_pct", "model_version", "uploaded_at"]
    list_filter = ["status", "model_version", "predicted_breed"]
    search_fields = ["owner__username", "original_name", "sha256"]
    date_hierarchy = "uploaded_at"
    list_select_related = ["owner", "model_version"]
    readonly_fields = [
        "preview", "owner", "image", "original_name", "thumbnail", "sha256", "width", "height", "uploaded_at",
        "status", "error_message", "attempts", "predicted_breed", "confidence", "top_k", "model_version", "classified_at",
        "is_correct", "true_breed", "feedback_at",
    ]

    @admin.display(description="Image")
    def preview(self, obj: PetImage) -> str:
        if not obj.thumbnail:
            return "-"
        return format_html('<img src="{}" alt="" style="max-height:80px">', reverse("classifier:thumbnail", args=[obj.pk]))

    @admin.display(description="Confidence", ordering="confidence")
    def confidence_pct(self, obj: PetImage) -> str:
        return f"{obj.confidence:.0%}" if obj.confidence is not None else "-"
