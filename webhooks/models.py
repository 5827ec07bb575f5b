"""A user's webhook endpoint, and one row per message sent to it (the truth about it).

As for classification (DESIGN.md), the row is the truth and a queue message only a hint:
a delivery is written in the transaction that finishes the image, tried by a task after
the commit, and tried again by the beat task when it is due (a retry, or a lost message).
"""
import base64
import secrets
import uuid

from django.conf import settings
from django.db import models

from classifier.models import PetImage

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret. Standard Webhooks: the secret is "whsec_" + base64 of its bytes


def new_secret() -> str:
    """24 random bytes, base64, in the Standard Webhooks form (the libraries' verifiers take it as it is)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class Endpoint(models.Model):
    """The one URL a user's webhooks go to, with its signing secret."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoint")
    url = models.URLField("URL", max_length=500)
    secret = models.CharField(max_length=100, default=new_secret)
    # The site's address as the user reached it when registering: the base of the absolute
    # URLs in the bodies (a worker has no request to build them from).
    base_url = models.URLField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user}: {self.url}"


class Delivery(models.Model):
    """One event for one endpoint and every try to deliver it (all with the same ``message_id``)."""

    class Event(models.TextChoices):
        IMAGE_FINISHED = "image.finished", "Image finished"
        TEST = "webhook.test", "Test"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=30, choices=Event.choices)
    image = models.ForeignKey(PetImage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message_id = models.CharField(max_length=40, unique=True, default=new_message_id)
    payload = models.JSONField(help_text="the body, as sent at every try")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="when it is tried (again); empty once over")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="webhooks_due")]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.event} {self.message_id} ({self.state})"
