"""Data and backends shared by the workbench tests (API and Chromium)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from openautoglm.backends.fake import FakeBackend

#: a label pipeline the fake backend answers by word overlap: "good" texts -> good, "bad" -> bad
GOOD_BAD_YAML = """name: verdict
task:
  name: verdict
  template: "Review: {text}"
  format: text
  labels: [good, bad]
"""
#: the same task with a prompt that always mentions "good": the fake then says good to everything
ALWAYS_GOOD_YAML = GOOD_BAD_YAML.replace('"Review: {text}"', '"A good question. Review: {text}"')
XSS = '<img src=x onerror="window.__xss=1">'


def csv_quote(text: str) -> str:
    """``text`` as one CSV field (quoted, inner quotes doubled)."""
    return '"' + text.replace('"', '""') + '"'


def reviews_csv(n: int = 40, xss: bool = False) -> str:
    """``text,label``: alternately good and bad reviews; every fifth labelled wrongly (noise)."""
    rows = []
    for i in range(n):
        word = "good" if i % 2 else "bad"
        gold = word if i % 5 else ("bad" if word == "good" else "good")
        text = f"a {word} film number {i}" + (f" {XSS}" if xss and i == 3 else "")
        rows.append(f"{csv_quote(text)},{gold}")
    return "text,label\n" + "\n".join(rows) + "\n"


class GatedFake(FakeBackend):
    """The fake backend whose calls wait while ``gate`` is closed (a test holds a run mid-way);
    with ``block_after``, the gate closes by itself once that many calls were answered."""

    def __init__(self, block_after: int | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()
        self.block_after = block_after

    def _wait(self) -> None:
        if self.block_after is not None and self.calls >= self.block_after:
            self.block_after = None
            self.gate.clear()
        if not self.gate.is_set():
            self.waiting.set()
            self.gate.wait(timeout=120)

    def generate(self, requests):  # type: ignore[no-untyped-def]
        self._wait()
        return super().generate(requests)

    def score_batch(self, requests):  # type: ignore[no-untyped-def]
        self._wait()
        return super().score_batch(requests)


def singers_db(path: Path, xss: bool = False) -> Path:
    """A small SQLite database: ``singer(name, age, country)``."""
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE singer (name TEXT, age INTEGER, country TEXT);")
    rows = [("Ann", 30, "France"), ("Bob", 41, "Chile"), ("Cy", 25, "Japan")]
    if xss:
        rows.append((XSS, 52, "Nowhere"))
    con.executemany("INSERT INTO singer VALUES (?, ?, ?)", rows)
    con.commit()
    con.close()
    return path


#: scripted answers for two SQL questions: a wrong column first (corrected on the second attempt), then
#: the corrected query, then the follow-up's query (one candidate per question)
SQL_ANSWERS = ["SELECT nam FROM singer WHERE age > 28", "SELECT name FROM singer WHERE age > 28",
               "SELECT name, age FROM singer WHERE age > 28 ORDER BY age"]


def noisy_labels_csv(n: int = 60) -> tuple[str, set[int]]:
    """Clearly positive or negative texts; every tenth (from row 3) labelled the other way.
    Returns the CSV and the rows whose labels were flipped."""
    import random

    rng = random.Random(0)
    pos, neg = "wonderful lovely great excellent superb delightful".split(), "awful terrible horrible dreadful poor boring".split()
    rows, flipped = [], set()
    for i in range(n):
        good = i % 2 == 0
        label = "good" if good else "bad"
        if i % 10 == 3:
            label, _ = ("bad" if good else "good"), flipped.add(i)
        rows.append(f"{' '.join(rng.sample(pos if good else neg, 3))} film,{label}")
    return "text,label\n" + "\n".join(rows) + "\n", flipped
