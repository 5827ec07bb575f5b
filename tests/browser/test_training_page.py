"""The training pages in a real browser at desktop and phone width, as staff meet them:
no dataset on the server (said before a run is queued, with what to do), a run that
follows its stages live, a failed run's long message that wraps at 390 px, and promotion
without the tick that says why beside the box.

Every page visited is screenshotted (var/test-artifacts/browser/), must not scroll
sideways (scrollWidth <= viewport width), must have no serious or critical axe-core
violation and no Content-Security-Policy violation.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from django.utils import timezone

from ml import layout, progress
from registry.models import ModelVersion
from training import services as training_services
from training.models import TrainingRun

from .conftest import TIMEOUT_MS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "a-long-train-9!"
AXE_URL = "/__test__/axe.min.js"  # answered by the browser itself, from the origin under test


class Pages:
    """Screenshots and checks of each page visited; problems collected and reported together."""

    def __init__(self, width: int, axe_script: Path, folder: Path):
        self.width, self.axe_script, self.folder = width, axe_script, folder
        self.step, self.problems, self.errors = 0, [], []

    def new_page(self, context):
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        page.on("console", lambda message: self.errors.append(f"{page.url}: {message.text}")
                if message.type == "error" and "Content Security Policy" in message.text else None)
        page.route(AXE_URL, lambda route: route.fulfill(path=str(self.axe_script), content_type="text/javascript"))
        return page

    def check(self, page, name: str) -> None:
        self.step += 1
        page.screenshot(path=self.folder / f"{self.step:02d}-{name}.png", full_page=True)
        scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if scroll_width > inner_width:
            self.problems.append(f"{name}: scrolls sideways at {inner_width} px ({scroll_width} px wide)")
        if not page.evaluate("typeof window.axe === 'object'"):
            page.add_script_tag(url=AXE_URL)
        for violation in page.evaluate("axe.run(document, {resultTypes: ['violations']})")["violations"]:
            if violation["impact"] in ("serious", "critical"):
                nodes = "; ".join(node["html"][:160] for node in violation["nodes"][:4])
                self.problems.append(f"{name}: axe {violation['impact']} {violation['id']}: {nodes}")

    def assert_clean(self) -> None:
        assert not self.errors, "\n".join(self.errors)
        assert not self.problems, f"at {self.width} px:\n" + "\n".join(self.problems)


def log_in(page, username: str) -> None:
    from playwright.sync_api import expect

    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name=f"Log out {username}")).to_be_visible()


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
def test_training_pages(width, browser, axe_script, artifacts, live_server, settings, tmp_path, model_version,
                        other_version, django_user_model):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    # A data folder deep enough that its path alone is wider than a phone.
    missing = tmp_path / "a_data_folder_whose_name_has_no_spaces_and_no_hyphens_at_all" / "and_on_and_on_and_on"
    settings.PETSITE_DATASET_DIR = missing
    staff = django_user_model.objects.create_superuser(f"staff{width}", "staff@example.com", PASSWORD)
    pages = Pages(width, axe_script, artifacts)
    context = browser.new_context(viewport={"width": width, "height": 900}, base_url=live_server.url)
    page = pages.new_page(context)
    log_in(page, staff.username)

    no_dataset_is_said_and_refused(page, pages, missing)
    run = TrainingRun.objects.create(requested_by=staff, base_version=model_version, recipe="quick", image_size=128,
                                     state=TrainingRun.State.RUNNING, started_at=timezone.now(),
                                     heartbeat_at=timezone.now())
    a_running_run_follows_live(page, pages, run)
    a_failed_runs_message_wraps(page, pages, run, missing, width)
    promoting_a_worse_run_needs_the_tick(page, pages, model_version, other_version)

    context.close()
    pages.assert_clean()


def no_dataset_is_said_and_refused(page, pages: Pages, missing: Path) -> None:
    """No dataset: said on the page, and a run is refused before it is queued."""
    from playwright.sync_api import expect

    page.goto("/training/")
    notice = page.locator("#dataset-missing")
    expect(notice).to_contain_text("the training images are not ready on the server")
    expect(notice).to_contain_text(f"{missing} does not exist")
    pages.check(page, "training-no-dataset")
    page.get_by_role("button", name="Start training").click()
    expect(page.locator(".form-errors")).to_contain_text("The training images are not ready on the server")
    assert not TrainingRun.objects.exists()
    page.get_by_role("link", name="What to do about the training images").click()
    expect(page).to_have_url(re.compile(r"#training-needs$"))
    expect(page.locator("#training-needs")).to_be_in_viewport()
    expect(page.locator("#training-needs")).to_contain_text("Oxford-IIIT Pet dataset")
    assert "celery" not in page.content()
    assert "--download" not in page.content()
    pages.check(page, "training-refused")


def a_running_run_follows_live(page, pages: Pages, run: TrainingRun) -> None:
    """A running run: its stages, epochs and steps follow live, without a reload."""
    from playwright.sync_api import expect

    page.goto(run.get_absolute_url())
    page.evaluate("window.__notReloaded = true")
    updates = [
        {"stage": progress.TIMING, "step": 5, "steps": 16, "percent": 2},
        {"stage": progress.FEATURES_TRAIN, "step": 640, "steps": 8850, "percent": 23, "eta_seconds": 540,
         "eta_at": time.time()},
        {"stage": progress.HEAD_ON_FEATURES, "step": 120, "steps": 1400, "epoch": 4, "epochs": 40, "loss": 1.234,
         "accuracy": 0.5, "percent": 81, "eta_seconds": 100, "eta_at": time.time(),
         "history": [{"epoch": e, "stage": progress.FROZEN, "train_loss": 2.0, "valid_loss": 2.1, "accuracy": 0.4,
                      "time": 0.1} for e in (1, 2, 3)]},
    ]
    for update in updates:
        TrainingRun.objects.filter(pk=run.pk).update(progress=update, heartbeat_at=timezone.now())
        expect(page.locator("#run-stage")).to_have_text(progress.LABELS[update["stage"]])
        expect(page.locator("#run-percent")).to_have_text(f"{update['percent']}% of the whole run")
        expect(page.locator("#run-step")).to_have_text(f"{update['step']} of {update['steps']}")
    expect(page.locator("#run-epoch")).to_have_text("4 of 40")
    expect(page.locator("#run-eta")).to_have_text("about 2 min")  # 100 s, counted down since the worker saved it
    expect(page.locator("#run-epochs tbody tr")).to_have_count(3)
    expect(page.locator("#run-epochs tbody tr").first).to_contain_text(progress.EPOCH_LABELS[progress.FROZEN])
    assert page.evaluate("window.__notReloaded === true")
    pages.check(page, "training-run-live")


def a_failed_runs_message_wraps(page, pages: Pages, run: TrainingRun, missing: Path, width: int) -> None:
    """It fails on the dataset: the long message wraps at 390 px."""
    from playwright.sync_api import expect

    problems = layout.dataset_problems(missing)
    message = f"The run failed. {training_services.failure_words(layout.DatasetError('gone', problems))} " \
              "No model was registered."
    TrainingRun.objects.filter(pk=run.pk).update(state=TrainingRun.State.FAILED, is_current=False, message=message)
    expect(page.locator("#run-progress")).to_be_hidden()  # finished: the page reloaded once
    expect(page.locator("#run-state")).to_have_text("Failed")
    expect(page.locator("#run-message")).to_have_text(message)
    expect(page.get_by_role("link", name="What a run needs on the server")).to_be_visible()
    width_of_message = page.evaluate("document.getElementById('run-message').scrollWidth")
    assert width_of_message <= width, f"the failure text is {width_of_message} px wide at {width} px"
    pages.check(page, "training-run-failed")


def promoting_a_worse_run_needs_the_tick(page, pages: Pages, model_version, other_version) -> None:
    """A finished run that did worse: promote without the tick says why, beside the box."""
    from playwright.sync_api import expect

    worse = TrainingRun.objects.create(state=TrainingRun.State.SUCCEEDED, is_current=False, result=other_version,
                                       base_version=model_version, message="Finished.",
                                       comparison={"recommended": False, "champion": model_version.name, "sets": {}})
    page.goto(worse.get_absolute_url())
    page.get_by_role("button", name=f"Promote {other_version.name}").click()
    error = page.locator("#promote-error")
    expect(error).to_contain_text("tick the box to promote it anyway")
    expect(error).to_be_in_viewport()
    expect(page.get_by_label("Promote it although it did worse than the active model")).to_have_attribute(
        "aria-invalid", "true")
    assert ModelVersion.objects.get(is_active=True) == model_version
    pages.check(page, "training-promote-refused")
    page.get_by_label("Promote it although it did worse than the active model").check()
    page.get_by_role("button", name=f"Promote {other_version.name}").click()
    expect(page.locator("#promotion")).to_contain_text(f"{other_version.name} is the active model")
    assert ModelVersion.objects.get(is_active=True) == other_version
