"""Loaders for the issue-3 benchmark datasets, with fixed, documented, leak-free splits.

    from bench.datasets import load
    split = load("trec", n_train=64, n_select=100, n_report=200, seed=0)
    split.train, split.select, split.report   # lists of {"text": ..., "label": ...}
    split.labels                               # readable label names, in a fixed order

    python bench/datasets.py                   # prints a summary of every dataset

Data: ``../shared/data`` next to the repository (see each dataset's README there for
provenance, licences and the rows withheld for independent evaluation).

Three disjoint parts per dataset:

``train``
    examples a method may learn from (few-shot demonstrations, bootstrapping,
    distillation); drawn from the dataset's *training* file;
``select``
    rows for choosing between configurations (prompt, strategy, pipeline); drawn from
    the same training file, disjoint from ``train``;
``report``
    the rows whose figures are reported; from the dataset's public evaluation file
    (SST-2 dev, TREC test, AG News test, Banking77 test, ChnSentiCorp dev), never seen
    by any choice.

How the rows are drawn (deterministic for a given ``seed``):

* the training file is first cleaned into a *pool*: texts are compared after
  normalisation (NFKC, lower case, whitespace collapsed); a text that also occurs in the
  evaluation file (an upstream train/test duplicate: TREC, AG News, Banking77 and many
  ChnSentiCorp reviews) is dropped from the pool, duplicates inside the training file
  keep their first occurrence, and a text that the file gives two different labels is
  dropped altogether;
* ``train`` is a stratified sample of the pool: each label gets a share proportional to
  its frequency (largest remainders), and every label at least one row when
  ``n_train >= number of labels`` (so rare classes such as TREC's ``abbreviation``
  appear); with fewer rows than labels, the labels that get a row are chosen at random.
  ``select`` is drawn the same way from what is left.  Both lists are then shuffled;
* ``report`` is the first ``n_report`` rows of the evaluation file after a seeded shuffle
  (``n_report=None``: all of them), not stratified;
* disjointness of the three parts by normalised text is asserted on every load.

Labels are readable words (the models see them): see ``LABEL_NAMES`` per dataset, and
``Split.label_names`` (readable label -> the label as written in the file).
"""

from __future__ import annotations

import csv
import html
import json
import random
import re
import sys
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

Record = dict[str, str]

#: dataset -> {label as written in the files: readable label}; the order is the label order
LABEL_NAMES: dict[str, dict[str, str]] = {
    "sst2": {"0": "negative", "1": "positive"},
    "trec": {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "human",
             "LOC": "location", "NUM": "number"},
    # AG News: classes.txt indices 1-4 (test.csv) and the names in train_subset_alps.tsv
    "ag_news": {"World": "world", "Sports": "sports", "Business": "business", "Sci/Tech": "science/technology"},
    "chnsenticorp": {"0": "负面", "1": "正面"},
    # banking77: filled from categories.json (underscores -> spaces, lower case, trailing "?" dropped)
}

DESCRIPTIONS = {
    "sst2": "SST-2 (GLUE): English movie-review sentence sentiment, 2 labels. train/select from "
            "the 6,885 whole sentences of sst2/train.tsv (GLUE train, 67,349 rows, is every phrase of the "
            "treebank's training sentences: a row whose words lie inside a longer row's is left out); "
            "report from sst2/dev.tsv (GLUE dev minus 300 held-out rows, 572 full sentences).",
    "trec": "TREC question classification, 6 coarse labels. train/select from trec/train.tsv (5,452); "
            "report from trec/test.tsv (TREC-10 test minus 300 held-out rows, 200).",
    "ag_news": "AG News topic, 4 labels. train/select from ag_news/train_subset_alps.tsv (10,001 rows of AG "
               "train, description only: the title is not in that file); report from ag_news/test.csv "
               "(7,300 rows; text = title + '. ' + description). HTML entities (#39; &lt;) decoded, tags "
               "and backslash line markers removed, in both files alike.",
    "banking77": "Banking77 intent, 77 labels. train/select from banking77/train.csv (10,003); report from "
                 "banking77/test.csv (official test minus 300 held-out rows, 2,780).",
    "chnsenticorp": "ChnSentiCorp Chinese review sentiment, 2 labels (正面/负面). train/select from "
                    "chnsenticorp/train.tsv (9,600, many repeated reviews); report from chnsenticorp/dev.tsv "
                    "(LUGE dev minus 300 held-out rows, 900).",
}

