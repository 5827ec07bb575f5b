"""The site's one date style, "3 Dec 2026, 16:37" (``FORMAT_MODULE_PATH`` in settings).

Django localises dates by default and its English format module ("Dec. 3, 2026, 4:37 p.m.",
"12/03/2026") wins over the ``DATETIME_FORMAT`` settings, so the style lives here, where
every ``|date`` without a format, every ``SHORT_DATETIME_FORMAT`` and the admin's date
columns and read-only fields find it. Recent moments read as "5 minutes ago":
``petsite.dates.when`` (the ``when`` template filter).
"""
DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H:i"
SHORT_DATE_FORMAT = "j M Y"
SHORT_DATETIME_FORMAT = "j M Y, H:i"
TIME_FORMAT = "H:i"
MONTH_DAY_FORMAT = "j F"
YEAR_MONTH_FORMAT = "F Y"
