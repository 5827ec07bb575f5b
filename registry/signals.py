"""Signals the ml app sends, so that other apps react without ml importing them."""
from django.dispatch import Signal

# Sent (after commit) when a ModelVersion becomes the active one; argument: version.
model_activated = Signal()
# Sent (after commit) when a ModelVersion is registered (active or not); argument: version.
model_registered = Signal()
