"""Reading input records (CSV, TSV, JSONL, JSON, Parquet) and writing JSONL results.

* :func:`iter_records` streams CSV/TSV/JSONL row by row (constant memory), so the data
  toolkit works on files larger than memory; JSON and Parquet are read whole.
* Errors name the file, the line and the fix: undecodable bytes either raise
  :class:`~openautoglm.errors.InputDataError` naming the line and byte with an ``iconv``
  hint (``errors="strict"``, the default) or are replaced with U+FFFD and counted
  (``errors="replace"``; :class:`ReadStats` keeps the lines); a CSV row with the wrong
  number of fields names its line; a missing column lists the columns that exist.
* Parquet needs pandas with pyarrow (or fastparquet); without them the error says so.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..errors import ConfigError, InputDataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "json", ".parquet": "parquet"}
REPLACEMENT = "\ufffd"


def detect_format(path: Path, role: str = "input") -> str:
    """The table format from the file suffix, or a clear error listing the supported ones."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputDataError(f"{path}: unknown {role} format {path.suffix!r}",
                             hint="use a .csv, .tsv, .jsonl, .json or .parquet file")
    return fmt


@dataclass
class ReadStats:
    """What happened while reading: rows, and lines holding undecodable bytes."""

    rows: int = 0
    invalid_byte_lines: list[int] = field(default_factory=list)
    invalid_bytes: int = 0


def _lines(path: Path, encoding: str, errors: str, stats: ReadStats) -> Iterator[str]:
    """Decoded lines (with their newline), one at a time; strict errors name line and byte."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise InputDataError(f"input file not found: {path}", hint="check the path") from None
    except IsADirectoryError:
        raise InputDataError(f"{path} is a directory, not a file", hint="pass a .csv/.tsv/.jsonl file") from None
    offset = 0
    with fh:
        for n, raw in enumerate(fh, start=1):
            if n == 1 and encoding.lower().replace("_", "-") in ("utf-8", "utf-8-sig", "utf8"):
                raw = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
                enc = "utf-8"
            else:
                enc = "utf-8" if encoding.lower() in ("utf-8-sig", "utf8") else encoding
            try:
                text = raw.decode(enc)
            except UnicodeDecodeError as exc:
                if errors == "strict":
                    raise InputDataError(
                        f"{path}: line {n} (byte {offset + exc.start}) is not valid {encoding}: "
                        f"{raw[exc.start:exc.start + 4]!r}",
                        hint=f"convert it (e.g. `iconv -f GB18030 -t UTF-8 {path.name}`) or pass --encoding "
                        "gb18030/latin-1 (the data toolkit's commands also take --encoding-errors replace, "
                        "to keep going and count them)",
                    ) from None
                text = raw.decode(enc, errors="replace")
                stats.invalid_byte_lines.append(n)
                stats.invalid_bytes += text.count(REPLACEMENT)
            offset += len(raw)
            yield text


def iter_records(path: str | Path, *, encoding: str = "utf-8", errors: str = "strict",
                 stats: ReadStats | None = None, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Yield records (dicts) from a table file; CSV/TSV/JSONL stream, JSON/Parquet load whole."""
    path = Path(path)
    fmt = detect_format(path)
    stats = stats if stats is not None else ReadStats()
    if errors not in ("strict", "replace"):
        raise InputDataError(f"unknown encoding-errors mode {errors!r}", hint="use 'strict' or 'replace'")
    if fmt == "parquet":
        rows: Iterable[dict[str, Any]] = _read_parquet(path)
    elif fmt == "json":
        rows = _read_json(path, encoding, errors, stats)
    elif fmt == "jsonl":
        rows = _iter_jsonl(path, encoding, errors, stats)
    else:
        rows = _iter_delimited(path, fmt, encoding, errors, stats)
    for row in rows:
        if limit is not None and stats.rows >= limit:
            return
        stats.rows += 1
        yield row


def read_records(path: str | Path, *, encoding: str = "utf-8", errors: str = "strict",
                 limit: int | None = None) -> list[dict[str, Any]]:
    """All records of a table file as a list of dicts (``errors``: see :func:`iter_records`)."""
    return list(iter_records(path, encoding=encoding, errors=errors, limit=limit))


def _iter_delimited(path: Path, fmt: str, encoding: str, errors: str, stats: ReadStats) -> Iterator[dict[str, Any]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.reader(_lines(path, encoding, errors, stats), delimiter="," if fmt == "csv" else "\t",
                        quoting=csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE)
    try:
        header = next(reader, None)
        if not header:
            raise InputDataError(f"{path}: empty file or no header row", hint="the first line must name the columns")
        header = [h.strip() for h in header]
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise InputDataError(f"{path}: line {reader.line_num} has {len(row)} fields, the header has "
                                     f"{len(header)}", hint="check quoting/delimiters on that line")
            yield dict(zip(header, row))
    except csv.Error as exc:
        raise InputDataError(f"{path}: line {reader.line_num}: {exc}", hint="check quoting on that line") from None


def _iter_jsonl(path: Path, encoding: str, errors: str, stats: ReadStats) -> Iterator[dict[str, Any]]:
    for n, line in enumerate(_lines(path, encoding, errors, stats), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputDataError(f"{path}: line {n}: invalid JSON: {exc.msg}", hint="one JSON object per line") from None
        if not isinstance(value, dict):
            raise InputDataError(f"{path}: line {n}: expected a JSON object, got {type(value).__name__}")
        yield value


def _read_json(path: Path, encoding: str, errors: str, stats: ReadStats) -> list[dict[str, Any]]:
    text = "".join(_lines(path, encoding, errors, stats))
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputDataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InputDataError(f"{path}: expected a JSON array of objects", hint="or use JSONL, one object per line")
    return value


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputDataError(f"input file not found: {path}", hint="check the path")
    try:
        import pandas as pd

        frame = pd.read_parquet(path)
    except ImportError as exc:
        raise InputDataError(f"{path}: reading Parquet needs pandas with pyarrow ({exc})",
                             hint="pip install pyarrow, or convert the file to CSV/JSONL") from None
    return frame.to_dict(orient="records")


def require_columns(records: Sequence[dict[str, Any]], needed: Iterable[str], source: str) -> None:
    """Fail early, naming the missing column and what exists, before any model call."""
    if not records:
        return
    have = set(records[0])
    missing = sorted(set(needed) - have)
    if missing:
        raise InputDataError(
            f"{source}: missing column {', '.join(repr(m) for m in missing)}; it has: {', '.join(sorted(have))}",
            hint="rename the column in the file, or map it in the pipeline with `inputs: {text: your_column}`",
        )


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]], *, append: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        fh.flush()


def parse_label_map(text: str | None) -> dict[str, str]:
    """``"1=positive,0=negative"`` → ``{"1": "positive", "0": "negative"}``."""
    if not text:
        return {}
    mapping = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"bad --label-map entry {part!r}", hint="write it like '1=positive,0=negative'")
        mapping[key.strip()] = value.strip()
    return mapping


def map_labels(records: list[dict[str, Any]], column: str, mapping: dict[str, str]) -> list[dict[str, Any]]:
    if not mapping:
        return records
    return [{**r, column: mapping.get(str(r.get(column, "")).strip(), r.get(column))} for r in records]
