"""The per-user upload rate (``PETSITE_UPLOAD_RATE``) for API uploads.

The same counter as the site's upload form (``classifier.limits.upload_usage``): photos
sent through the API and through the site share one allowance. Over it, DRF answers 429
with ``Retry-After``.
"""
from rest_framework.throttling import BaseThrottle

from classifier.limits import upload_usage


class UploadRateThrottle(BaseThrottle):
    """Counts each upload request as one photo (the view counts the further files of a
    request, ``classifier.limits.store_uploads_within_rate``); other methods are free."""

    usage: dict | None = None

    def allow_request(self, request, view) -> bool:
        if request.method != "POST":
            return True
        self.usage = upload_usage(request, increment=True)
        return self.usage is None or not self.usage["should_limit"]

    def wait(self) -> float | None:
        return max(1, self.usage["time_left"]) if self.usage else None
