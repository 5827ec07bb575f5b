"""In a real browser: phone photos and photos dropped on the gallery, and "20 at a time"
with and without JavaScript.

- HEIC and AVIF files dropped on the gallery pass the page's own check (with the type a
  browser gives them, or none at all, as on systems that know no type for them), are
  stored, and join the grid at once with a thumbnail the browser shows; their tiles then
  update live when a worker has classified them, without a reload. A text file is
  refused on its card and joins nothing.
- 22 photos chosen at once: with JavaScript, 20 are on their way and the other two wait
  on their cards, then follow by themselves (all 22 stored); without JavaScript, the
  first 20 are stored and the gallery names the two others and says how to send them.
"""
from __future__ import annotations

import base64

import pytest

from classifier import classification
from classifier.models import PetImage
from tests.classifier.test_upload_phone import phone_photo
from tests.helpers import image_bytes, store_photo, upload

from .conftest import TIMEOUT_MS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MARKER = "window.__notReloaded"  # set on the page; still there later means it was never reloaded


def logged_in_page(browser, live_server, width: int = 1280, javascript: bool = True):
    context = browser.new_context(viewport={"width": width, "height": 900}, java_script_enabled=javascript)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "pw-alice-123")
    page.click("main button[type=submit]")
    page.wait_for_load_state("domcontentloaded")
    return context, page, errors


def drop(page, files: list[dict]) -> None:
    """Drop ``files`` ({name, type, bytes}) on the page's drop zone, as a person drags them from a folder."""
    payload = [{"name": f["name"], "type": f["type"], "b64": base64.b64encode(f["bytes"]).decode()} for f in files]
    page.evaluate(
        """files => {
            const transfer = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.b64), c => c.charCodeAt(0));
                transfer.items.add(new File([bytes], f.name, { type: f.type }));
            }
            const zone = document.querySelector("[data-dropzone]");
            zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }""",
        payload,
    )


def test_phone_photos_dropped_on_the_gallery_join_the_grid_and_update_live(
    browser, live_server, user, model_version, artifacts
):
    first = upload("first.jpg", image_bytes(mark=1))
    existing = [store_photo(user, first).pk]
    context, page, errors = logged_in_page(browser, live_server)
    page.goto(f"{live_server.url}/")
    assert page.locator("[data-live-gallery] .tile").count() == 1
    page.evaluate(f"{MARKER} = true")

    drop(page, [
        {"name": "IMG_0042.HEIC", "type": "image/heic", "bytes": phone_photo("heic")},
        {"name": "pixel.avif", "type": "", "bytes": phone_photo("avif")},  # no type: known by its name
        {"name": "rex.jpg", "type": "image/jpeg", "bytes": image_bytes(mark=2)},
        {"name": "notes.txt", "type": "text/plain", "bytes": b"milk, eggs\n"},
    ])
    tiles = page.locator("[data-live-gallery] .tile")
    tiles.nth(3).wait_for()
    # Each stored photo's card links its page.
    page.wait_for_function("() => document.querySelectorAll('.upload-card .card-status a').length === 3")
    assert page.evaluate(MARKER), "the gallery was reloaded"
    assert "Not sent: this is not a JPEG, PNG, WebP, GIF, BMP, HEIC or AVIF photo." in page.locator(
        ".upload-card.refused").inner_text()

    stored = {pet.original_name: pet for pet in PetImage.objects.exclude(pk__in=existing)}
    assert sorted(stored) == ["IMG_0042.HEIC", "pixel.avif", "rex.jpg"]
    assert all(pet.image.name.endswith(".jpg") for pet in stored.values())
    ids_in_grid = page.eval_on_selector_all("[data-live-gallery] .tile", "ts => ts.map(t => Number(t.dataset.id))")
    assert sorted(ids_in_grid[:3]) == sorted(pet.pk for pet in stored.values())
    assert ids_in_grid[3] == existing[0]
    for name in ("IMG_0042.HEIC", "pixel.avif"):  # the thumbnail of a phone photo shows in the browser
        image = page.locator(f"[data-live-gallery] .tile[data-id='{stored[name].pk}'] img")
        image.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    page.screenshot(path=artifacts / "01-dropped-on-the-gallery.png", full_page=True)

    # The browser shows no HEIC itself: once stored, the card shows the stored photo's thumbnail.
    card_image = page.locator(".upload-card", has_text="IMG_0042.HEIC").locator("img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=card_image.element_handle())
    heic = stored["IMG_0042.HEIC"]
    tile = page.locator(f"[data-live-gallery] .tile[data-id='{heic.pk}']")
    assert tile.get_attribute("data-finished") == "false"
    assert "Waiting" in tile.inner_text()
    classification.classify(heic.pk)  # the worker's own code, on the stored JPEG
    heic.refresh_from_db()
    assert heic.status == PetImage.Status.DONE
    page.wait_for_function("tile => tile.dataset.finished === 'true'", arg=tile.element_handle())
    assert heic.headline() in tile.inner_text()
    assert page.evaluate(MARKER), "the gallery was reloaded"
    page.screenshot(path=artifacts / "02-classified-live.png", full_page=True)
    assert not errors, errors
    context.close()


def test_the_first_photos_dropped_on_an_empty_gallery_make_its_grid(browser, live_server, user, artifacts):
    context, page, errors = logged_in_page(browser, live_server, width=390)
    page.goto(f"{live_server.url}/")
    assert "No photos yet." in page.locator("main").inner_text()
    page.evaluate(f"{MARKER} = true")
    drop(page, [{"name": "IMG_0001.HEIC", "type": "image/heic", "bytes": phone_photo("heic")}])
    tile = page.locator("[data-live-gallery] .tile")
    tile.wait_for()
    assert tile.get_attribute("data-id") == str(PetImage.objects.get(owner=user).pk)
    assert page.locator("[data-live-gallery]").is_visible()
    assert page.evaluate(MARKER)
    assert "No photos yet." not in page.locator("main").inner_text()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=tile.locator("img").element_handle())
    page.screenshot(path=artifacts / "01-first-photo.png", full_page=True)
    assert not errors, errors
    context.close()


