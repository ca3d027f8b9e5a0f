"""Reading input records (CSV, TSV, JSONL, JSON, Parquet) and writing JSONL results.

* :func:`iter_records` streams CSV/TSV/JSONL row by row (constant memory), so the data
  toolkit works on files larger than memory; JSON and Parquet are read whole.
* Errors name the file, the line and the fix: undecodable bytes either raise
  :class:`~openautoglm.errors.InputDataError` naming the line and byte with an ``iconv``
  hint (``errors="strict"``, the default) or are replaced with U+FFFD and counted
  (``errors="replace"``; :class:`ReadStats` keeps the lines); a CSV row with the wrong
  number of fields names its line; a missing column lists the columns that exist.
* A CSV/TSV header is checked before any row is read: a repeated column name, a header line
  over :data:`MAX_HEADER_BYTES` (read with a bounded ``readline``, so a multi-gigabyte file
  without line breaks is never loaded) or over :data:`MAX_COLUMNS` columns, and old-Mac (CR)
  line endings are errors naming the file and the likely cause.
* A file without records (a header and no rows, an empty JSONL file, ``[]``) is an error
  unless ``allow_empty=True``: an export that stopped after the header should not look like
  a successful run over zero rows.
* Parquet needs pandas with pyarrow (or fastparquet); without them the error says so.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Sequence

from ..errors import ConfigError, InputDataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "json", ".parquet": "parquet"}
REPLACEMENT = "\ufffd"
#: a CSV/TSV header line longer than this is not a header (wrong line endings, binary data, not a table)
MAX_HEADER_BYTES = 1 << 20
#: a CSV/TSV header with more columns than this is not a header either (wrong delimiter, not a table)
MAX_COLUMNS = 10_000
_BOM = b"\xef\xbb\xbf"


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


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InputDataError(f"input file not found: {path}", hint="check the path") from None
    except IsADirectoryError:
        raise InputDataError(f"{path} is a directory, not a file", hint="pass a .csv/.tsv/.jsonl file") from None


def _size(num: int) -> str:
    """``52428800`` → ``'50.0 MiB'``."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    power = 0
    while power < len(units) - 1 and num >= 1024 ** (power + 1):
        power += 1
    return f"{num} bytes" if power == 0 else f"{num / 1024 ** power:.1f} {units[power]}"


def _not_a_header(path: Path, head: bytes, limit: int) -> InputDataError:
    """The error for a first line over ``limit`` bytes, with its likely cause."""
    if b"\x00" in head:
        cause = "it holds NUL bytes: binary data, or UTF-16 text"
        hint = f"convert UTF-16 with `iconv -f UTF-16 -t UTF-8 {path.name}`; binary files cannot be read as a table"
    elif b"\r" in head:
        cause = "its lines end in CR only (old Mac line endings)"
        hint = f"convert the line endings, e.g. `tr '\\r' '\\n' < {path.name} > fixed{path.suffix}`"
    else:
        cause = "not a table (minified JSON? then use a .json suffix)"
        hint = "the first line of a CSV/TSV must name the columns"
    return InputDataError(f"{path}: the header line is over {_size(limit)} (no line break in the first {limit:,} "
                          f"bytes of this {_size(path.stat().st_size)} file): {cause}", hint=hint)


def _raw_lines(fh: BinaryIO, path: Path, first_line_limit: int | None) -> Iterator[bytes]:
    """The file's lines as bytes; the first read with a bounded ``readline`` when a limit is given."""
    if first_line_limit is not None:
        first = fh.readline(first_line_limit + 1)
        if len(first) > first_line_limit:
            raise _not_a_header(path, first, first_line_limit)
        if b"\r" in first.rstrip(b"\r\n"):
            raise InputDataError(f"{path}: line 1 holds a CR (\\r) that does not end the line: the file has old "
                                 "Mac (CR-only) line endings",
                                 hint=f"convert them, e.g. `tr '\\r' '\\n' < {path.name} > fixed{path.suffix}`")
        if first:
            yield first
    yield from fh


