"""What a pet owner reads about a photo, in a real browser (issue 16's walk): the verdict, the
bars and the filters agree; a live update reads as a reload does; "Show why" waits for an
answer; the owner's answer is shown as they gave it; one date style on the gallery, the
photo page and the admin.

Photos are put in known states through the services (no worker: a result "arrives" when
the test writes it, while the pages poll), so each state is certain, not a race.
Screenshots go to var/test-artifacts/browser/<test>/; each page is checked with axe-core.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from classifier.models import PetImage
from ml.breeds import BREED_KEYS
from registry.models import ModelVersion, Verdict
from tests.helpers import image_bytes, store_photo, upload

from .conftest import TIMEOUT_MS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-alice-123"  # the user fixture's
AXE_URL = "/__test__/axe.min.js"  # answered by the browser itself, from the origin under test (CSP)
OLD = datetime(2026, 12, 3, 16, 37, tzinfo=UTC)

RESULTS = {
    "cup": {  # the walk's finding: "not a cat or dog" over a 95 % bar
        "predicted_breed": "Ragdoll", "confidence": 0.95, "verdict": Verdict.NOT_A_PET,
        "top_k": [{"breed": "Ragdoll", "probability": 0.95}, {"breed": "Persian", "probability": 0.03},
                  {"breed": "Birman", "probability": 0.01}],
    },
    "rocket": {  # the walk's "Not sure: maybe Miniature Pinscher …"
        "predicted_breed": "miniature_pinscher", "confidence": 0.23, "verdict": Verdict.UNSURE,
        "top_k": [{"breed": "miniature_pinscher", "probability": 0.23}, {"breed": "chihuahua", "probability": 0.2}],
    },
    "persian": {
        "predicted_breed": "Persian", "confidence": 0.91, "verdict": Verdict.CONFIDENT,
        "top_k": [{"breed": "Persian", "probability": 0.91}, {"breed": "Ragdoll", "probability": 0.05}],
    },
}


@pytest.fixture
def version(db) -> ModelVersion:
    """A model row for results to name; nothing loads its file (no worker runs here)."""
    return ModelVersion.objects.create(name="shown-v1", file="models/shown-v1/model.pt", classes=BREED_KEYS,
                                       image_size=64, is_active=True)


_marks = iter(range(100, 4096))


def new_photo(owner, name: str, **fields) -> PetImage:
    file = upload(name, image_bytes(size=(160, 120), mark=next(_marks)))
    pet = store_photo(owner, file)
    PetImage.objects.filter(pk=pet.pk).update(**fields)
    pet.refresh_from_db()
    return pet


def result_fields(kind: str, version: ModelVersion) -> dict:
    return {**RESULTS[kind], "status": PetImage.Status.DONE, "model_version": version,
            "classified_at": timezone.now()}


def with_heatmap(pet: PetImage, version: ModelVersion) -> dict:
    """The fields of a heatmap made for ``version`` (a real JPEG in storage)."""
    name = pet.heatmap.storage.save(f"heatmaps/test-{pet.pk}.jpg", ContentFile(image_bytes(size=(128, 128))))
    return {"heatmap": name, "heatmap_version": version}


def logged_in(browser, live_server, username: str, width: int = 1280, password: str = PASSWORD):
    context = browser.new_context(viewport={"width": width, "height": 900}, base_url=live_server.url)
    page = new_page(context)
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/$|/upload/$"))
    return context, page


def new_page(context):
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors
    return page


def check(page, folder, name: str, axe_script) -> None:
    """Screenshot, no sideways scrolling, no serious or critical axe-core violation, no JS error."""
    page.screenshot(path=folder / f"{name}.png", full_page=True)
    scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll_width <= inner_width, f"{name}: scrolls sideways ({scroll_width} px in {inner_width})"
    page.route(AXE_URL, lambda route: route.fulfill(path=str(axe_script), content_type="text/javascript"))
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(url=AXE_URL)
    violations = [
        f"{v['id']}: {v['help']} — " + "; ".join(node["html"][:160] for node in v["nodes"][:3])
        for v in page.evaluate("axe.run(document, {resultTypes: ['violations']})")["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not violations, f"{name}: " + "\n".join(violations)
    assert not page.js_errors, f"{name}: JavaScript errors: {page.js_errors}"


def result_text(page) -> dict:
    """What the photo page says about the result, as a person reads it."""
    return page.evaluate("""() => ({
        heading: document.getElementById("breed").innerText,
        note: document.getElementById("verdict-note").hidden ? "" : document.getElementById("verdict-note").innerText,
        title: document.getElementById("top-k-title").hidden ? "" : document.getElementById("top-k-title").innerText,
        breeds: document.getElementById("top-k").innerText,
        bars: document.querySelectorAll("#top-k .bar").length,
        alt: document.getElementById("photo-img").alt,
        heatmapAlt: document.getElementById("heatmap-img").alt,
        correct: (document.querySelector('#feedback .choice-words[data-answer="correct"]') || {}).innerText,
        pageTitle: document.title,
    })""")


# --- "Not a cat or dog" over a 95 % bar --------------------------------------------------------


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
def test_verdict_bars_and_filters_agree(width, browser, axe_script, artifacts, live_server, user, version):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    photos = {kind: new_photo(user, f"{kind}.jpg", **result_fields(kind, version)) for kind in RESULTS}
    context, page = logged_in(browser, live_server, user.username, width)

    page.goto("/")
    tiles = page.locator("[data-live-gallery] .tile")
    expect(tiles).to_have_count(3)
    cup_tile = page.locator(f'.tile[data-id="{photos["cup"].pk}"] .caption')
    expect(cup_tile.locator(".breed")).to_have_text("Does not look like a cat or dog")
    expect(cup_tile).not_to_contain_text("%")
    expect(page.locator(f'.tile[data-id="{photos["rocket"].pk}"] .caption .breed')).to_have_text(
        "Not sure. Closest breed: Miniature Pinscher")
    expect(page.locator(f'.tile[data-id="{photos["persian"].pk}"] .caption .confidence')).to_have_text("91%")
    check(page, artifacts, "gallery", axe_script)

    # The Cats filter leaves the cup out (its Ragdoll is only the closest breed) ...
    page.locator("summary", has_text="Filter and sort").click()
    page.get_by_label("Species").select_option(label="Cats")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"species=cat"))
    expect(tiles).to_have_count(1)
    expect(page.locator(f'.tile[data-id="{photos["persian"].pk}"]')).to_be_visible()
    # ... and the verdict filter finds it.
    page.get_by_label("Species").select_option(label="Cats and dogs")
    page.get_by_label("Verdict").select_option(label="Not a cat or dog")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"verdict=not_a_pet"))
    expect(tiles).to_have_count(1)
    expect(page.locator(f'.tile[data-id="{photos["cup"].pk}"]')).to_be_visible()
    check(page, artifacts, "gallery-filtered", axe_script)

    page.locator(f'.tile[data-id="{photos["cup"].pk}"] a').click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Does not look like a cat or dog")
    expect(page.locator("#verdict-note")).to_contain_text("it looks most like a Ragdoll, but only next to the other "
                                                          "breeds, all of them unlikely")
    expect(page.get_by_role("heading", level=2, name="Closest breeds, all unlikely")).to_be_visible()
    expect(page.get_by_role("list", name="Closest breeds, all unlikely").locator("li")).to_have_text(
        ["Ragdoll", "Persian", "Birman"])
    expect(page.locator("#top-k .bar")).to_have_count(0)
    assert not re.search(r"95\s*%", page.locator("main").inner_text())
    expect(page.get_by_label("Correct, it is not a cat or dog")).to_be_visible()
    check(page, artifacts, "photo-not-a-pet", axe_script)

    page.goto(photos["rocket"].get_absolute_url())
    expect(page.get_by_role("heading", level=1)).to_have_text("Not sure. Closest breed: Miniature Pinscher")
    expect(page.locator("#verdict-note")).to_contain_text("its closest breed, Miniature Pinscher, has only 23%")
    assert "maybe" not in page.locator("main").inner_text()
    expect(page.get_by_role("list", name="Closest breeds, none of them sure").locator(".pct")).to_have_text(
        ["23%", "20%"])
    check(page, artifacts, "photo-unsure", axe_script)
    context.close()


# --- a live update reads as a reload; "Show why" waits for the answer --------------------------


@pytest.mark.parametrize("kind", ["cup", "rocket", "persian"])
def test_a_result_arriving_live_reads_as_a_reload(kind, browser, axe_script, artifacts, live_server, user, version):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    pet = new_photo(user, f"{kind}.jpg")  # waiting for a worker
    context, gallery = logged_in(browser, live_server, user.username)
    tile = gallery.locator(f'.tile[data-id="{pet.pk}"]')
    expect(tile.locator(".status")).to_have_text("Waiting")
    photo = new_page(context)
    photo.goto(pet.get_absolute_url())
    expect(photo.locator("#status")).to_have_text("Waiting")

    # The walk's finding: "Show why" offered while waiting, over a broken image "for its answer ()".
    toggle = photo.locator("#heatmap-toggle")
    expect(toggle).to_be_hidden()
    assert not photo.get_by_role("button", name="Show why").is_visible()
    assert "()" not in photo.locator("#heatmap-img").get_attribute("alt")
    check(photo, artifacts, "photo-waiting", axe_script)

    PetImage.objects.filter(pk=pet.pk).update(**result_fields(kind, version), **with_heatmap(pet, version))
    pet.refresh_from_db()
    expect(photo.locator("#status")).to_have_text("Done")
    expect(photo.locator("#breed")).to_have_text(pet.headline())
    expect(tile.locator(".breed")).to_have_text(pet.headline())
    expect(toggle).to_be_visible()
    live = result_text(photo)
    live_caption = tile.locator(".caption").inner_text()
    live_alt = tile.locator("img").get_attribute("alt")
    check(photo, artifacts, "photo-live", axe_script)

    toggle.click()
    expect(photo.locator("#heatmap-img")).to_be_visible()
    photo.wait_for_function("() => document.getElementById('heatmap-img').naturalWidth > 0")
    assert photo.locator("#heatmap-img").get_attribute("alt") == pet.display.heatmap_alt
    check(photo, artifacts, "photo-heatmap", axe_script)

    photo.reload()
    expect(photo.locator("#status")).to_have_text("Done")
    assert result_text(photo) == live
    assert live["bars"] == (0 if kind == "cup" else len(RESULTS[kind]["top_k"]))
    gallery.reload()
    assert tile.locator(".caption").inner_text() == live_caption
    assert tile.locator("img").get_attribute("alt") == live_alt
    context.close()


# --- the owner's answer ----------------------------------------------------------------------------


def test_wrong_it_is_the_first_breed_shows_what_the_owner_said(browser, axe_script, artifacts, live_server, user,
                                                               version):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    pet = new_photo(user, "persian.jpg", **result_fields("persian", version))
    context, page = logged_in(browser, live_server, user.username, 390)
    page.goto(pet.get_absolute_url())
    expect(page.get_by_label("Correct, it is a Persian")).to_be_visible()
    page.get_by_role("radio", name="Wrong, it is a …").check()
    page.get_by_label("The right breed").select_option("Persian")
    page.get_by_role("button", name="Send answer").click()
    state = page.locator("#feedback-state")
    expect(state).to_contain_text("You said: “It is a Persian.”")
    expect(state).not_to_contain_text("Correct")
    expect(state).to_contain_text(re.compile(r"\((just now|1 minute ago)\)"))
    expect(page.get_by_label("Correct, it is a Persian")).to_be_checked()  # the same answer, as the form has it
    check(page, artifacts, "photo-answered", axe_script)
    pet.refresh_from_db()
    assert (pet.is_correct, pet.true_breed) == (True, "Persian")
    context.close()


# --- one date style -----------------------------------------------------------------------------------


def test_one_date_style_on_the_gallery_the_photo_page_and_the_admin(browser, live_server, user, version,
                                                                    django_user_model):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    old = new_photo(user, "old.jpg", uploaded_at=OLD, **result_fields("persian", version))
    new = new_photo(user, "new.jpg", **result_fields("rocket", version))
    context, page = logged_in(browser, live_server, user.username)
    page.goto("/")
    expect(page.locator(f'.tile[data-id="{old.pk}"] .caption time')).to_have_text("3 Dec 2026, 16:37")
    expect(page.locator(f'.tile[data-id="{new.pk}"] .caption time')).to_have_text(
        re.compile(r"^(just now|\d+ minutes? ago)$"))
    page.goto(old.get_absolute_url())
    expect(page.locator(".facts time")).to_have_text("3 Dec 2026, 16:37")
    context.close()

    django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")
    context, admin = logged_in(browser, live_server, "root", password="pw-root-123")
    admin.goto("/admin/classifier/petimage/")
    def uploaded_cell(pet):
        return admin.locator(f'#result_list tr:has(a[href$="/petimage/{pet.pk}/change/"]) td.field-uploaded')

    expect(uploaded_cell(old)).to_have_text("3 Dec 2026, 16:37")
    expect(uploaded_cell(new)).to_have_text(re.compile(r"^(just now|\d+ minutes? ago)$"))
    admin.goto(f"/admin/classifier/petimage/{old.pk}/change/")
    expect(admin.locator(".field-uploaded_at .readonly")).to_have_text("3 Dec 2026, 16:37")
    expect(admin.locator(".field-classified_at .readonly")).to_have_text(re.compile(r"^\d{1,2} [A-Z][a-z]{2} \d{4}, "
                                                                                    r"\d\d:\d\d$"))
    context.close()
