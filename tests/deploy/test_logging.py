"""Logs: one line per event with time, level, logger and request id (JSON lines with
LOG_FORMAT=json), and Sentry only where SENTRY_DSN is set. Each case runs in a fresh
process, as a deployment starts, on a throwaway SQLite database."""
from __future__ import annotations

import gzip
import io
import json
import logging
import logging.config
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sentry_sdk

from petsite import logs
from tests.test_settings import run

REQUEST = """
import django, sys
django.setup()
from django.test import Client
response = Client().get("/accounts/login/", HTTP_X_REQUEST_ID=sys.argv[1])
print("answered", response.status_code, response["X-Request-ID"], flush=True)
"""


@pytest.fixture
def console():
    """What the site's console handler (settings.LOGGING) writes, for one test."""
    (handler,) = [h for h in logging.getLogger().handlers if h.name == "console"]
    buffer = io.StringIO()
    old = handler.setStream(buffer)
    yield buffer
    handler.setStream(old)


def test_a_requests_log_line_carries_its_request_id(client, db, console):
    request_id = uuid.uuid4().hex
    response = client.get("/accounts/login/", HTTP_X_REQUEST_ID=request_id)
    assert response["X-Request-ID"] == request_id  # taken from the proxy, and sent back
    lines = console.getvalue().splitlines()
    time = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    pattern = rf"^{time} INFO petsite.request \[{request_id}\] GET /accounts/login/ 200 "
    assert [line for line in lines if re.match(pattern, line)], lines
    made = client.get("/accounts/login/")["X-Request-ID"]  # no id from outside: one is made, and logged
    assert made != request_id
    assert f"[{made}] GET /accounts/login/" in console.getvalue()


def test_json_log_lines_carry_the_request_id(client, db, console):
    """The formatter LOG_FORMAT=json configures, on the site's console handler."""
    config = logs.logging_config("json")
    (handler,) = [h for h in logging.getLogger().handlers if h.name == "console"]
    text_formatter = handler.formatter
    handler.setFormatter(logging.config.DictConfigurator(config).configure_formatter(config["formatters"]["default"]))
    try:
        request_id = client.get("/accounts/login/")["X-Request-ID"]
    finally:
        handler.setFormatter(text_formatter)
    events = [json.loads(line) for line in console.getvalue().splitlines()]
    (event,) = [e for e in events if e["logger"] == "petsite.request"]
    assert event["request_id"] == request_id
    assert (event["level"], event["method"], event["path"], event["status"]) == ("INFO", "GET", "/accounts/login/", 200)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", event["time"])


@pytest.mark.slow
def test_a_json_process_writes_only_json_lines(tmp_path):
    """A fresh process with LOG_FORMAT=json: every line it writes is one JSON object, warnings included."""
    request_id = uuid.uuid4().hex
    result = run(["-c", REQUEST, request_id], tmp_path, SECRET_KEY="k" * 50, ALLOWED_HOSTS="testserver",
                 LOG_FORMAT="json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["answered", "200", request_id]
    events = [json.loads(line) for line in result.stderr.splitlines()]  # warnings included
    (event,) = [e for e in events if e["logger"] == "petsite.request"]
    assert event["request_id"] == request_id
    assert (event["level"], event["method"], event["path"], event["status"]) == ("INFO", "GET", "/accounts/login/", 200)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", event["time"])
    assert event["message"].startswith("GET /accounts/login/ 200 ")


def test_an_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="LOG_FORMAT must be one of text, json"):
        logs.logging_config("xml")


class SentryIngest(BaseHTTPRequestHandler):
    """A stand-in for Sentry's ingest endpoint on a local port: keeps what it receives."""

    received: list[tuple[str, bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        elif self.headers.get("Content-Encoding") == "br":
            import brotli

            body = brotli.decompress(body)
        SentryIngest.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


REPORT = """
import django, logging
django.setup()
import sentry_sdk
from django_guid import set_guid
print("active", sentry_sdk.get_client().is_active(), flush=True)
set_guid("0123456789abcdef0123456789abcdef")
logging.getLogger("petsite.test").error("the flux capacitor broke")
sentry_sdk.flush(timeout=10)
"""


def test_sentry_reports_errors_with_the_request_id_only_where_a_dsn_is_set(tmp_path):
    SentryIngest.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), SentryIngest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert not sentry_sdk.get_client().is_active()  # this process has no SENTRY_DSN
        dsn = f"http://publickey@127.0.0.1:{server.server_address[1]}/42"
        with_dsn = run(["-c", REPORT], tmp_path, DEBUG="1", SENTRY_DSN=dsn, SENTRY_ENVIRONMENT="staging")
        assert with_dsn.returncode == 0, with_dsn.stderr
        assert "active True" in with_dsn.stdout
    finally:
        server.shutdown()
    (path, envelope), *_ = SentryIngest.received
    assert path == "/api/42/envelope/"
    event = json.loads(envelope.splitlines()[2])  # header, item header, the event
    assert event["logentry"]["message"] == "the flux capacitor broke"
    assert event["environment"] == "staging"
    assert event["tags"]["request_id"] == "0123456789abcdef0123456789abcdef"
