"""The upload page waits out "not now" answers and sends the photo again: a 503 (the site is
briefly unavailable: its database restarting) and a 429 (the upload rate), each with
Retry-After. The card says what happens and the photo is stored once, by the later try.

The first try of each photo is answered by the browser itself (Playwright's routing), as
the server would answer it during an outage; the next try reaches the live server.
"""
from __future__ import annotations

import json

import pytest

from classifier.models import PetImage
from tests.helpers import image_bytes

from .conftest import TIMEOUT_MS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NOT_NOW = {
    503: ("service_unavailable", "the site is briefly unavailable"),
    429: ("rate_limited", "you have sent many photos in a short time"),
}


@pytest.mark.parametrize("status", sorted(NOT_NOW))
def test_an_upload_answered_not_now_is_sent_again_after_retry_after(browser, live_server, user, status):
    code, words = NOT_NOW[status]
    tries = []

    def first_try_refused(route):
        tries.append(route.request.method)
        if len(tries) == 1:
            body = json.dumps({"type": "about:blank", "title": "Not now", "status": status, "code": code})
            route.fulfill(status=status, headers={"Retry-After": "2"}, content_type="application/problem+json",
                          body=body)
        else:
            route.continue_()

    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "pw-alice-123")
    page.click("main button[type=submit]")
    page.goto(f"{live_server.url}/upload/")
    page.wait_for_load_state("domcontentloaded")
    page.route("**/upload/", lambda route: first_try_refused(route) if route.request.method == "POST"
               else route.continue_())
    page.set_input_files("[data-upload] input[type=file]",
                         files=[{"name": "rex.jpg", "mimeType": "image/jpeg", "buffer": image_bytes(mark=7)}])

    status_text = page.locator(".card-status").first
    status_text.wait_for()
    page.wait_for_function("words => document.querySelector('.card-status').textContent.includes(words)", arg=words)
    assert not PetImage.objects.exists()  # refused: nothing stored, and the card did not say otherwise
    # Waited for in the browser, not with time.sleep: Playwright answers the routed
    # request (the second try) only while this thread is inside one of its calls.
    page.wait_for_function("words => !document.querySelector('.card-status').textContent.includes(words)"
                           " && !document.querySelector('.card-status').textContent.startsWith('Sending')", arg=words)
    assert PetImage.objects.filter(original_name="rex.jpg").count() == 1, (tries, status_text.text_content())
    assert tries == ["POST", "POST"]
    context.close()
