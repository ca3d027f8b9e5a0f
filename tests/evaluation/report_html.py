"""Parse an HTML report into what a reader sees, to compare two renderings of one report.

Used by the report tests of every application: the template-rendered reports must show
what the former f-string renderers showed (same headings, texts, table cells and plots).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser

BLOCKS = {"h1", "h2", "h3", "h4", "p", "li", "td", "th", "summary", "label", "div", "title", "footer"}
VOID = {"img", "input", "meta", "br", "hr", "link"}
SCRIPT = re.compile(r"<script\b", re.I)


@dataclass
class Report:
    """Texts of block elements, tables (rows of cell texts), images (alt, src) and tag counts."""

    blocks: list[str] = field(default_factory=list)
    tables: list[list[list[str]]] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)
    tags: Counter = field(default_factory=Counter)
    styles: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)

    def texts(self) -> Counter:
        return Counter(b for b in self.blocks if b)

    def image_sources(self) -> list[str]:
        return [src for _, src in self.images]


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.report = Report()
        self.stack: list[list[str]] = []  # open block elements' text
        self.open_tables: list[list[list[str]]] = []
        self.raw: str | None = None  # "style" / "script" while inside one

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.report.tags[tag] += 1
        a = dict(attrs)
        if tag in ("style", "script"):
            self.raw = tag
            (self.report.styles if tag == "style" else self.report.scripts).append("")
        elif tag == "img":
            self.report.images.append((a.get("alt") or "", a.get("src") or ""))
        elif tag == "table":
            self.open_tables.append([])
        elif tag == "tr" and self.open_tables:
            self.open_tables[-1].append([])
        if tag in BLOCKS:
            self.stack.append([])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self.raw = None
        elif tag == "table" and self.open_tables:
            self.report.tables.append(self.open_tables.pop())
        if tag in BLOCKS and self.stack:
            text = " ".join("".join(self.stack.pop()).split())
            self.report.blocks.append(text)
            if tag in ("td", "th") and self.open_tables and self.open_tables[-1]:
                self.open_tables[-1][-1].append(text)

    def handle_data(self, data: str) -> None:
        if self.raw == "style":
            self.report.styles[-1] += data
        elif self.raw == "script":
            self.report.scripts[-1] += data
        elif self.stack:
            self.stack[-1].append(data)


def parse(html: str) -> Report:
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return parser.report


def missing_texts(old: Report, new: Report, ignore: tuple[str, ...] = ()) -> Counter:
    """Block texts of ``old`` that ``new`` lacks (``ignore``: prefixes of texts that may differ)."""
    wanted = Counter({t: n for t, n in old.texts().items() if not t.startswith(ignore)})
    return wanted - new.texts()


def missing_tables(old: Report, new: Report) -> list[list[list[str]]]:
    """Tables of ``old`` (every row and cell) that ``new`` does not show."""
    return [t for t in old.tables if t not in new.tables]


def assert_self_contained(html: str) -> None:
    """One file that works offline: no external URL in src/href, one inline stylesheet."""
    assert not re.search(r"""(src|href)\s*=\s*["']?(?!["']|data:|#)""", html, re.I)
    assert "http://" not in html and "https://" not in html
    page = parse(html)
    assert len(page.styles) == 1 and page.tags["link"] == 0


def assert_escaped(html: str, hostile: str = "<script>alert(1)</script>") -> None:
    """``hostile`` appears only escaped: as text, never as a tag."""
    escaped = hostile.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert hostile not in html
    assert escaped in html
    assert any(hostile in text for text in parse(html).blocks)
