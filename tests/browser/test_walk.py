"""The owner's and the reviewer's walk through the site in a real browser, at desktop and phone width.

A live server, a real Celery worker and Debian's Chromium: sign up, drop three files at
once (two photos, one broken), watch the results arrive on the upload cards, in the
gallery and on the photo page without a reload, show the heatmap, answer "wrong", find
the photo first in the reviewer's queue, open the admin and the API's docs, delete a
photo. Every page visited is screenshotted (var/test-artifacts/browser/test_walk-WIDTH/),
checked with axe-core (no serious or critical violation) and checked for horizontal
scrolling, and no page may meet a Content-Security-Policy violation (Chromium reports
each in the console): the policy allows no inline script or style.

Each step is a test of its own (``TestWalk``, in order, once per width), so a failure
names its step; the steps after a broken one are skipped and name it, except when only
its pages' checks failed (then the walk goes on). The database, the pages and the two
browser sessions live for the whole walk (the ``walk`` fixture), not for one test.

The model is activated only once the photos wait in the gallery and on their page, so
that "while they classify" is certain, not a race with a fast worker.
With PETSITE_UPDATE_SCREENSHOTS=1 the desktop walk also writes the README's screenshots.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections

from classifier.models import PetImage, label_name
from ml.breeds import BREED_KEYS
from registry.models import ModelVersion
from registry.services import activate_version

from .conftest import ARTIFACTS, TIMEOUT_MS
from .walk import MARKER, Walk, fake_photo, finished_training_run, never_reloaded, send_files

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOCS_SCREENSHOTS = Path(django_settings.BASE_DIR) / "docs" / "screenshots"
PASSWORD = "a-long-walk-9!"
TEST_IMAGE_SIZE = 64  # tests/conftest.py's checkpoints


@pytest.fixture(scope="class", params=[1280, 390], ids=["desktop", "phone"])
def walk(request, browser, axe_script, celery_worker, stored_checkpoints, django_db_setup, django_db_blocker,
         tmp_path_factory):
    """One walk at one width: its own live server, with database access for the whole walk
    (a transactional test's would be flushed after each step), flushed at the end as a
    transactional test's is."""
    from playwright.sync_api import expect
    from pytest_django.live_server_helper import LiveServer

    expect.set_options(timeout=TIMEOUT_MS)
    folder = ARTIFACTS / f"test_walk-{request.param}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with django_db_blocker.unblock():
        name, test_name = connections["default"].settings_dict["NAME"], django_settings.DATABASES["default"]["TEST"]
        # Never the walk's rows (and its flush) in a database that is not the test run's.
        assert name == test_name.get("NAME") or str(name).startswith("test_"), f"not a test database: {name}"
        server = LiveServer("localhost")
        server._live_server_modified_settings.enable()  # the host in ALLOWED_HOSTS, as pytest-django's does
        version = ModelVersion.objects.create(  # tests/conftest.py's other_version: a model, not active yet
            name="random-v2", file=stored_checkpoints["random-v2"], classes=BREED_KEYS,
            image_size=TEST_IMAGE_SIZE, metrics={"accuracy": 0.0}, is_active=False,
        )
        state = Walk(browser, request.param, axe_script, folder, server.url, version, owner=f"walker{request.param}",
                     tmp_path=tmp_path_factory.mktemp(f"walk{request.param}"))
        try:
            yield state
        finally:
            state.close()
            report = {"problems": state.problems, "minor_axe_findings": state.minor}
            (folder / "problems.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
            server._live_server_modified_settings.disable()
            server.stop()
            # As TransactionTestCase flushes: the sequences go on, so that the next walk's rows
            # get new ids (a cache key such as the heatmap's request names a photo by its id).
            for alias in connections:
                call_command("flush", verbosity=0, interactive=False, database=alias, reset_sequences=False)
            # Closed as TransactionTestCase closes them: while Playwright's loop runs, Django
            # keeps this thread's connections apart from those of the database's set-up, so
            # the run's teardown could not drop a database this one still holds.
            connections.close_all()


@pytest.fixture
def db():
    """The steps use the test database: this name among a test's fixtures is how
    pytest-django knows to create it (also when only this module runs). It replaces
    pytest-django's ``db`` here, whose transaction per test would hide each step's rows
    from the live server: the ``walk`` fixture opens the database for the whole walk."""


@pytest.fixture
def worker_alive(celery_worker):
    """Each step starts with the session's worker alive, as the ``worker`` fixture checks."""
    if celery_worker.process.poll() is not None:
        pytest.fail("The Celery worker died:\n" + celery_worker.log())
    return celery_worker


@pytest.mark.usefixtures("db", "worker_alive")
class TestWalk:
    ordered_steps = True  # tests/browser/conftest.py: a failed step skips the ones after it

    def test_01_a_visitor_signs_up(self, walk):
        from playwright.sync_api import expect

        page = walk.new_page(walk.new_context(), "upload")
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
        page.get_by_label("Username").fill(walk.owner)
        page.locator("#id_password1").fill(PASSWORD)
        page.get_by_label("Password confirmation").fill(PASSWORD)
        page.get_by_role("button", name="Sign up").click()
        expect(page).to_have_url(re.compile(r"/upload/$"))
        expect(page.get_by_role("button", name=f"Log out {walk.owner}")).to_be_visible()
        assert get_user_model().objects.filter(username=walk.owner).exists()
        walk.check(page, "upload-no-model")

        page.get_by_role("link", name="My pets").click()
        expect(page.get_by_text("No photos yet.")).to_be_visible()
        walk.check(page, "gallery-empty")
        page.get_by_role("link", name="Upload a photo").click()
        expect(page).to_have_url(re.compile(r"/upload/$"))
        walk.assert_clean()

    def test_02_three_files_at_once_two_photos_and_a_broken_one(self, walk):
        from playwright.sync_api import expect

        page, width = walk.pages["upload"], walk.width
        files = [("rex.jpg", fake_photo(3, seed=width)), ("tom.jpg", fake_photo(20, seed=width + 1)),
                 ("broken.jpg", b"This is not a photo at all.\n" * 40)]
        page.evaluate(f"{MARKER} = true")
        send_files(page, files, drop=width < 600)  # the phone walk drops them, the desktop one chooses them
        cards = page.locator("[data-upload-cards] .upload-card")
        expect(cards).to_have_count(3)
        broken = cards.filter(has_text="broken.jpg")
        expect(broken).to_have_class(re.compile(r"\brefused\b"))
        expect(broken).to_contain_text("This file is not an image we can read")
        walk.cards.update({name: cards.filter(has_text=name) for name in ("rex.jpg", "tom.jpg")})
        for card in walk.cards.values():  # the worker has looked and found no model yet
            expect(card).to_contain_text("will be classified as soon as the classifier is set up")
        walk.check(page, "upload-cards-waiting")

        walk.pets[:] = PetImage.objects.filter(owner__username=walk.owner).order_by("uploaded_at", "pk")
        assert sorted(pet.original_name for pet in walk.pets) == ["rex.jpg", "tom.jpg"]
        walk.assert_clean()

    # The owner answers on the newest photo (the review queue's first, among those that need
    # review) and deletes the other.

    def test_03_the_gallery_and_a_photos_page_open_while_the_photos_wait(self, walk):
        from playwright.sync_api import expect

        context, (_other, answered) = walk.contexts[0], walk.pets
        gallery = walk.new_page(context, "gallery")
        gallery.goto("/")
        tiles = gallery.locator("[data-live-gallery] .tile")
        expect(tiles).to_have_count(2)
        expect(tiles.locator(".caption .status")).to_have_text(["Waiting", "Waiting"])
        gallery.evaluate(f"{MARKER} = true")
        walk.check(gallery, "gallery-waiting")

        photo = walk.new_page(context, "photo")
        photo.goto(f"/images/{answered.pk}/")
        expect(photo.locator("#status")).to_have_text("Waiting")
        expect(photo.locator("#message")).to_contain_text("as soon as the classifier is set up")
        expect(photo.locator("#feedback")).to_have_count(0)  # nothing to judge yet
        photo.evaluate(f"{MARKER} = true")
        walk.check(photo, "photo-waiting")
        walk.assert_clean()

    def test_04_a_model_arrives_and_every_open_page_shows_the_results_in_place(self, walk):
        from playwright.sync_api import expect

        page, gallery, photo = walk.pages["upload"], walk.pages["gallery"], walk.pages["photo"]
        activate_version(walk.version)
        expect(gallery.locator(".tile[data-finished='true']")).to_have_count(2)
        for pet in walk.pets:
            pet.refresh_from_db()
            assert pet.status == PetImage.Status.DONE, (pet.status, pet.error_message)
            # The answer in words ("Pug", "Not sure: maybe Pug or Boxer", "Not a cat or dog").
            card, headline = walk.cards[pet.original_name], pet.headline()
            expect(card).to_contain_text(f"Uploaded. {headline}")
            if pet.verdict != "not_a_pet":
                expect(card).to_contain_text(label_name(pet.predicted_breed))
            expect(gallery.locator(f'.tile[data-id="{pet.pk}"] .caption .breed')).to_have_text(headline)
        expect(photo.locator("#breed")).to_have_text(walk.pets[1].headline())
        expect(photo.locator("#status")).to_have_text("Done")
        expect(photo.locator("#top-k li")).to_have_count(5)
        expect(photo.locator("#feedback")).to_be_visible()
        for open_page in (page, gallery, photo):
            assert never_reloaded(open_page), f"{open_page.url} was reloaded"
        walk.check(page, "upload-cards-results")
        walk.check(gallery, "gallery-results")
        if update_docs(walk):
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            gallery.screenshot(path=DOCS_SCREENSHOTS / "gallery.png")
        walk.check(photo, "photo-result")
        walk.assert_clean()

    def test_05_show_why_the_heatmap_a_worker_makes_for_the_result(self, walk):
        from playwright.sync_api import expect

        photo = walk.pages["photo"]
        toggle = photo.locator("#heatmap-toggle")
        expect(toggle).to_be_visible(timeout=2 * TIMEOUT_MS)
        toggle.click()
        expect(toggle).to_have_attribute("aria-pressed", "true")
        expect(photo.locator("#heatmap-img")).to_be_visible()
        expect(photo.locator("#photo-img")).to_be_hidden()
        photo.wait_for_function("() => document.getElementById('heatmap-img').naturalWidth > 0")
        walk.check(photo, "photo-heatmap")
        if update_docs(walk):
            photo.screenshot(path=DOCS_SCREENSHOTS / "photo-heatmap.png")
        walk.assert_clean()

    def test_06_wrong_it_is_a(self, walk):
        from playwright.sync_api import expect

        photo, answered = walk.pages["photo"], walk.pets[1]
        answer_key, answer_name = answer_for(answered)
        photo.get_by_role("searchbox", name="Search the breeds").fill(answer_name[:4].lower())
        expect(photo.get_by_role("radio", name="Wrong, it is a …")).to_be_checked()
        expect(photo.get_by_label("The right breed")).to_have_value(answer_key)
        photo.get_by_role("button", name="Send answer").click()
        expect(photo.get_by_text("Thanks! Your answer helps the next model.")).to_be_visible()
        expect(photo.locator("#feedback-state")).to_contain_text(f"“Wrong, it is a {answer_name}.”")
        answered.refresh_from_db()
        assert (answered.is_correct, answered.true_breed) == (False, answer_key)
        walk.check(photo, "photo-answered")
        walk.assert_clean()

    def test_07_a_reviewer_finds_that_photo_first_in_the_queue(self, walk):
        from playwright.sync_api import expect

        answered, (_, answer_name) = walk.pets[1], answer_for(walk.pets[1])
        get_user_model().objects.create_superuser("reviewer", "reviewer@example.com", PASSWORD)
        review = walk.new_page(walk.new_context(), "review")
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
        change = rows.first.locator(f'a[href$="/admin/classifier/petimage/{answered.pk}/change/"]').first
        expect(change).to_be_visible()
        expect(rows.first).to_contain_text(answer_name)
        walk.check(review, "admin-review-queue", axe=False)  # Django's admin: not our markup
        change.click()
        expect(review.locator("#petimage_form")).to_be_visible()
        walk.check(review, "admin-change-photo", axe=False)
        walk.assert_clean()

    def test_08_the_api_docs_and_the_model_pages(self, walk):
        from playwright.sync_api import expect

        review, name = walk.pages["review"], walk.version.name
        review.goto("/api/docs/")  # the documentation page, made from the schema on the server
        expect(review.locator("#op-images_create")).to_contain_text("/api/v1/images/")
        walk.check(review, "api-docs")
        review.goto("/")
        review.get_by_role("link", name="Models").click()
        expect(review.get_by_role("link", name=name)).to_be_visible()
        walk.check(review, "model-list")
        review.get_by_role("link", name=name).click()
        expect(review.get_by_role("heading", level=1)).to_contain_text(name)
        walk.check(review, "model-detail")
        walk.assert_clean()

    def test_09_staff_open_the_training_page_and_a_finished_run_compared(self, walk, stored_checkpoints):
        from playwright.sync_api import expect

        review = walk.pages["review"]
        run = finished_training_run(walk.version, stored_checkpoints["random-v1"], walk.tmp_path)
        review.get_by_role("link", name="Training", exact=True).click()
        expect(review.get_by_role("heading", level=1)).to_have_text("Train a new model")
        expect(review.get_by_role("button", name="Start training")).to_be_enabled()
        walk.check(review, "training")
        review.get_by_role("link", name=str(run.pk), exact=True).click()
        expect(review.locator("#comparison tbody tr")).to_have_count(2)  # the check set and the test split
        expect(review.get_by_role("button", name=f"Promote {run.result.name}")).to_be_visible()
        walk.check(review, "training-run")
        walk.contexts.pop().close()  # the reviewer's
        walk.assert_clean()

    def test_10_the_owner_deletes_the_other_photo(self, walk):
        from playwright.sync_api import expect

        photo, other = walk.pages["photo"], walk.pets[0]
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
        walk.assert_clean()

    def test_11_a_page_that_does_not_exist(self, walk):
        from playwright.sync_api import expect

        photo = walk.pages["photo"]
        response = photo.goto(f"/images/{walk.pets[0].pk}/")
        assert response.status == 404
        expect(photo.get_by_role("heading", level=1)).to_have_text("We could not find that page")
        walk.check(photo, "404")
        walk.close()  # every page closed: a JavaScript error or violation still on its way is in now
        walk.assert_clean()


def answer_for(pet: PetImage) -> tuple[str, str]:
    """The owner's "wrong, it is a …" answer: a breed other than the model's."""
    return ("pug", "Pug") if pet.predicted_breed == "beagle" else ("beagle", "Beagle")


def update_docs(walk: Walk) -> bool:
    return os.environ.get("PETSITE_UPDATE_SCREENSHOTS") == "1" and walk.width == 1280
