"""Logging and error reporting for every process (web, worker, beat, commands).

One event, one line: time, level, logger and the request id, then the message. The id
is django-guid's: made per request (or taken from a proxy's ``X-Request-ID``), sent
back in the response and carried into the Celery tasks the request sends, so a
worker's lines about an upload share the id of the request that stored it. With
``LOG_FORMAT=json`` each line is a JSON object for a log collector (tracebacks
included, still one line); the text format is for people and prints tracebacks as is.

Nothing here imports Django at module level: settings.py builds ``LOGGING`` from it.
"""
from __future__ import annotations

import logging
import logging.config
import time
from collections.abc import Callable

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s"
FORMATS = ("text", "json")


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record: the current request's or task's id, or "-"."""

    def filter(self, record: logging.LogRecord) -> bool:
        from django_guid import get_guid

        record.request_id = get_guid() or "-"
        return True


def logging_config(log_format: str = "text", level: str = "INFO") -> dict:
    """The ``LOGGING`` dictConfig: one console handler, text or JSON lines."""
    if log_format not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {log_format!r}.")
    if log_format == "json":
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    else:
        formatter = {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": formatter},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "default", "filters": ["request_id"]}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django": {"handlers": [], "level": "INFO"},  # Django's own console handler would repeat lines
            "django.db.backends": {"level": "INFO"},  # no SQL, whatever LOG_LEVEL says
            "django_guid": {"level": "WARNING"},  # it logs every id it makes at INFO
        },
    }


def configure(config: dict) -> None:
    """Apply ``config`` (settings.LOGGING_CONFIG names this; Celery's processes call it
    too). Python's warnings become log events as well, so every line has the format."""
    logging.captureWarnings(True)
    logging.config.dictConfig(config)


request_log = logging.getLogger("petsite.request")


class RequestLogMiddleware:
    """One line per request: method, path, status, time taken and the client's address
    (``petsite.clientip``: the proxy's X-Forwarded-For where proxies are configured)."""

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request):
        from petsite.clientip import client_ip

        start = time.monotonic()
        response = self.get_response(request)
        duration_ms = round((time.monotonic() - start) * 1000, 1)
        client = client_ip(request)
        request_log.info(
            "%s %s %s %.1fms from %s", request.method, request.path, response.status_code, duration_ms, client,
            extra={"method": request.method, "path": request.path, "status": response.status_code,
                   "duration_ms": duration_ms, "client": client},
        )
        return response


def init_sentry(dsn: str, environment: str, traces_sample_rate: float = 0.0) -> None:
    """Report errors to Sentry (SENTRY_DSN), each tagged with its request id. sentry-sdk
    enables its Django, Celery and Redis integrations by itself; no personal data
    (users' addresses, cookies) is sent."""
    import sentry_sdk

    sentry_sdk.init(
        dsn=dsn, environment=environment, traces_sample_rate=traces_sample_rate, send_default_pii=False,
        before_send=_tag_request_id,
    )


def _tag_request_id(event: dict, hint: dict) -> dict:
    from django_guid import get_guid

    if get_guid():
        event.setdefault("tags", {})["request_id"] = get_guid()
    return event
