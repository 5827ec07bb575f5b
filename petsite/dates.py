"""How the site writes a moment: "just now", "5 minutes ago", else "3 Dec 2026, 16:37".

One rule for the gallery, the photo page, the staff pages and the admin (the template
filter ``when`` in ``classifier/templatetags/dates.py``, and the admin's columns), so a
person never meets two styles of the same date. The absolute style is the format module's
(``petsite/formats/en/formats.py``), which also dates the admin's own fields.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.formats import date_format

RECENT = timedelta(hours=1)  # younger than this reads as "N minutes ago"


def absolute(moment: datetime) -> str:
    """"3 Dec 2026, 16:37" in the site's time zone."""
    return date_format(timezone.localtime(moment) if timezone.is_aware(moment) else moment, "DATETIME_FORMAT")


def when(moment: datetime | None, now: datetime | None = None) -> str:
    """A moment as people say it: "just now" within the minute, "5 minutes ago" within the
    hour, the date and time after that; "" for none. Never "0 minutes ago", and a moment a
    little in the future (clocks of two machines) is "just now", not a negative age."""
    if moment is None:
        return ""
    age = (now or timezone.now()) - moment
    if age < timedelta(minutes=1) and age > -timedelta(minutes=1):
        return "just now"
    if timedelta(0) < age < RECENT:
        minutes = int(age.total_seconds() // 60)
        return "1 minute ago" if minutes == 1 else f"{minutes} minutes ago"
    return absolute(moment)