def _decode_hint(path: Path, raw: bytes) -> str:
    """How to fix undecodable bytes: UTF-16 (a BOM or NUL bytes) or a legacy encoding."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw:
        return f"the file looks like UTF-16: convert it with `iconv -f UTF-16 -t UTF-8 {path.name}`"
    return (f"convert it (e.g. `iconv -f GB18030 -t UTF-8 {path.name}`) or pass --encoding gb18030/latin-1 "
            "(the data toolkit's commands also take --encoding-errors replace, to keep going and count them)")


def _lines(path: Path, encoding: str, errors: str, stats: ReadStats,
           first_line_limit: int | None = None) -> Iterator[str]:
    """Decoded lines (with their newline), one at a time; strict errors name line and byte."""
    utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf-8-sig", "utf8")
    enc = "utf-8" if utf8 else encoding
    offset = 0
    with _open(path) as fh:
        for n, raw in enumerate(_raw_lines(fh, path, first_line_limit), start=1):
            start, offset = offset, offset + len(raw)
            if n == 1 and utf8 and raw.startswith(_BOM):
                raw, start = raw[len(_BOM):], start + len(_BOM)
            try:
                text = raw.decode(enc)
            except UnicodeDecodeError as exc:
                if errors == "strict":
                    raise InputDataError(f"{path}: line {n} (byte {start + exc.start}) is not valid {encoding}: "
                                         f"{raw[exc.start:exc.start + 4]!r}", hint=_decode_hint(path, raw)) from None
                text = raw.decode(enc, errors="replace")
                stats.invalid_byte_lines.append(n)
                stats.invalid_bytes += text.count(REPLACEMENT)
            yield text


def iter_records(path: str | Path, *, encoding: str = "utf-8", errors: str = "strict",
                 stats: ReadStats | None = None, limit: int | None = None,
                 allow_empty: bool = False) -> Iterator[dict[str, Any]]:
    """Yield records (dicts) from a table file; CSV/TSV/JSONL stream, JSON/Parquet load whole.

    A file without records raises :class:`InputDataError` once the reading ends, unless
    ``allow_empty`` (or ``limit=0``).
    """
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
    count = 0
    for row in rows:
        if limit is not None and count >= limit:
            return
        count += 1
        stats.rows += 1
        yield row
    if count == 0 and not allow_empty and limit != 0:
        raise _no_records(path, fmt)


def _no_records(path: Path, fmt: str) -> InputDataError:
    if fmt in ("csv", "tsv"):
        where, check = "the header is followed by no data rows", "did the export stop after the header?"
    else:
        where, check = "it holds no records", "did the export write anything?"
    return InputDataError(f"{path}: {where} (0 records)",
                          hint=f"check that the file is complete ({check}); to accept an empty input, "
                          "pass --allow-empty (Python: allow_empty=True)")


def read_records(path: str | Path, *, encoding: str = "utf-8", errors: str = "strict",
                 limit: int | None = None, allow_empty: bool = False) -> list[dict[str, Any]]:
    """All records of a table file as a list of dicts (``errors``, ``allow_empty``: see :func:`iter_records`)."""
    return list(iter_records(path, encoding=encoding, errors=errors, limit=limit, allow_empty=allow_empty))


def _iter_delimited(path: Path, fmt: str, encoding: str, errors: str, stats: ReadStats) -> Iterator[dict[str, Any]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.reader(_lines(path, encoding, errors, stats, first_line_limit=MAX_HEADER_BYTES),
                        delimiter="," if fmt == "csv" else "\t",
                        quoting=csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE)
    try:
        header = next(reader, None)
        if not header:
            raise InputDataError(f"{path}: empty file or no header row", hint="the first line must name the columns")
        header = [h.strip() for h in header]
        _check_header(path, fmt, header)
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise InputDataError(f"{path}: line {reader.line_num} has {len(row)} fields, the header has "
                                     f"{len(header)}", hint="check quoting/delimiters on that line")
            yield dict(zip(header, row))
    except csv.Error as exc:
        raise InputDataError(f"{path}: line {reader.line_num}: {exc}", hint="check quoting on that line") from None


def _check_header(path: Path, fmt: str, header: Sequence[str]) -> None:
    """Too many columns, or a repeated name (whose values would silently overwrite each other)."""
    if len(header) > MAX_COLUMNS:
        raise InputDataError(f"{path}: the header has {len(header):,} columns (more than {MAX_COLUMNS:,}): "
                             "not a table, or the wrong delimiter",
                             hint=f"a {path.suffix} file is split at {'commas' if fmt == 'csv' else 'tabs'}; "
                             "give it the suffix of its delimiter (.csv for commas, .tsv for tabs)")
    columns: dict[str, list[int]] = {}
    for position, name in enumerate(header, start=1):
        columns.setdefault(name, []).append(position)
    repeated = [(name, positions) for name, positions in columns.items() if len(positions) > 1]
    if repeated:
        listing = "; ".join(f"{name!r} at columns {', '.join(map(str, positions))}" for name, positions in repeated)
        raise InputDataError(f"{path}: the header repeats column names: {listing}",
                             hint="rename them so that each column has its own name (e.g. text, text_2); an "
                             "empty name comes from a stray delimiter")


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
                             hint="pip install 'openautoglm[data]' (pandas and pyarrow), or convert the file to CSV/JSONL") from None
    return frame.to_dict(orient="records")


def require_columns(records: Sequence[dict[str, Any]], needed: Iterable[str], source: str) -> None:
    """Fail early, naming the missing column and what exists, before any model call."""
    if not records:
        return
    have = set(records[0])
    needed = set(needed)
    missing = sorted(needed - have)
    if missing:
        raise InputDataError(
            f"{source}: missing column {', '.join(repr(m) for m in missing)}; it has: {', '.join(sorted(have))}",
            hint=_map_hint(missing[0], sorted(have - needed)),
        )


#: column names that hold gold labels or ids, not the text a template variable wants
_NOT_TEXT = frozenset({"label", "labels", "gold", "target", "class", "y", "id", "idx", "index"})


def _map_hint(missing: str, spare: Sequence[str]) -> str:
    """How to feed the missing variable from a column of the file (named when only one is left)."""
    texts = [c for c in spare if c.casefold() not in _NOT_TEXT]
    column = texts[0] if len(texts) == 1 else "your_column"
    return (f"rename the column in the file, or map it: `--map {missing}={column}` (run, eval, optimize, "
            f"distill) or `inputs: {{{missing}: {column}}}` at the top of the pipeline YAML")


def parse_input_map(values: str | Sequence[str] | None) -> dict[str, str]:
    """``["text=sentence", "title=headline"]`` (or one comma list) → ``{"text": "sentence", ...}``:
    template variable → record field, the CLI's ``--map``."""
    if not values:
        return {}
    items = [values] if isinstance(values, str) else list(values)
    mapping: dict[str, str] = {}
    for part in (p for item in items for p in item.split(",")):
        var, sep, column = (x.strip() for x in part.partition("="))
        if not sep or not var.isidentifier() or not column:
            raise ConfigError(f"bad --map entry {part!r}",
                              hint="write it like 'text=sentence': the template variable, then the column that fills it")
        mapping[var] = column
    return mapping


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


