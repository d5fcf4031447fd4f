"""The docs hold together: README.md stays a front page, and every relative link resolves.

Every relative markdown link in README.md and docs/*.md must point at a file in the
checkout, and a `#fragment` into a markdown file must name one of its headings (as
GitHub turns a heading into an anchor). Links inside fenced code blocks are not links.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 300

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def doc_files() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _prose(text: str) -> str:
    """The text without fenced code blocks (their contents are not markdown)."""
    return _FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file's headings."""
    return {slug(h) for h in _HEADING.findall(_prose(path.read_text(encoding="utf-8")))}


def relative_links(path: Path) -> list[str]:
    """The link targets of a markdown file that are neither absolute URLs nor mail."""
    prose = _INLINE_CODE.sub("", _prose(path.read_text(encoding="utf-8")))
    return [
        target for target in _LINK.findall(prose)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)
    ]


def broken(path: Path, target: str) -> str | None:
    """Why `target`, linked from `path`, does not resolve (None when it does)."""
    file_part, _, fragment = target.partition("#")
    dest = (path.parent / file_part).resolve() if file_part else path
    if not dest.exists():
        return f"{target}: no such file {dest}"
    if fragment and dest.suffix == ".md" and fragment not in anchors(dest):
        return f"{target}: {dest.name} has no heading with the anchor #{fragment}"
    return None


def test_the_docs_exist() -> None:
    assert (ROOT / "docs").is_dir()
    assert len(doc_files()) > 1


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    problems = [p for t in relative_links(path) if (p := broken(path, t)) is not None]
    assert problems == []


def test_the_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES


def test_the_readme_links_every_docs_page() -> None:
    linked = {
        (ROOT / t.partition("#")[0]).resolve() for t in relative_links(ROOT / "README.md")
    }
    assert [p for p in doc_files()[1:] if p.resolve() not in linked] == []


def test_the_link_check_sees_links_and_anchors(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# A `code` title, here\n\n[ok](#a-code-title-here) [gone](missing.md) "
        "[web](https://example.com) `[not](a-link.md)`\n\n```\n[also](not-a-link.md)\n```\n",
        encoding="utf-8",
    )
    targets = relative_links(page)
    assert targets == ["#a-code-title-here", "missing.md"]
    assert broken(page, "#a-code-title-here") is None
    assert broken(page, "#nowhere") is not None
    assert broken(page, "missing.md") is not None
