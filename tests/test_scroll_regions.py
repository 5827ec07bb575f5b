"""A table that scrolls sideways on a phone must be reachable with the keyboard, and named:
axe-core's "scrollable-region-focusable" (serious) found two that were not, at 390 px.
Every ``table-scroll`` wrapper in the templates is a focusable, labelled region
(tests/browser/test_accessibility.py checks the pages themselves in a browser)."""
import re

from django.conf import settings

WRAPPER = re.compile(r"<div\b[^>]*\bclass=\"table-scroll\"[^>]*>")


def test_every_scrolling_table_is_a_focusable_named_region():
    found, wrong = 0, []
    for template in sorted((settings.BASE_DIR / "templates").rglob("*.html")):
        for tag in WRAPPER.findall(template.read_text()):
            found += 1
            if not ('tabindex="0"' in tag and 'role="region"' in tag and re.search(r"aria-label(ledby)?=\"[\w{]", tag)):
                wrong.append(f"{template.relative_to(settings.BASE_DIR)}: {tag}")
    assert found >= 10
    assert not wrong, "\n".join(wrong)