def photos(count: int) -> list[dict]:
    return [{"name": f"p{n:02}.jpg", "mimeType": "image/jpeg", "buffer": image_bytes(mark=100 + n)}
            for n in range(1, count + 1)]


def test_twenty_at_a_time_with_javascript_the_others_wait_then_follow(browser, live_server, user, artifacts):
    context, page, errors = logged_in_page(browser, live_server)
    page.goto(f"{live_server.url}/upload/")
    assert "20 at a time" in page.locator(".hint").inner_text()
    held, release = [], []

    def hold_until_released(route):
        if route.request.method != "POST":
            route.continue_()
        elif release:
            route.continue_()
        else:
            held.append(route)

    page.route("**/upload/", hold_until_released)
    page.set_input_files("[data-upload] input[type=file]", files=photos(22))
    waiting = page.locator(".upload-card .card-status", has_text="20 photos go at a time; this one follows.")
    page.wait_for_function("() => document.querySelectorAll('.upload-card').length === 22")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card-status')].filter(s => s.textContent.startsWith('Sending')).length"
        " === 2"
    )
    assert waiting.count() == 2
    names = page.eval_on_selector_all(
        ".upload-card", "cards => cards.filter(c => c.textContent.includes('go at a time'))"
        ".map(c => c.querySelector('.file-name').textContent)")
    assert names == ["p21.jpg", "p22.jpg"]
    page.screenshot(path=artifacts / "01-twenty-on-their-way.png", full_page=True)
    assert not PetImage.objects.exists()

    release.append(True)
    for route in held:
        route.continue_()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.upload-card .card-status')]"
        ".filter(s => s.querySelector('a')).length === 22"
    )
    assert sorted(PetImage.objects.values_list("original_name", flat=True)) == [f"p{n:02}.jpg" for n in range(1, 23)]
    assert not errors, errors
    assert waiting.count() == 0
    context.close()


def test_twenty_at_a_time_without_javascript_the_others_are_named(browser, live_server, user, artifacts):
    context, page, errors = logged_in_page(browser, live_server, javascript=False)
    page.goto(f"{live_server.url}/upload/")
    assert "20 at a time" in page.locator(".hint").inner_text()
    page.set_input_files("[data-upload] input[type=file]", files=photos(22))
    page.click("[data-upload] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    text = page.locator("body").inner_text()
    assert (
        "20 photos uploaded, 2 not sent (20 go at a time): p21.jpg, p22.jpg. Choose them again to upload them." in text
    )
    assert sorted(PetImage.objects.values_list("original_name", flat=True)) == [f"p{n:02}.jpg" for n in range(1, 21)]
    page.screenshot(path=artifacts / "01-no-javascript.png", full_page=True)
    context.close()