# -- gold labels against a task's labels (checked before any model call) ------------------------
_NEGATIVE_WORDS = frozenset({"negative", "neg", "bad", "no", "false", "负面", "消极", "差评", "否", "负"})
_POSITIVE_WORDS = frozenset({"positive", "pos", "good", "yes", "true", "正面", "积极", "好评", "是", "正"})
_FALSE_GOLD = ("0", "-1", "false", "no", "n", "f")
_TRUE_GOLD = ("1", "true", "yes", "y", "t")


def gold_values(records: Sequence[dict[str, Any]], column: str, mapping: dict[str, str]) -> list[str]:
    """The gold column as the task's labels are compared with it: mapped, then stripped strings."""
    mapped = map_labels(list(records), column, mapping)
    return ["" if r.get(column) is None else str(r[column]).strip() for r in mapped]


def suggest_label_map(values: Iterable[str], labels: Sequence[str]) -> str | None:
    """A ``--label-map`` turning every gold value into a task label, when one is clear: labels that
    differ in case or are abbreviated (``Pos`` → ``positive``), or binary gold values (``0/1``,
    ``true/false``) beside one positive and one negative label; else ``None``."""
    values = sorted({v for v in values if v} - set(labels))
    found: dict[str, str] = {}
    for value in values:
        key = value.casefold()
        same = [lab for lab in labels if lab.casefold() == key]
        prefix = [lab for lab in labels if lab.casefold().startswith(key) or key.startswith(lab.casefold())]
        match = same or (prefix if len(key) >= 2 else [])
        if len(match) == 1:
            found[value] = match[0]
    rest = [v for v in values if v not in found]
    positive = [lab for lab in labels if lab.casefold() in _POSITIVE_WORDS]
    negative = [lab for lab in labels if lab.casefold() in _NEGATIVE_WORDS]
    if rest and len(positive) == 1 and len(negative) == 1:
        for value in rest:
            key = value.casefold()
            if key in _TRUE_GOLD:
                found[value] = positive[0]
            elif key in _FALSE_GOLD:
                found[value] = negative[0]
    if not values or set(found) != set(values) or len(set(found.values())) < len(found):
        return None
    return ",".join(f"{value}={label}" for value, label in sorted(found.items()))


