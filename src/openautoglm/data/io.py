"""Tables of records for the data toolkit: reading (from :mod:`openautoglm.core.records`,
re-exported here) and writing CSV, TSV and JSONL as records come.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..core.records import FORMATS, REPLACEMENT, ReadStats, detect_format, iter_records  # noqa: F401 - re-exported
from ..core.records import read_records as read_table  # noqa: F401 - re-exported
from ..errors import InputDataError


def require_column(records: Sequence[dict[str, Any]], column: str, source: str) -> None:
    """Fail early, naming the missing column and the ones that exist."""
    if records and column not in records[0]:
        raise InputDataError(f"{source}: no column {column!r}; it has: {', '.join(map(str, records[0]))}",
                             hint="pass the right name with --text-column / --label-column")


class TableWriter:
    """Writes records to CSV/TSV/JSONL as they come (header from the first record)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.fmt = detect_format(self.path, role="output")
        if self.fmt in ("json", "parquet"):
            raise InputDataError(f"{self.path}: cannot stream-write {self.fmt}", hint="write .jsonl, .csv or .tsv")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("w", encoding="utf-8", newline="")
        self._writer: Any = None
        self.rows = 0

    def write(self, record: dict[str, Any]) -> None:
        if self.fmt == "jsonl":
            self._fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        else:
            if self._writer is None:
                self._writer = csv.DictWriter(self._fh, fieldnames=list(record), extrasaction="ignore",
                                              delimiter="," if self.fmt == "csv" else "\t",
                                              quoting=csv.QUOTE_MINIMAL if self.fmt == "csv" else csv.QUOTE_NONE,
                                              escapechar=None if self.fmt == "csv" else "\\")
                self._writer.writeheader()
            row = {k: ("" if v is None else str(v).replace("\t", " ").replace("\n", " ") if self.fmt == "tsv" else v)
                   for k, v in record.items()}
            self._writer.writerow(row)
        self.rows += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_table(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write records to a CSV/TSV/JSONL file; returns the path."""
    with TableWriter(path) as writer:
        for record in records:
            writer.write(record)
    return writer.path


def texts_of(records: Sequence[dict[str, Any]], column: str, source: str = "input") -> list[str]:
    """The text column as strings ('' for missing/None)."""
    require_column(records, column, source)
    return ["" if r.get(column) is None else str(r.get(column)) for r in records]

