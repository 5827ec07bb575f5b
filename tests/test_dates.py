"""The site's one date style (petsite/dates.py, petsite/formats/): "just now", "5 minutes ago",
else "3 Dec 2026, 16:37", never "0 minutes ago"."""
from datetime import UTC, datetime, timedelta

import pytest
from django.template import Context, Template
from django.utils.formats import date_format

from petsite.dates import when

NOW = datetime(2026, 12, 3, 16, 37, 30, tzinfo=UTC)


@pytest.mark.parametrize(("age", "words"), [
    (timedelta(0), "just now"),
    (timedelta(seconds=59), "just now"),
    (timedelta(seconds=-30), "just now"),  # another machine's clock a little ahead
    (timedelta(seconds=60), "1 minute ago"),
    (timedelta(minutes=5, seconds=59), "5 minutes ago"),
    (timedelta(minutes=59, seconds=59), "59 minutes ago"),
    (timedelta(hours=1), "3 Dec 2026, 15:37"),
    (timedelta(days=400), "29 Oct 2025, 16:37"),
    (timedelta(minutes=-5), "3 Dec 2026, 16:42"),  # the future is not "-5 minutes ago"
])
def test_when(age, words):
    assert when(NOW - age, now=NOW) == words


def test_none_is_no_words():
    assert when(None) == ""


def test_the_time_zone_is_the_sites(settings):
    settings.TIME_ZONE = "Europe/Paris"
    assert when(NOW - timedelta(days=1), now=NOW) == "2 Dec 2026, 17:37"


def test_djangos_own_formats_follow_the_same_style():
    """The admin and ``|date`` without a format read the format module, not Django's English one."""
    moment = datetime(2026, 12, 3, 16, 37, tzinfo=UTC)
    for name in ("DATETIME_FORMAT", "SHORT_DATETIME_FORMAT"):
        assert date_format(moment, name) == "3 Dec 2026, 16:37"
    for name in ("DATE_FORMAT", "SHORT_DATE_FORMAT"):
        assert date_format(moment, name) == "3 Dec 2026"
    assert Template("{{ moment }}").render(Context({"moment": moment})) == "3 Dec 2026, 16:37"
    assert Template("{% load dates %}{{ moment|when }}").render(Context({"moment": moment})) == "3 Dec 2026, 16:37"
