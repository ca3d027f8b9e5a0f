"""``qc``: annotation agreement between annotators and rule checks from a YAML guideline.

Agreement: Cohen's kappa (scikit-learn) for every pair of annotator columns, Fleiss' kappa
(statsmodels) over all of them (rows with a missing annotation are skipped for Fleiss),
per-label agreement, and the confusion between each pair (which labels annotators swap).

Guideline YAML (all keys optional)::

    labels: [positive, negative, neutral]     # allowed values of label_column(s)
    label_column: label                       # or label_columns: [ann1, ann2]
    required: [text, label]                   # fields that must be present and non-empty
    fields:
      text: {min_length: 3, max_length: 2000, pattern: '\\S'}
    spans:                                    # span annotations: a JSON list of
      column: entities                        #   {"start": int, "end": int, "label": str}
      text_column: text
      labels: [PER, ORG, LOC]
      allow_overlap: false
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError, InputDataError

_MISSING = ("", None)


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Cohen's kappa of two label sequences (1 = perfect, 0 = chance), by scikit-learn.

    NaN for no items; 1.0 when both annotators gave every item the same one label (where
    kappa is 0/0 and scikit-learn would answer NaN).
    """
    if len(a) == 0:
        return float("nan")
    if len({*a, *b}) == 1:
        return 1.0
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(list(a), list(b)))


def fleiss_kappa(rows: Sequence[Sequence[Any]]) -> float:
    """Fleiss' kappa by statsmodels; each row holds the labels the raters gave one item (same count per row).

    NaN for no items; 1.0 when every rating is the same one label (0/0 otherwise).
    """
    if not rows:
        return float("nan")
    raters = len(rows[0])
    if raters < 2 or any(len(r) != raters for r in rows):
        raise InputDataError("Fleiss' kappa needs the same number (>= 2) of ratings per item")
    table = [[str(x) for x in r] for r in rows]
    if len({x for r in table for x in r}) == 1:
        return 1.0
    import numpy as np
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

    counts, _categories = aggregate_raters(np.array(table, dtype=object))
    return float(sm_fleiss_kappa(counts, method="fleiss"))


@dataclass
class AgreementResult:
    pairwise: dict[str, float]
    fleiss: float | None
    per_label: dict[str, float]
    confusion: dict[str, dict[str, dict[str, int]]]
    n_items: int

    def to_dict(self) -> dict[str, Any]:
        return {"n_items": self.n_items, "cohen_kappa": self.pairwise, "fleiss_kappa": self.fleiss,
                "per_label_agreement": self.per_label, "confusion": self.confusion}


def agreement(records: Sequence[Mapping[str, Any]], annotator_columns: Sequence[str]) -> AgreementResult:
    """Cohen's kappa per pair, Fleiss' kappa, per-label agreement and pairwise confusion."""
    cols = list(annotator_columns)
    if len(cols) < 2:
        raise InputDataError("agreement needs at least two annotator columns", hint="--annotators ann1,ann2")
    if records:
        missing = [c for c in cols if c not in records[0]]
        if missing:
            raise InputDataError(f"no annotator column {missing[0]!r}; columns: {', '.join(map(str, records[0]))}")
    pairwise: dict[str, float] = {}
    confusion: dict[str, dict[str, dict[str, int]]] = {}
    for i in range(len(cols)):
        for j in range(i + 1, len(cols)):
            pairs = [(str(r[cols[i]]), str(r[cols[j]])) for r in records
                     if r.get(cols[i]) not in _MISSING and r.get(cols[j]) not in _MISSING]
            key = f"{cols[i]}~{cols[j]}"
            pairwise[key] = round(cohen_kappa([p[0] for p in pairs], [p[1] for p in pairs]), 4)
            table: dict[str, dict[str, int]] = {}
            for x, y in pairs:
                if x != y:
                    table.setdefault(x, {}).setdefault(y, 0)
                    table[x][y] += 1
            confusion[key] = table
    full = [[str(r[c]) for c in cols] for r in records if all(r.get(c) not in _MISSING for c in cols)]
    fleiss = round(fleiss_kappa(full), 4) if full else None
    per_label: dict[str, float] = {}
    seen = Counter(x for row in full for x in row)
    for label in seen:  # share of ratings of this label whose item was unanimous
        unanimous = sum(row.count(label) for row in full if len(set(row)) == 1)
        per_label[label] = round(unanimous / seen[label], 4)
    return AgreementResult(pairwise, fleiss, dict(sorted(per_label.items())), confusion, len(full))


