from django.contrib import admin

from .models import Delivery, Endpoint


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    """Users' endpoints, for staff with the permission: the secret is never shown."""

    list_display = ["user", "url", "created_at", "secret_rotated_at"]
    search_fields = ["user__username", "url"]
    fields = ["user", "url", "base_url", "created_at", "secret_rotated_at"]
    readonly_fields = fields  # a URL changed here would skip the address check of the form

    def has_add_permission(self, request) -> bool:
        return False  # users register their own, on the token page


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """The delivery log: written by the site, read here."""

    list_display = ["message_id", "event", "endpoint", "state", "attempts", "last_status_code", "created_at",
                    "next_attempt_at"]
    list_filter = ["state", "event"]
    search_fields = ["message_id", "endpoint__user__username", "endpoint__url"]
    list_select_related = ["endpoint__user"]
    readonly_fields = [field.name for field in Delivery._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
