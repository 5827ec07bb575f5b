from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from . import services
from .models import ModelVersion, ModelWarmup


class ModelWarmupInline(admin.TabularInline):
    """Each worker machine's warm-up of the version (written by the workers: read only)."""

    model = ModelWarmup
    fields = readonly_fields = ["host", "state", "backend", "speedup", "started_at", "finished_at"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "created_at", "accuracy", "image_size", "report"]
    list_filter = ["is_active"]
    search_fields = ["name", "notes"]
    readonly_fields = [
        "file",
        "created_at",
        "classes",
        "image_size",
        "metrics",
        "training_args",
        "history",
        "figures",
        "is_active",
    ]
    actions = ["activate"]
    inlines = [ModelWarmupInline]

    @admin.display(description="Report")
    def report(self, obj: ModelVersion) -> str:
        return format_html('<a href="{}">metrics and figures</a>', reverse("registry:model_detail", args=[obj.name]))

    # Without a permission an action is offered to everyone who may see the list (reviewers).
    @admin.action(description="Make the selected model the active one", permissions=["change"])
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model version to activate.", messages.ERROR)
            return
        version = queryset.get()
        services.activate_version(version)
        self.message_user(request, f"{version.name} is now the active model.")
