"""Browsers ask every site for /favicon.ico (Chromium logged its 404 on every page as a
console error): it is there, with the icons every page names."""
import io
import re

from django.contrib.staticfiles import finders
from django.templatetags.static import static
from django.urls import reverse
from PIL import Image


def test_favicon_ico_is_at_the_root(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    icon = Image.open(io.BytesIO(b"".join(response.streaming_content)))
    assert icon.format == "ICO"
    assert (32, 32) in icon.info["sizes"]


def test_apple_touch_icon_is_at_the_root(client):
    response = client.get("/apple-touch-icon.png")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"


def test_every_page_names_its_icons(client, user):
    client.force_login(user)
    for url in [reverse("classifier:gallery"), reverse("classifier:upload"), "/no-such-page/"]:
        page = client.get(url).content.decode()
        icons = dict(re.findall(r'<link rel="(icon|apple-touch-icon)" href="([^"]+)"', page))
        assert set(icons) == {"icon", "apple-touch-icon"}, url
        links = re.findall(r'<link rel="icon" href="([^"]+)"', page)
        assert "/favicon.ico" in links
        assert static("img/favicon.svg") in links
    assert finders.find("img/favicon.svg")
