"""Reading input records (CSV, TSV, JSONL, JSON) and writing JSONL results.

Errors name the file, the line and the fix: a non-UTF-8 byte gives its offset and
an ``iconv`` hint; a missing column lists the columns that exist.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..errors import ConfigError, InputDataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


def detect_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputDataError(
            f"{path}: unknown input format {path.suffix!r}",
            hint="use a .csv, .tsv, .jsonl or .json file",
        )
    return fmt


def _read_text(path: Path, encoding: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputDataError(f"input file not found: {path}") from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputDataError(
            f"{path}: line {line} (byte {exc.start}) is not valid {encoding}: {raw[exc.start:exc.start + 4]!r}",
            hint=f"convert the file, e.g. `iconv -f GB18030 -t UTF-8 {path.name} > fixed.csv`, "
            "or pass --encoding gb18030 / latin-1",
        ) from None


def read_records(path: str | Path, *, encoding: str = "utf-8-sig", limit: int | None = None) -> list[dict[str, Any]]:
    path = Path(path)
    fmt = detect_format(path)
    text = _read_text(path, encoding)
    records = list(_parse(text, fmt, path))
    return records[:limit] if limit is not None else records


def _parse(text: str, fmt: str, path: Path) -> Iterator[dict[str, Any]]:
    if fmt in ("csv", "tsv"):
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="," if fmt == "csv" else "\t",
                                quoting=csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE)
        if not reader.fieldnames:
            raise InputDataError(f"{path}: empty file or no header row", hint="the first line must name the columns")
        width = len(reader.fieldnames)
        try:
            for row in reader:
                if None in row or len(row) != width or any(v is None for v in row.values()):
                    # DictReader puts extra fields in a list under the key None, missing ones as None values
                    fields = sum(1 for k, v in row.items() if k is not None and v is not None)
                    fields += len(row.get(None) or [])  # type: ignore[call-overload]
                    raise InputDataError(
                        f"{path}: line {reader.line_num} has {fields} fields, the header has {width}",
                        hint="check quoting/delimiters on that line",
                    )
                yield {k.strip(): v for k, v in row.items()}
        except csv.Error as exc:
            raise InputDataError(f"{path}: line {reader.line_num}: {exc}", hint="check quoting on that line") from None
    elif fmt == "jsonl":
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputDataError(f"{path}: line {n}: invalid JSON: {exc.msg}") from None
            if not isinstance(value, dict):
                raise InputDataError(f"{path}: line {n}: expected a JSON object, got {type(value).__name__}")
            yield value
    else:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputDataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise InputDataError(f"{path}: expected a JSON array of objects")
        yield from value


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
