"""Real-browser fixtures: Debian's Chromium driven by Playwright, axe-core, screenshots.

Where Chromium (``/usr/bin/chromium`` or ``PETSITE_CHROMIUM``) or Playwright is missing,
the browser tests skip and say why; with ``PETSITE_REQUIRE_BROWSER=1`` (CI, see ``.ci/run``)
they fail instead, so CI never skips them silently.

axe-core is vendored (``tests/browser/vendor/axe-core/``, version and licence in its README):
the tests are hermetic and fetch nothing.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
ARTIFACTS = Path(settings.BASE_DIR) / "var" / "test-artifacts" / "browser"
TIMEOUT_MS = 60_000  # generous: the machine is shared and slow; waits end as soon as their condition holds


class PageProblems(AssertionError):
    """What the pages of a step did wrong (axe-core, sideways scrolling, JavaScript errors,
    policy violations): the step fails, but the pages work, so the steps after it still run."""


# --- ordered steps: a class with ``ordered_steps = True`` is one walk per parameter, each
# test one step that goes on from where the one before stopped. When a step fails, the
# steps after it (of that parameter) are skipped and name it: they would fail for its
# reason, not theirs. A step that fails with PageProblems does not stop the walk.
_stopped: dict[tuple, str] = {}


def _walk_key(item) -> tuple | None:
    if not getattr(item.cls, "ordered_steps", False):
        return None
    callspec = getattr(item, "callspec", None)
    return (item.cls, callspec.id if callspec else "")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Ordered walks run last: they keep the database for a whole walk and flush it at the
    end, as a transactional test does after each test (and pytest-django runs those after
    the tests that need the migrations' rows)."""
    items.sort(key=lambda item: _walk_key(item) is not None)


def pytest_runtest_setup(item):
    key = _walk_key(item)
    if key in _stopped:
        pytest.skip(f"the walk stopped at {_stopped[key]}")


def pytest_runtest_makereport(item, call):
    key = _walk_key(item)
    if key is None or call.excinfo is None or call.when == "teardown":
        return
    if not call.excinfo.errisinstance((pytest.skip.Exception, PageProblems)):
        _stopped.setdefault(key, item.name)


def browser_required() -> bool:
    return os.environ.get("PETSITE_REQUIRE_BROWSER", "") == "1"


def unavailable(reason: str):
    """Skip with ``reason``, or fail with it where a browser is required (CI)."""
    if browser_required():
        pytest.fail(f"{reason} (PETSITE_REQUIRE_BROWSER=1: the browser tests must run here)", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> Path:
    return Path(os.environ.get("PETSITE_CHROMIUM") or "/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    path = chromium_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        unavailable(
            f"Chromium not found at {path}: install it (apt-get install chromium) or set PETSITE_CHROMIUM to its path"
        )
    return path


@pytest.fixture(scope="module")
def browser(chromium_executable):
    """A headless Chromium for one test module. Not for the session: Playwright's sync API
    keeps an event loop in this thread, which the tests after these need not meet."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed in this environment")
    # Playwright's sync API runs an event loop in this thread; Django's ORM, used by the
    # tests between browser calls, would take that for async code. Only while a browser runs.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            try:
                chromium = playwright.chromium.launch(executable_path=str(chromium_executable), args=CHROMIUM_ARGS)
            except Exception as error:  # a broken install: say so, the way a missing one does
                unavailable(f"Chromium at {chromium_executable} did not start: {error}")
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


AXE_SCRIPT = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"  # axe-core 4.14.1


@pytest.fixture(scope="session")
def axe_script() -> Path:
    """The vendored axe.min.js, checked against its digest: a truncated or edited copy
    would check nothing and pass, so it fails here instead (a missing one too: it is part
    of the repository, not of the machine)."""
    digest = hashlib.sha256(AXE_SCRIPT.read_bytes()).hexdigest()
    assert digest == AXE_SHA256, f"{AXE_SCRIPT} is not axe-core 4.14.1 (sha256 {digest}); see its README"
    return AXE_SCRIPT


@pytest.fixture
def artifacts(request) -> Path:
    """This test's screenshot folder under var/test-artifacts/browser/ (emptied first)."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")
    folder = ARTIFACTS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