NAMES = ("sst2", "trec", "ag_news", "banking77", "chnsenticorp")


@dataclass
class Split:
    """One dataset's three disjoint parts.  Every record is ``{"text": ..., "label": ...}``."""

    name: str
    labels: list[str]
    train: list[Record]
    select: list[Record]
    report: list[Record]
    label_names: dict[str, str] = field(default_factory=dict)  # readable label -> label in the file
    description: str = ""
    text_field: str = "text"
    seed: int = 0
    pool_size: int = 0  # training-file rows eligible for train/select after the leak filter

    def summary(self) -> str:
        def dist(rows: list[Record]) -> str:
            counts: dict[str, int] = defaultdict(int)
            for r in rows:
                counts[r["label"]] += 1
            return ", ".join(f"{lab} {counts[lab]}" for lab in self.labels if counts[lab])

        return (f"{self.name}: {len(self.labels)} labels; train {len(self.train)} [{dist(self.train)}]; "
                f"select {len(self.select)}; report {len(self.report)} [{dist(self.report)}]; "
                f"pool {self.pool_size}")


# -- text helpers ------------------------------------------------------------------------------
def norm(text: str) -> str:
    """The key texts are compared by (duplicates, leaks): NFKC, lower case, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def _clean_ag(text: str) -> str:
    """AG News markup: ``#39;``-style entities (the '&' was lost upstream), ``&lt;b&gt;`` escaped
    tags, and backslashes marking line breaks.  Applied to both AG files alike."""
    # ' #39;s', ' quot;' (an '&' turned into a space upstream) -> "'s", '"'; a real '&#39;' too
    text = re.sub(r"(&| ?)(#\d+|quot|amp|lt|gt);", lambda m: html.unescape(f"&{m.group(2)};"), text)
    text = html.unescape(html.unescape(text))  # '&amp;lt;' occurs too
    text = re.sub(r"</?[a-zA-Z][^<>]{0,200}>", " ", text)  # tags go, their text stays
    text = text.replace("\\$", "$").replace("\\", " ")
    return " ".join(text.split())


def _read(path: Path, *, errors: str = "strict") -> str:
    return path.read_text(encoding="utf-8", errors=errors)


def _tsv(path: Path, *, errors: str = "strict") -> list[list[str]]:
    """Tab-separated rows, no quoting (texts may hold literal '"'), LF or CRLF."""
    return [line.split("\t") for line in _read(path, errors=errors).splitlines() if line.strip()]


def _csv(path: Path) -> list[list[str]]:
    """A real CSV parser: Banking77 has quoted fields with embedded newlines, AG News quotes every field."""
    with path.open(encoding="utf-8", newline="") as f:
        return [row for row in csv.reader(f) if row]


# -- per-dataset readers: (training-file rows, evaluation-file rows) with raw labels ----------------
Raw = list[tuple[str, str]]  # (text, label as written in the file)


def _sst2() -> tuple[Raw, Raw]:
    def read(p: Path) -> Raw:
        rows = _tsv(p)
        assert rows[0] == ["sentence", "label"], rows[0]
        return [(s.strip(), lab.strip()) for s, lab in rows[1:]]

    return _whole_sentences(read(DATA / "sst2" / "train.tsv")), read(DATA / "sst2" / "dev.tsv")


def _whole_sentences(rows: Raw) -> Raw:
    """The rows whose words are not a proper part of a longer row's words.

    GLUE's SST-2 train file holds every labelled phrase of the treebank's training
    sentences (67,349 rows, median 7 words), its dev file whole sentences (median 19).
    Selecting on phrases picks settings for phrases; the rows no longer row contains are
    the 6,885 whole training sentences (median 19 words), SST-2's sentence-level train set.
    """
    words = [tuple(text.split()) for text, _ in rows]
    inner = set()
    for w in words:
        for i in range(len(w)):
            for j in range(i + 1, len(w) + 1):
                if j - i < len(w):
                    inner.add(w[i:j])
    return [row for row, w in zip(rows, words) if w not in inner]


def _trec() -> tuple[Raw, Raw]:
    def read(p: Path) -> Raw:
        rows = _tsv(p)
        assert rows[0] == ["id", "question", "label"], rows[0]
        return [(q.strip(), lab.strip()) for _, q, lab in rows[1:]]

    return read(DATA / "trec" / "train.tsv"), read(DATA / "trec" / "test.tsv")


def _ag_news() -> tuple[Raw, Raw]:
    d = DATA / "ag_news"
    classes = [c.strip() for c in _read(d / "classes.txt").splitlines() if c.strip()]
    train = [(_clean_ag(desc), lab.strip()) for desc, lab in (r for r in _tsv(d / "train_subset_alps.tsv"))]
    test = []
    for idx, title, desc in _csv(d / "test.csv"):
        title, desc = _clean_ag(title), _clean_ag(desc)
        sep = " " if title[-1:] in (".", "!", "?") else ". "
        text = f"{title}{sep}{desc}" if title else desc
        test.append((text, classes[int(idx) - 1]))
    return train, test


def _banking77() -> tuple[Raw, Raw]:
    def read(p: Path) -> Raw:
        rows = _csv(p)
        assert rows[0] == ["text", "category"], rows[0]
        return [(" ".join(t.split()), c.strip()) for t, c in rows[1:]]

    d = DATA / "banking77"
    return read(d / "train.csv"), read(d / "test.csv")


def _chnsenticorp() -> tuple[Raw, Raw]:
    # The files are valid UTF-8 as shipped (checked), but the upstream corpus is known for
    # reviews cut inside a multi-byte character; errors="replace" turns any such bytes into
    # U+FFFD instead of failing the whole load.
    d = DATA / "chnsenticorp"
    train_rows = _tsv(d / "train.tsv", errors="replace")
    assert train_rows[0] == ["label", "text_a"], train_rows[0]
    dev_rows = _tsv(d / "dev.tsv", errors="replace")
    assert dev_rows[0] == ["qid", "label", "text_a"], dev_rows[0]
    train = [(r[1].strip(), r[0].strip()) for r in train_rows[1:]]
    dev = [(r[2].strip(), r[1].strip()) for r in dev_rows[1:]]
    return train, dev


READERS: dict[str, Callable[[], tuple[Raw, Raw]]] = {
    "sst2": _sst2, "trec": _trec, "ag_news": _ag_news, "banking77": _banking77, "chnsenticorp": _chnsenticorp,
}


def _banking77_names() -> dict[str, str]:
    cats = json.loads(_read(DATA / "banking77" / "categories.json"))
    names = {c: c.replace("_", " ").lower().rstrip("?").strip() for c in cats}
    assert len(set(names.values())) == len(cats), "banking77: readable names collide"
    return names


def label_names(name: str) -> dict[str, str]:
    """{label as written in the file: readable label} for ``name``."""
    if name == "banking77":
        return _banking77_names()
    return dict(LABEL_NAMES[name])


@lru_cache(maxsize=None)
def _prepared(name: str) -> tuple[tuple[Record, ...], tuple[Record, ...], tuple[str, ...]]:
    """(pool from the training file, all evaluation rows, labels): cleaned, readable, leak-filtered."""
    if name not in READERS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(NAMES)}")
    if not DATA.is_dir():
        raise FileNotFoundError(f"{DATA}: the shared data folder is missing")
    raw_train, raw_eval = READERS[name]()
    names = label_names(name)

    def readable(rows: Raw, where: str) -> list[Record]:
        out = []
        for text, lab in rows:
            if lab not in names:
                raise ValueError(f"{name} {where}: unknown label {lab!r}")
            if text:
                out.append({"text": text, "label": names[lab]})
        return out

    train, evaluation = readable(raw_train, "train"), readable(raw_eval, "eval")
    eval_keys = {norm(r["text"]) for r in evaluation}
    labels_of: dict[str, set[str]] = defaultdict(set)
    for r in train:
        labels_of[norm(r["text"])].add(r["label"])
    pool, seen = [], set()
    for r in train:
        key = norm(r["text"])
        if key in eval_keys or key in seen or len(labels_of[key]) > 1:
            continue
        seen.add(key)
        pool.append(r)
    return tuple(pool), tuple(evaluation), tuple(names.values())


# -- sampling ------------------------------------------------------------------------------------
def _quota(sizes: dict[str, int], n: int, rng: random.Random) -> dict[str, int]:
    """Rows per label for a stratified sample of ``n``: proportional (largest remainders),
    at least one per label when n >= number of labels, never more than a label has."""
    labels = [lab for lab, s in sizes.items() if s > 0]
    total = sum(sizes[lab] for lab in labels)
    if n > total:
        raise ValueError(f"asked for {n} rows, only {total} available")
    if n == 0:
        return {lab: 0 for lab in sizes}
    if n < len(labels):  # too few rows for every label: pick which labels get one, at random
        chosen = set(rng.sample(labels, n))
        return {lab: int(lab in chosen) for lab in sizes}
    exact = {lab: n * sizes[lab] / total for lab in labels}
    quota = {lab: min(sizes[lab], int(exact[lab])) for lab in labels}
    by_remainder = sorted(labels, key=lambda lab: (-(exact[lab] - int(exact[lab])), labels.index(lab)))
    left, i = n - sum(quota.values()), 0
    while left > 0:  # largest remainders first (never more than a label has)
        lab = by_remainder[i % len(labels)]
        if quota[lab] < sizes[lab]:
            quota[lab] += 1
            left -= 1
        i += 1
    for lab in labels:  # every label at least once: taken from the label with the largest quota
        if quota[lab] == 0:
            donor = max(labels, key=lambda other: (quota[other], -labels.index(other)))
            quota[donor] -= 1
            quota[lab] = 1
    return {lab: quota.get(lab, 0) for lab in sizes}


def _stratified(groups: dict[str, list[Record]], n: int, rng: random.Random) -> list[Record]:
    """Take a stratified sample of ``n`` out of ``groups`` (each group already shuffled; taken rows
    are removed from the front of their group).  Returns the sample shuffled."""
    quota = _quota({lab: len(rows) for lab, rows in groups.items()}, n, rng)
    out: list[Record] = []
    for lab, rows in groups.items():
        k = quota[lab]
        out.extend(rows[:k])
        del rows[:k]
    rng.shuffle(out)
    return out


def load(name: str, *, n_train: int, n_select: int, n_report: int | None, seed: int = 0) -> Split:
    """``name``'s train/select/report parts (see the module docstring for how they are drawn).

    The parts depend only on (name, sizes, seed); ``report`` depends only on
    (name, n_report, seed), so changing ``n_train`` never changes the reported rows.
    """
    if min(n_train, n_select) < 0 or (n_report is not None and n_report < 0):
        raise ValueError("sizes must be >= 0")
    pool, evaluation, labels = _prepared(name)
    if n_train + n_select > len(pool):
        raise ValueError(f"{name}: n_train + n_select = {n_train + n_select} > {len(pool)} usable training rows")

    rng = random.Random(f"{name}:{seed}:train-select")
    groups: dict[str, list[Record]] = {lab: [] for lab in labels}
    for r in pool:
        groups[r["label"]].append(dict(r))
    for lab in labels:
        rng.shuffle(groups[lab])
    train = _stratified(groups, n_train, rng)
    select = _stratified(groups, n_select, rng)

    report = [dict(r) for r in evaluation]
    random.Random(f"{name}:{seed}:report").shuffle(report)
    if n_report is not None:
        report = report[:n_report]

    keys = [{norm(r["text"]) for r in part} for part in (train, select, report)]
    assert len(keys[0]) == len(train) and len(keys[1]) == len(select), f"{name}: duplicate texts in train/select"
    assert not keys[0] & keys[1], f"{name}: train and select overlap"
    assert not (keys[0] | keys[1]) & keys[2], f"{name}: train/select overlap the report rows"

    names = label_names(name)
    return Split(name=name, labels=list(labels), train=train, select=select, report=report,
                 label_names={v: k for k, v in names.items()}, description=DESCRIPTIONS[name],
                 seed=seed, pool_size=len(pool))


def available() -> list[str]:
    """The datasets whose folder exists under ``DATA``."""
    return [n for n in NAMES if (DATA / n).is_dir()]


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Summarise the benchmark splits.")
    ap.add_argument("names", nargs="*", default=list(NAMES))
    ap.add_argument("--n-train", type=int, default=64)
    ap.add_argument("--n-select", type=int, default=100)
    ap.add_argument("--n-report", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for n in args.names:
        s = load(n, n_train=args.n_train, n_select=args.n_select, n_report=args.n_report, seed=args.seed)
        print(s.summary())
        print(f"  e.g. {s.report[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