def label_map_hint(values: Iterable[str], labels: Sequence[str]) -> str:
    """What to pass as ``--label-map`` (a clear suggestion, else its shape with the task's labels)."""
    values = sorted(set(values) - set(labels) - {""})
    suggestion = suggest_label_map(values, labels)
    if suggestion is not None:
        return f"map the file's labels to the task's: --label-map '{suggestion}'"
    shown = ",".join(f"{v}=LABEL" for v in values[:4]) + (",..." if len(values) > 4 else "")
    return (f"map the file's labels to the task's ({', '.join(labels)}): --label-map '{shown}'; "
            "or pick the right column (--gold-column / --label-column)")


@dataclass
class GoldCheck:
    """Which label step the gold column scores, how many rows match its labels, and warnings."""

    step: str
    matched: int
    total: int
    warnings: list[str] = field(default_factory=list)


def check_gold(records: Sequence[dict[str, Any]], column: str, steps: dict[str, Sequence[str]], *,
               mapping: dict[str, str], source: str, step: str | None = None,
               prefer: str | None = None) -> GoldCheck:
    """Check the gold column against the labels of a label step, before any model call.

    ``steps``: label steps (name → labels).  ``step`` names the one to score (``--gold-step``);
    otherwise the step whose labels match the most rows wins (``prefer``, the pipeline's output
    step, on a tie).  No row matching raises :class:`InputDataError` with a suggested
    ``--label-map``; some rows not matching is a warning (they will count as wrong).
    """
    if not steps:
        raise InputDataError(f"{source}: no step of the pipeline predicts labels, so column {column!r} "
                             "cannot be scored", hint="gold labels score a task with `labels:`")
    if step is not None and step not in steps:
        raise InputDataError(f"--gold-step {step!r} is not a label step of the pipeline",
                             hint=f"label steps: {', '.join(steps)}")
    gold = gold_values(records, column, mapping)
    counts = {name: sum(g in set(labels) for g in gold) for name, labels in steps.items()}
    order = list(steps)
    chosen = step or max(order, key=lambda n: (counts[n], n == prefer, order.index(n)))
    labels = list(steps[chosen])
    unknown = Counter(g for g in gold if g not in set(labels))
    if counts[chosen] == 0:
        sample = ", ".join(repr(v) for v, _ in unknown.most_common(5))
        where = f" (step {chosen!r})" if len(steps) > 1 else ""
        raise InputDataError(
            f"{source}: no gold label in column {column!r} is one of the task's labels{where} "
            f"{labels}; the column holds {sample}", hint=label_map_hint(unknown, labels))
    check = GoldCheck(chosen, counts[chosen], len(gold))
    if unknown:
        sample = ", ".join(repr(v) for v, _ in unknown.most_common(3))
        check.warnings.append(f"{sum(unknown.values())} of {len(gold)} rows have a gold label that is not one of "
                              f"the task's labels ({sample}): they count as wrong; "
                              + label_map_hint(unknown, labels))
    return check
