"""Dates as the site writes them: ``{% load dates %}`` then ``{{ moment|when }}``."""
from datetime import datetime

from django import template

from petsite import dates

register = template.Library()


@register.filter
def when(moment: datetime | None) -> str:
    """"just now", "5 minutes ago", else "3 Dec 2026, 16:37" (``petsite.dates.when``)."""
    return dates.when(moment)
