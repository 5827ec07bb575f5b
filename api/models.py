"""What the API keeps of its own: the answers given to uploads sent with an ``Idempotency-Key``."""
from django.conf import settings
from django.db import models
from django.utils import timezone


class IdempotentRequest(models.Model):
    """One upload sent with an ``Idempotency-Key``, and the answer it got (``api.idempotency``).

    A row rather than a cache entry: a cache flush or a Redis restart within the key's
    24 hours would make a retry upload again, and rows can be looked at in the admin or
    the shell when a client says a key misbehaved. ``status`` is null while the first
    request is still being answered."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of the request's files, names and bytes")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="the status; null while running")
    content_type = models.CharField(max_length=100, blank=True)
    body = models.TextField(blank=True)
    location = models.CharField(max_length=2000, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotent_request_user_key")]

    def __str__(self) -> str:
        return f"{self.key} ({self.user_id})"
