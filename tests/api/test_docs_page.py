"""The API's documentation page (/api/docs/): made on the server from the OpenAPI schema, in
the site's layout, with no script and nothing from the internet; every endpoint and schema
of the schema on it, every link between them leading somewhere, a working example each.
(Swagger UI, served before, failed axe-core; tests/browser/test_accessibility.py checks
this page in a browser.)"""
from html.parser import HTMLParser

import pytest
from django.contrib.staticfiles import finders
from django.templatetags.static import static
from django.urls import reverse

from api import docs

METHODS = {"get", "post", "put", "patch", "delete"}


class Page(HTMLParser):
    """The page's ids, in-page links, assets, scripts and inline code, and its text."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.fragments: list[str] = []
        self.assets: list[str] = []
        self.scripts: list[str] = []
        self.inline: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if "id" in attributes:
            self.ids.add(attributes["id"])
        href = attributes.get("href") or ""
        if tag == "a" and href.startswith("#"):
            self.fragments.append(href[1:])
        if tag == "link":
            self.assets.append(href)
        if tag == "script":
            self.scripts.append(attributes.get("src") or "inline")
        if tag == "style" or "style" in attributes or any(name.startswith("on") for name in attributes):
            self.inline.append(tag)

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture
def page(anonymous, db) -> tuple[Page, str]:
    response = anonymous.get(reverse("api:docs"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    parsed = Page()
    parsed.feed(response.content.decode())
    return parsed, response.content.decode()


def test_every_endpoint_and_schema_is_on_the_page(page):
    parsed, html = page
    schema = docs.openapi_schema()
    operations = [(method, path, op) for path, item in schema["paths"].items() for method, op in item.items()
                  if method in METHODS]
    assert len(operations) == 11  # with POST images/{id}/explain/
    for method, path, operation in operations:
        anchor = docs.anchor("op", operation["operationId"])
        assert anchor in parsed.ids, (method, path)
        assert anchor in parsed.fragments, (method, path)  # in the contents too
        assert f'<span class="method method-{method}">{method.upper()}</span>' in html
        assert f'<code class="path">{path}</code>' in html
        for status in operation["responses"]:
            assert f"<code>{status}</code>" in html
    for name in schema["components"]["schemas"]:
        assert docs.anchor("schema", name) in parsed.ids, name


def test_every_link_on_the_page_leads_somewhere_on_it(page):
    parsed, _ = page
    assert len(parsed.fragments) > 30
    assert set(parsed.fragments) <= parsed.ids, set(parsed.fragments) - parsed.ids


def test_the_page_needs_no_script_and_nothing_from_the_internet(page):
    parsed, html = page
    assert not parsed.inline, parsed.inline  # the Content-Security-Policy allows none
    assert parsed.scripts == [static("js/site.js")]  # the site's own, on every page; nothing else
    assert '<html lang="en">' in html
    assert "cdn" not in html.lower()
    prefix = static("")
    for url in parsed.assets:
        if url.startswith(prefix):
            assert finders.find(url.removeprefix(prefix)), url
        else:
            assert url in ("/favicon.ico", "/apple-touch-icon.png"), url
    assert static("css/api-docs.css") in parsed.assets


def test_the_examples_call_each_endpoint_with_a_token(page):
    parsed, html = page
    text = "".join(parsed.text)
    base = "http://testserver"
    assert text.count('-H "Authorization: Token $TOKEN"') == 11
    assert f'-F image=@rex.jpg \\\n  -F image=@tom.jpg \\\n  {base}/api/v1/images/' in text  # upload: file parts
    assert f"""-H "Content-Type: application/json" \\\n  -d '{{"answer": "correct"}}' \\\n  """ \
           f"{base}/api/v1/images/1/feedback/" in text  # the required field, an allowed value
    assert f'curl -X DELETE \\\n  -H "Authorization: Token $TOKEN" \\\n  {base}/api/v1/images/1/' in text
    assert f"{base}/api/v1/models/NAME/" in text


def test_it_tells_how_to_get_a_token(client, user, page):
    _, html = page  # a visitor: log in first
    assert f'href="{reverse("login")}?next={reverse("api:token")}"' in html
    client.force_login(user)
    assert f'href="{reverse("api:token")}"' in client.get(reverse("api:docs")).content.decode()


def test_descriptions_are_escaped_and_formatted():
    html = docs.prose("Send `image` <b>parts</b>.\n\n* `a` - A\n* `b` - B")
    assert html == "<p>Send <code>image</code> &lt;b&gt;parts&lt;/b&gt;.</p><ul><li><code>a</code> - A</li>" \
                   "<li><code>b</code> - B</li></ul>"
    long = docs.prose("\n".join(f"* `v{i}` - V{i}" for i in range(docs.LONG_LIST + 1)))
    assert long.startswith(f"<details><summary>{docs.LONG_LIST + 1} values</summary><ul>")


def test_types_in_words():
    ref = {"$ref": "#/components/schemas/Image"}
    assert docs.type_html({"type": "array", "items": ref}) == 'array of <a href="#schema-Image">Image</a>'
    assert docs.type_html({"type": "string", "format": "date-time", "nullable": True}) == \
        "string (date-time), or null"
    assert docs.type_html({"type": "string", "enum": ["a", "b", ""]}) == "string (one of 2 values)"
    assert docs.type_html({"type": "string", "format": "binary"}) == "file"
