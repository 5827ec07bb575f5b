"""The API token page's "Copy the token" button puts the new token on the clipboard (a
real Chromium, clipboard permissions granted as a person's browser grants them to the
page they click on), from a static script: the page has no inline code."""
from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from .conftest import TIMEOUT_MS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
def test_the_copy_button_puts_the_new_token_on_the_clipboard(browser, live_server, user, width):
    from playwright.sync_api import expect

    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": width, "height": 900}, base_url=live_server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto("/api/token/")
    expect(page.get_by_role("button", name="Copy the token")).to_have_count(0)  # no token to copy yet
    page.get_by_role("button", name="Make a token").click()
    copy = page.get_by_role("button", name="Copy the token")
    expect(copy).to_be_visible()
    shown = page.get_by_label("Your new token").input_value()
    assert shown == Token.objects.get(user=user).key
    copy.click()
    expect(page.locator("[data-copy-status]")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == shown
    assert not errors, errors
    context.close()