@dataclass
class Guideline:
    labels: list[str] | None = None
    label_columns: list[str] = field(default_factory=list)
    required: list[str] = field(default_factory=list)
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    spans: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: str | Path) -> "Guideline":
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError("guideline file not found", source=str(path)) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML: {exc}", source=str(path)) from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<guideline>") -> "Guideline":
        known = {"labels", "label_column", "label_columns", "required", "fields", "spans"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r}", source=source, field=unknown[0],
                              hint=f"known keys: {', '.join(sorted(known))}")
        cols = list(data.get("label_columns") or ([data["label_column"]] if data.get("label_column") else []))
        if data.get("labels") is not None and not cols:
            cols = ["label"]
        spans = data.get("spans")
        if spans is not None and "column" not in spans:
            raise ConfigError("spans needs a 'column'", source=source, field="spans.column")
        return cls(labels=[str(x) for x in data["labels"]] if data.get("labels") else None, label_columns=cols,
                   required=list(data.get("required") or []), fields=dict(data.get("fields") or {}), spans=spans)


def check_guideline(records: Sequence[Mapping[str, Any]], guideline: Guideline | Mapping[str, Any] | str | Path
                    ) -> list[dict[str, Any]]:
    """Violations: ``{"row", "rule", "field", "message"}`` for each broken rule."""
    if isinstance(guideline, (str, Path)):
        guideline = Guideline.load(guideline)
    elif not isinstance(guideline, Guideline):
        guideline = Guideline.from_dict(guideline)
    out: list[dict[str, Any]] = []

    def bad(row: int, rule: str, fld: str, message: str) -> None:
        out.append({"row": row, "rule": rule, "field": fld, "message": message})

    allowed = set(guideline.labels or [])
    for i, rec in enumerate(records):
        for fld in guideline.required:
            if rec.get(fld) in _MISSING:
                bad(i, "required", fld, "missing or empty")
        if allowed:
            for col in guideline.label_columns:
                value = rec.get(col)
                if value not in _MISSING and str(value) not in allowed:
                    bad(i, "allowed_labels", col, f"label {value!r} is not in the guideline")
        for fld, rules in guideline.fields.items():
            value = rec.get(fld)
            if value in _MISSING:
                continue
            text = str(value)
            if "min_length" in rules and len(text) < int(rules["min_length"]):
                bad(i, "min_length", fld, f"{len(text)} characters < {rules['min_length']}")
            if "max_length" in rules and len(text) > int(rules["max_length"]):
                bad(i, "max_length", fld, f"{len(text)} characters > {rules['max_length']}")
            if "pattern" in rules and not re.search(str(rules["pattern"]), text):
                bad(i, "pattern", fld, f"does not match {rules['pattern']!r}")
        if guideline.spans:
            _check_spans(i, rec, guideline.spans, bad)
    return out


def _check_spans(i: int, rec: Mapping[str, Any], cfg: Mapping[str, Any], bad: Any) -> None:
    col, text_col = cfg["column"], cfg.get("text_column", "text")
    raw = rec.get(col)
    if raw in _MISSING:
        return
    try:
        spans = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        bad(i, "span_format", col, "not valid JSON")
        return
    if not isinstance(spans, list):
        bad(i, "span_format", col, "expected a list of {start, end, label}")
        return
    text = str(rec.get(text_col) or "")
    allowed = set(cfg.get("labels") or [])
    ok_spans = []
    for s in spans:
        if not isinstance(s, Mapping) or not isinstance(s.get("start"), int) or not isinstance(s.get("end"), int):
            bad(i, "span_format", col, f"bad span {s!r}")
            continue
        start, end = s["start"], s["end"]
        if not 0 <= start < end <= len(text):
            bad(i, "span_bounds", col, f"span {start}-{end} is outside the text (length {len(text)})")
            continue
        piece = text[start:end]
        if piece != piece.strip():
            bad(i, "span_whitespace", col, f"span {start}-{end} starts or ends with whitespace: {piece!r}")
        if (start > 0 and text[start - 1].isalnum() and piece[0].isalnum() and text[start - 1].isascii()) or \
           (end < len(text) and text[end].isalnum() and piece[-1].isalnum() and text[end].isascii()):
            bad(i, "span_word_boundary", col, f"span {start}-{end} cuts a word: {piece!r}")
        if allowed and str(s.get("label")) not in allowed:
            bad(i, "span_label", col, f"span label {s.get('label')!r} is not allowed")
        ok_spans.append((start, end))
    if not cfg.get("allow_overlap", False):
        ok_spans.sort()
        for (s1, e1), (s2, e2) in zip(ok_spans, ok_spans[1:]):
            if s2 < e1:
                bad(i, "span_overlap", col, f"spans {s1}-{e1} and {s2}-{e2} overlap")
