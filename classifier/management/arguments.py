"""Argument types shared by the classifier's management commands."""
import argparse
from datetime import datetime

from django.utils import timezone


def since(value: str) -> datetime:
    """A date (2026-11-25) or date and time (2026-11-25T14:00), as an aware datetime."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date like 2026-11-25 or 2026-11-25T14:00, not {value!r}"
        ) from None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment
