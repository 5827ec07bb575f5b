"""What test_walk's steps share: one walk's browser state, and the checks of every page.

A walk is one visitor's (then one reviewer's) pass through the site at one width. Its
steps are separate tests (``TestWalk`` in test_walk.py) that hand the open pages on to
each other through this object. Each page visited is screenshotted and checked (no
sideways scrolling, no serious or critical axe-core violation); JavaScript errors and
Content-Security-Policy violations are collected as they come. Each step ends with
:meth:`Walk.assert_clean`, which reports what the step's pages did wrong as
:class:`~tests.browser.conftest.PageProblems`: such a step fails, and the walk goes on.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from classifier.models import PetImage
from ml.breeds import BREED_KEYS
from ml.synthetic import make_fake_pets, render_pet
from registry.models import ModelVersion
from training.models import TrainingRun

from .conftest import TIMEOUT_MS, PageProblems

MARKER = "window.__petsiteWalk"  # set on a page; still there later means the page was never reloaded
AXE_URL = "/__test__/axe.min.js"  # answered by the browser itself (Walk.new_page), from the origin under test


@dataclass
class Walk:
    """One walk: its width, where its screenshots go, the pages it keeps open from step to
    step, and the problems its pages met (all of them, and those not yet reported)."""

    browser: object  # Playwright's Browser
    width: int
    axe_script: Path
    folder: Path
    base_url: str
    version: ModelVersion  # the model that arrives while the photos wait
    owner: str = ""
    tmp_path: Path | None = None  # scratch for the training run's comparison
    step: int = 0
    problems: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    minor: list[str] = field(default_factory=list)  # moderate and minor axe findings: in a file, not failed
    csp_violations: list[str] = field(default_factory=list)
    reported: dict = field(default_factory=dict)  # how many of each list a step's assert_clean reported
    contexts: list = field(default_factory=list)
    pages: dict = field(default_factory=dict)  # "upload", "gallery", "photo", "review": kept open between steps
    cards: dict = field(default_factory=dict)  # the upload page's card of each photo, by file name
    pets: list[PetImage] = field(default_factory=list)  # the owner's photos, oldest first

    def new_context(self):
        context = self.browser.new_context(
            viewport={"width": self.width, "height": 900}, base_url=self.base_url)
        self.contexts.append(context)
        return context

    def new_page(self, context, name: str):
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: self.page_errors.append(f"{page.url}: {error}"))
        page.on("console", lambda message: self._console(page, message))
        # axe-core is served from the site's own origin: the policy refuses inline scripts,
        # which is what Playwright would otherwise inject.
        page.route(AXE_URL, lambda route: route.fulfill(path=str(self.axe_script), content_type="text/javascript"))
        self.pages[name] = page
        return page

    def _console(self, page, message) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.csp_violations.append(f"{page.url}: {message.text}")

    def check(self, page, name: str, axe: bool = True) -> None:
        """Screenshot the page, then check it scrolls only vertically and has no serious
        or critical accessibility violation."""
        self.step += 1
        page.screenshot(path=self.folder / f"{self.step:02d}-{name}.png", full_page=True)
        scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if scroll_width > inner_width:
            self.problems.append(f"{name} ({page.url}): scrolls sideways at {inner_width} px ({scroll_width} px wide)")
        if not axe:
            return
        if not page.evaluate("typeof window.axe === 'object'"):
            page.add_script_tag(url=AXE_URL)
        results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        for violation in results["violations"]:
            if violation["impact"] in ("serious", "critical"):
                nodes = "; ".join(node["html"][:160] for node in violation["nodes"][:4])
                self.problems.append(
                    f"{name} ({page.url}): axe {violation['impact']} {violation['id']}: {violation['help']} — {nodes}"
                )
            else:
                self.minor.append(f"{name}: axe {violation['impact']} {violation['id']}: {violation['help']}")

    def assert_policy_enforced(self, page) -> None:
        """An inline script, as an injected one would be, is refused and reported: the
        policy is in force and the check of every other page can see a violation."""
        from playwright.sync_api import Error

        before = len(self.csp_violations)
        with pytest.raises(Error, match="Content Security Policy"):
            page.add_script_tag(content="window.__petsiteInline = true")
        assert page.evaluate("window.__petsiteInline === undefined"), "an inline script ran"
        page.wait_for_function("() => true")  # the console message is on its way: one round trip
        assert len(self.csp_violations) > before, "Chromium reported no violation for an inline script"
        del self.csp_violations[before:]

    def assert_clean(self) -> None:
        """Fail the step with what its pages met since the last step's check (a late
        JavaScript error of an earlier page included)."""
        new = []
        for kind, found in (("Content-Security-Policy violation: ", self.csp_violations),
                            ("JavaScript error: ", self.page_errors), ("", self.problems)):
            new += [kind + item for item in found[self.reported.get(kind, 0):]]
            self.reported[kind] = len(found)
        if new:
            raise PageProblems(f"{len(new)} problem(s) at {self.width} px:\n" + "\n".join(new))

    def close(self) -> None:
        while self.contexts:
            self.contexts.pop().close()


def never_reloaded(page) -> bool:
    return page.evaluate(f"{MARKER} === true")


def fake_photo(breed_index: int, seed: int) -> bytes:
    """A 320 px JPEG of one of ml.synthetic's fake pets (each call's content differs)."""
    buffer = io.BytesIO()
    render_pet(breed_index, np.random.default_rng(seed), image_size=320).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def send_files(page, files: list[tuple[str, bytes]], drop: bool) -> None:
    """All the files at once: chosen in the file input, or dropped on the drop zone, once
    the page's deferred scripts (upload.js) listen: they run before DOMContentLoaded."""
    page.wait_for_load_state("domcontentloaded")
    if not drop:
        page.set_input_files(
            "[data-upload] input[type=file]",
            files=[{"name": name, "mimeType": "image/jpeg", "buffer": content} for name, content in files],
        )
        return
    encoded = [{"name": name, "data": base64.b64encode(content).decode()} for name, content in files]
    page.evaluate(
        """files => {
            const transfer = new DataTransfer();
            for (const file of files) {
                const bytes = Uint8Array.from(atob(file.data), c => c.charCodeAt(0));
                transfer.items.add(new File([bytes], file.name, {type: "image/jpeg"}));
            }
            const zone = document.querySelector("[data-dropzone]");
            zone.dispatchEvent(new DragEvent("dragenter", {dataTransfer: transfer, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        encoded,
    )


def finished_training_run(champion, challenger_file: str, tmp_path: Path) -> TrainingRun:
    """A run that finished and was compared, the way the training worker leaves it."""
    from registry.services import local_checkpoint
    from training.comparison import compare

    challenger = ModelVersion.objects.create(name="site-run-challenger", file=challenger_file, classes=BREED_KEYS,
                                             image_size=champion.image_size)
    dataset = make_fake_pets(tmp_path / "pets", images_per_class=2, image_size=48)
    with local_checkpoint(challenger) as path:
        comparison = compare(path, champion, dataset, tmp_path / "compare")
    return TrainingRun.objects.create(state=TrainingRun.State.SUCCEEDED, is_current=False, result=challenger,
                                      base_version=champion, comparison=comparison, message="Finished.")
