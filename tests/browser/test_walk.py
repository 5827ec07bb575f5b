"""The owner's and the reviewer's walk through the site in a real browser, at desktop and phone width.

A live server, a real Celery worker and Debian's Chromium: sign up, drop three files at
once (two photos, one broken), watch the results arrive on the upload cards, in the
gallery and on the photo page without a reload, show the heatmap, answer "wrong", find
the photo first in the reviewer's queue, open the admin and the API's docs, delete a
photo. Every page visited is screenshotted (var/test-artifacts/browser/), checked with
axe-core (no serious or critical violation) and checked for horizontal scrolling, and
no page may meet a Content-Security-Policy violation (Chromium reports each in the
console): the policy allows no inline script or style.

The model is activated only once the photos wait in the gallery and on their page, so
that "while they classify" is certain, not a race with a fast worker.
With PETSITE_UPDATE_SCREENSHOTS=1 the desktop walk also writes the README's screenshots.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings

from classifier.models import PetImage, label_name
from ml.breeds import BREED_KEYS
from ml.synthetic import make_fake_pets, render_pet
from registry.models import ModelVersion
from registry.services import activate_version
from training.models import TrainingRun

from .conftest import TIMEOUT_MS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOCS_SCREENSHOTS = Path(django_settings.BASE_DIR) / "docs" / "screenshots"
PASSWORD = "a-long-walk-9!"
MARKER = "window.__petsiteWalk"  # set on a page; still there later means the page was never reloaded
AXE_URL = "/__test__/axe.min.js"  # answered by the browser itself (Walk.new_page), from the origin under test


def fake_photo(breed_index: int, seed: int) -> bytes:
    """A 320 px JPEG of one of ml.synthetic's fake pets (each call's content differs)."""
    buffer = io.BytesIO()
    render_pet(breed_index, np.random.default_rng(seed), image_size=320).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class Walk:
    """The pages of one walk: each step is screenshotted and checked; problems are
    collected and reported together at the end, so one run shows all of them."""

    def __init__(self, width: int, axe_script: Path, folder: Path):
        self.width, self.axe_script, self.folder = width, axe_script, folder
        self.step = 0
        self.problems: list[str] = []
        self.page_errors: list[str] = []
        self.minor: list[str] = []  # moderate and minor axe findings: reported in a file, not failed
        self.csp_violations: list[str] = []

    def new_page(self, context):
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: self.page_errors.append(f"{page.url}: {error}"))
        page.on("console", lambda message: self._console(page, message))
        # axe-core is served from the site's own origin: the policy refuses inline scripts,
        # which is what Playwright would otherwise inject.
        page.route(AXE_URL, lambda route: route.fulfill(path=str(self.axe_script), content_type="text/javascript"))
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

        with pytest.raises(Error, match="Content Security Policy"):
            page.add_script_tag(content="window.__petsiteInline = true")
        assert page.evaluate("window.__petsiteInline === undefined"), "an inline script ran"
        page.wait_for_function("() => true")  # the console message is on its way: one round trip
        assert self.csp_violations, "Chromium reported no violation for an inline script"
        self.csp_violations.clear()

    def assert_clean(self) -> None:
        assert not self.csp_violations, "Content-Security-Policy violations:\n" + "\n".join(self.csp_violations)
        assert not self.page_errors, "JavaScript errors:\n" + "\n".join(self.page_errors)
        assert not self.problems, f"{len(self.problems)} problem(s) at {self.width} px:\n" + "\n".join(self.problems)


def never_reloaded(page) -> bool:
    return page.evaluate(f"{MARKER} === true")


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
    from training import services as training_services

    challenger = ModelVersion.objects.create(name="site-run-challenger", file=challenger_file, classes=BREED_KEYS,
                                             image_size=champion.image_size)
    dataset = make_fake_pets(tmp_path / "pets", images_per_class=2, image_size=48)
    with local_checkpoint(challenger) as path:
        comparison = training_services.compare(path, champion, dataset, tmp_path / "compare")
    return TrainingRun.objects.create(state=TrainingRun.State.SUCCEEDED, is_current=False, result=challenger,
                                      base_version=champion, comparison=comparison, message="Finished.")


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
def test_walk(
    width, browser, axe_script, artifacts, live_server, worker, other_version, stored_checkpoints, tmp_path,
    django_user_model,
):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    update_docs = os.environ.get("PETSITE_UPDATE_SCREENSHOTS") == "1" and width == 1280
    owner = f"walker{width}"
    walk = Walk(width, axe_script, artifacts)
    viewport = {"width": width, "height": 900}
    context = browser.new_context(viewport=viewport, base_url=live_server.url)
    page = walk.new_page(context)

    # --- a visitor signs up ----------------------------------------------------------------
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Which breed is your cat or dog?")
    walk.assert_policy_enforced(page)
    walk.check(page, "landing")
    page.get_by_role("main").get_by_role("link", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    walk.check(page, "login")
    page.get_by_role("link", name="Create an account").click()
    expect(page).to_have_url(re.compile(r"/accounts/signup/"))
    walk.check(page, "signup")
    page.get_by_label("Username").fill(owner)
    page.locator("#id_password1").fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(re.compile(r"/upload/$"))
    expect(page.get_by_role("button", name=f"Log out {owner}")).to_be_visible()
    assert django_user_model.objects.filter(username=owner).exists()
    walk.check(page, "upload-no-model")

    page.get_by_role("link", name="My pets").click()
    expect(page.get_by_text("No photos yet.")).to_be_visible()
    walk.check(page, "gallery-empty")
    page.get_by_role("link", name="Upload a photo").click()
    expect(page).to_have_url(re.compile(r"/upload/$"))

    # --- three files at once: two photos and a broken file ----------------------------------
    files = [("rex.jpg", fake_photo(3, seed=width)), ("tom.jpg", fake_photo(20, seed=width + 1)),
             ("broken.jpg", b"This is not a photo at all.\n" * 40)]
    page.evaluate(f"{MARKER} = true")
    send_files(page, files, drop=width < 600)  # the phone walk drops them, the desktop one chooses them
    cards = page.locator("[data-upload-cards] .upload-card")
    expect(cards).to_have_count(3)
    broken = cards.filter(has_text="broken.jpg")
    expect(broken).to_have_class(re.compile(r"\brefused\b"))
    expect(broken).to_contain_text("This file is not an image we can read")
    photo_cards = {name: cards.filter(has_text=name) for name in ("rex.jpg", "tom.jpg")}
    for card in photo_cards.values():  # the worker has looked and found no model yet
        expect(card).to_contain_text("will be classified as soon as the classifier is set up")
    walk.check(page, "upload-cards-waiting")

    pets = list(PetImage.objects.filter(owner__username=owner).order_by("uploaded_at", "pk"))
    assert sorted(pet.original_name for pet in pets) == ["rex.jpg", "tom.jpg"]
    # The owner answers on the newest photo (the review queue's first, among those that need
    # review) and deletes the other.
    other, answered = pets

    # --- the gallery and a photo's page, open while the photos wait ---------------------------
    gallery = walk.new_page(context)
    gallery.goto("/")
    tiles = gallery.locator("[data-live-gallery] .tile")
    expect(tiles).to_have_count(2)
    expect(tiles.locator(".caption .status")).to_have_text(["Waiting", "Waiting"])
    gallery.evaluate(f"{MARKER} = true")
    walk.check(gallery, "gallery-waiting")

    photo = walk.new_page(context)
    photo.goto(f"/images/{answered.pk}/")
    expect(photo.locator("#status")).to_have_text("Waiting")
    expect(photo.locator("#message")).to_contain_text("as soon as the classifier is set up")
    expect(photo.locator("#feedback")).to_have_count(0)  # nothing to judge yet
    photo.evaluate(f"{MARKER} = true")
    walk.check(photo, "photo-waiting")

    # --- a model arrives: every open page shows the results in place ---------------------------
    activate_version(other_version)
    expect(gallery.locator(".tile[data-finished='true']")).to_have_count(2)
    for pet in pets:
        pet.refresh_from_db()
        assert pet.status == PetImage.Status.DONE, (pet.status, pet.error_message)
        # The answer in words ("Pug", "Not sure: maybe Pug or Boxer", "Not a cat or dog").
        card, headline = photo_cards[pet.original_name], pet.headline()
        expect(card).to_contain_text(f"Uploaded. {headline}")
        if pet.verdict != "not_a_pet":
            expect(card).to_contain_text(label_name(pet.predicted_breed))
        expect(gallery.locator(f'.tile[data-id="{pet.pk}"] .caption .breed')).to_have_text(headline)
    expect(photo.locator("#breed")).to_have_text(answered.headline())
    expect(photo.locator("#status")).to_have_text("Done")
    expect(photo.locator("#top-k li")).to_have_count(5)
    expect(photo.locator("#feedback")).to_be_visible()
    for open_page in (page, gallery, photo):
        assert never_reloaded(open_page), f"{open_page.url} was reloaded"
    walk.check(page, "upload-cards-results")
    walk.check(gallery, "gallery-results")
    if update_docs:
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        gallery.screenshot(path=DOCS_SCREENSHOTS / "gallery.png")
    walk.check(photo, "photo-result")

    # --- "Show why": the heatmap a worker makes for the result --------------------------------
    toggle = photo.locator("#heatmap-toggle")
    expect(toggle).to_be_visible(timeout=2 * TIMEOUT_MS)
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(photo.locator("#heatmap-img")).to_be_visible()
    expect(photo.locator("#photo-img")).to_be_hidden()
    photo.wait_for_function("() => { const i = document.getElementById('heatmap-img'); return i.naturalWidth > 0; }")
    walk.check(photo, "photo-heatmap")
    if update_docs:
        photo.screenshot(path=DOCS_SCREENSHOTS / "photo-heatmap.png")

    # --- "Wrong, it is a …" -----------------------------------------------------------------
    answer_key, answer_name = ("pug", "Pug") if answered.predicted_breed == "beagle" else ("beagle", "Beagle")
    photo.get_by_role("searchbox", name="Search the breeds").fill(answer_name[:4].lower())
    expect(photo.get_by_role("radio", name="Wrong, it is a …")).to_be_checked()
    expect(photo.get_by_label("The right breed")).to_have_value(answer_key)
    photo.get_by_role("button", name="Send answer").click()
    expect(photo.get_by_text("Thanks! Your answer helps the next model.")).to_be_visible()
    expect(photo.locator("#feedback-state")).to_contain_text(f"“Wrong, it is a {answer_name}.”")
    answered.refresh_from_db()
    assert (answered.is_correct, answered.true_breed) == (False, answer_key)
    walk.check(photo, "photo-answered")

    # --- a reviewer finds that photo first in the queue ---------------------------------------
    django_user_model.objects.create_superuser("reviewer", "reviewer@example.com", PASSWORD)
    reviewer_context = browser.new_context(viewport=viewport, base_url=live_server.url)
    review = walk.new_page(reviewer_context)
    review.goto("/accounts/login/")
    review.get_by_label("Username").fill("reviewer")
    review.get_by_label("Password").fill(PASSWORD)
    review.get_by_role("button", name="Log in").click()
    expect(review.get_by_role("button", name="Log out reviewer")).to_be_visible()
    review.get_by_role("link", name="Review", exact=True).click()
    expect(review.locator("#waiting")).to_have_text("2")  # the random model is unsure of both
    expect(review.get_by_role("main")).to_contain_text("(1 where the owner said the model was wrong")
    walk.check(review, "review-dashboard")
    review.get_by_role("link", name="Open the review queue").click()
    expect(review).to_have_url(re.compile(r"/admin/classifier/petimage/"))
    rows = review.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first.locator(f'a[href$="/admin/classifier/petimage/{answered.pk}/change/"]').first).to_be_visible()
    expect(rows.first).to_contain_text(answer_name)
    walk.check(review, "admin-review-queue", axe=False)  # Django's admin: not our markup
    rows.first.locator(f'a[href$="/admin/classifier/petimage/{answered.pk}/change/"]').first.click()
    expect(review.locator("#petimage_form")).to_be_visible()
    walk.check(review, "admin-change-photo", axe=False)
    review.goto("/api/docs/")  # the documentation page, made from the schema on the server
    expect(review.locator("#op-images_create")).to_contain_text("/api/images/")
    walk.check(review, "api-docs")
    review.goto("/")
    review.get_by_role("link", name="Models").click()
    expect(review.get_by_role("link", name=other_version.name)).to_be_visible()
    walk.check(review, "model-list")
    review.get_by_role("link", name=other_version.name).click()
    expect(review.get_by_role("heading", level=1)).to_contain_text(other_version.name)
    walk.check(review, "model-detail")

    # --- staff open the training page, and a finished run compared with the active model ------
    run = finished_training_run(other_version, stored_checkpoints["random-v1"], tmp_path)
    review.get_by_role("link", name="Training", exact=True).click()
    expect(review.get_by_role("heading", level=1)).to_have_text("Train a new model")
    expect(review.get_by_role("button", name="Start training")).to_be_enabled()
    walk.check(review, "training")
    review.get_by_role("link", name=str(run.pk), exact=True).click()
    expect(review.locator("#comparison tbody tr")).to_have_count(2)  # the check set and the test split
    expect(review.get_by_role("button", name=f"Promote {run.result.name}")).to_be_visible()
    walk.check(review, "training-run")
    reviewer_context.close()

    # --- the owner deletes the other photo ----------------------------------------------------
    photo.goto(f"/images/{other.pk}/")
    photo.get_by_role("link", name="Delete this photo…").click()
    expect(photo).to_have_url(re.compile(rf"/images/{other.pk}/delete$"))
    expect(photo.get_by_role("heading", level=1)).to_have_text("Delete this photo?")
    walk.check(photo, "delete-confirmation")
    photo.get_by_role("button", name="Delete the photo").click()
    expect(photo.get_by_text("The photo is deleted.")).to_be_visible()
    expect(photo.locator("[data-live-gallery] .tile")).to_have_count(1)
    assert not PetImage.objects.filter(pk=other.pk).exists()
    walk.check(photo, "gallery-after-delete")

    # --- a page that does not exist ---------------------------------------------------------
    response = photo.goto(f"/images/{other.pk}/")
    assert response.status == 404
    expect(photo.get_by_role("heading", level=1)).to_have_text("We could not find that page")
    walk.check(photo, "404")

    context.close()
    report = {"problems": walk.problems, "minor_axe_findings": walk.minor}
    (artifacts / "problems.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    walk.assert_clean()
