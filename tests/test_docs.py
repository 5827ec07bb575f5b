"""The documentation holds together: the README is a front page whose map reaches every page
of docs/, every relative link leads to a file (and heading) that exists, every file path
the pages name exists, and CI runs the very test command the README gives a newcomer.

Read as a newcomer reads: the Markdown files as they are in the repository, no rendering.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS, ROOT / "bench" / "README.md"]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
# A file path as the pages write one: folders and a name, no spaces, no placeholders.
PATH = re.compile(r"^[\w.-]+(/[\w.-]+)*/?$")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    words = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return words.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m) for m in re.findall(r"^#+\s+(.*)$", text, re.MULTILINE)}


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z]+:", t)]


def test_the_pages_exist():
    names = {page.name for page in DOCS}
    assert {"architecture.md", "deployment.md", "development.md", "operations.md", "using.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page: Path):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert broken == []


def named_paths(page: Path) -> list[str]:
    """Paths in `code` spans under a top-level entry of the project (`classifier/uploads.py`,
    `tests/faults/`). Runtime paths (`var/...`), absolute ones and placeholders (`DIR/...`)
    are not files of the project and are left out."""
    top = {p.name for p in ROOT.iterdir() if p.name != "var"}
    text = FENCE.sub("", page.read_text())
    return [c for c in INLINE_CODE.findall(text) if "/" in c and PATH.match(c) and c.split("/")[0] in top]


def test_the_path_check_sees_the_paths_a_page_names():
    named = named_paths(ROOT / "docs" / "architecture.md")
    assert "classifier/formats.py" in named
    assert "tests/test_permissions.py" in named
    assert "var/pets" not in named_paths(ROOT / "docs" / "training.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_path_a_page_names_exists(page: Path):
    """A page that names a moved or deleted module is wrong. A top-level folder that does not
    exist yet (a package of the target layout still being built) is not checked."""
    missing = [c for c in named_paths(page) if not (ROOT / c).exists()]
    assert missing == []


def test_the_readme_is_a_front_page_whose_map_reaches_every_page_of_docs():
    text = README.read_text()
    assert len(text.splitlines()) < 150
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in relative_links(README)}
    unlisted = [page.name for page in DOCS if page.resolve() not in linked]
    assert unlisted == []


def test_the_quick_start_gives_exactly_two_commands_and_ci_runs_the_same_test_command():
    text = README.read_text()
    start = text.index("## Quick start")
    section = text[start:text.index("\n## ", start + 1)]
    commands = [block.strip("`\n") for block in FENCE.findall(section)]
    assert commands == ["bin/run", "bin/test"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert any(line.split("#")[0].split()[:1] == ["bin/test"] for line in ci)
