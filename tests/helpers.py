"""Small builders for test data: images made in memory, never downloaded."""
from __future__ import annotations

import io
import itertools
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from tests.load import slowness

PROBLEM = "application/problem+json"  # RFC 9457: every error of the API (petsite/problems.py)


def image_bytes(
    size: tuple[int, int] = (96, 72), color=(200, 120, 40), fmt: str = "JPEG", exif=None, mark: int | None = None
) -> bytes:
    """An image file; ``mark`` (0 to 4095) draws its bits as black and white 8x8 blocks
    along the top edge, so that every mark gives other bytes, whatever the compression."""
    image = Image.new("RGB", size, color)
    # A gradient, so that crops and rotations change the pixels.
    for x in range(0, size[0], 8):
        for y in range(0, size[1], 8):
            image.putpixel((x, y), (x % 256, y % 256, (x * y) % 256))
    if mark is not None:
        for bit in range(12):
            shade = 255 if mark >> bit & 1 else 0
            image.paste((shade, shade, shade), (bit * 8, 0, bit * 8 + 8, 8))
    buffer = io.BytesIO()
    kwargs = {"exif": exif} if exif is not None else {}
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


_photo_numbers = itertools.count()


def upload(name: str = "rex.jpg", content: bytes | None = None, content_type: str = "image/jpeg") -> SimpleUploadedFile:
    """An uploaded file; without ``content``, a new photo each call (the same bytes twice are one image)."""
    if content is None:
        content = image_bytes(mark=next(_photo_numbers) % 4096)
    return SimpleUploadedFile(name, content, content_type)


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Wait until ``condition()`` holds. ``timeout`` is for a quiet machine: when it runs out,
    the machine's slowness is measured (``tests.load``) and the wait goes on that many times
    longer in all, so a busy machine is given the time it needs, not a failure."""
    start = time.monotonic()
    deadline = start + timeout
    stretched = False
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            factor = 1.0 if stretched else slowness()
            if factor <= 1.0:
                break
            stretched, deadline = True, start + timeout * factor
        time.sleep(0.2)
    waited = time.monotonic() - start
    raise AssertionError(f"Timed out after {waited:.0f}s waiting for {what}")


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    """``image`` saved as ``fmt`` into bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def stored_files(media_root) -> list:
    """Every file uploads left under the media folder (model checkpoints and figures apart)."""
    from pathlib import Path

    root = Path(media_root)
    return sorted(p for p in root.rglob("*") if p.is_file() and "models" not in p.parts) if root.exists() else []


def store_photo(owner, file: SimpleUploadedFile | None = None, send: bool = True):
    """A photo of ``owner`` stored and sent to the workers the way an upload is (the upload
    view's and the API's path: ``uploads.store_uploads``, then ``tasks.send_new_uploads``,
    which sends once the test's transaction commits, if it does). ``send=False`` for a
    test that finishes the image itself: the session's worker, if one runs, must not."""
    from classifier import tasks, uploads

    outcomes = uploads.store_uploads(owner, [file or upload()])
    if send:
        tasks.send_new_uploads(outcomes)
    assert outcomes[0].saved, outcomes[0].reason
    return outcomes[0].image


def assert_problem(response, status: int, code: str | None = None) -> dict:
    """The answer is a problem of ``status`` (and ``code``) with every member the format
    promises; returns its body."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["code"]
    asked = getattr(response, "request", None)
    if asked and asked.get("PATH_INFO"):  # Django's test client: the path asked for
        assert body["instance"] == asked["PATH_INFO"]
    else:
        assert urlsplit(body["instance"]).path == body["instance"]
    if code:
        assert body["code"] == code, body
    for item in body.get("errors", []):
        assert item["code"]
        assert item["detail"]
        assert len({"pointer", "parameter", "header"} & set(item)) == 1, item
    return body
