"""Webhook fixtures: a real HTTP receiver on 127.0.0.1, and images finished the way a worker finishes them."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from classifier import classification
from classifier.models import PetImage
from tests.api.conftest import client_with_token


def finish(pet: PetImage, version, failed: bool = False) -> None:
    """Finish ``pet`` through the worker's own path (claim, then save or fail), which sends
    ``classifier.signals.image_finished``."""
    token, claimed = classification.claim([pet.pk], version)
    assert [p.pk for p in claimed] == [pet.pk]
    if failed:
        assert classification._fail(claimed[0], token, PetImage.Error.UNREADABLE, "test: unreadable")
        return
    prediction = {"predicted_breed": "pug", "confidence": 0.875, "verdict": "confident", "verdict_scores": {},
                  "top_k": [{"breed": "pug", "probability": 0.875}]}
    assert classification.record_prediction(claimed[0], token, version, prediction, timezone.now())


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    path: str


@dataclass
class Receiver:
    """What the receiver got, and what it answers: ``statuses`` in turn, then ``final`` for ever."""

    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    final: int = 200
    location: str = ""


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            headers = {name.lower(): value for name, value in self.headers.items()}
            receiver.requests.append(Received(self.rfile.read(length), headers, self.path))
            status = receiver.statuses.pop(0) if receiver.statuses else receiver.final
            self.send_response(status)
            if receiver.location:
                self.send_header("Location", receiver.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def owner(user):
    """The images' owner as an API client with a token."""
    return client_with_token(user)


@pytest.fixture
def receiver(settings):
    """An HTTP server on 127.0.0.1 in a thread; private addresses are allowed for it."""
    settings.PETSITE_WEBHOOKS_ALLOW_PRIVATE = True
    box = Receiver(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(box))
    box.url = f"http://127.0.0.1:{server.server_port}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box
    server.shutdown()
    server.server_close()
