"""Reading tables for AutoML: CSV/TSV/JSON lines/Parquet with clear errors.

Common quirks are handled generically, never per dataset: the delimiter is
sniffed, blanks after delimiters are skipped, ``?``/``NA``/empty cells are
missing, surrounding whitespace in text cells is stripped, blank lines dropped.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ..errors import InputDataError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: cell values read as missing (on top of pandas' defaults)
MISSING_MARKERS = ("?", "", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None")


def read_table(path: str | Path, *, encoding: str = "utf-8-sig", delimiter: str | None = None) -> "pd.DataFrame":
    """Read ``path`` into a DataFrame; raise :class:`InputDataError` naming the file and the fix."""
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise InputDataError(f"{p}: no such file", hint="check the path passed with --data / to read_table()")
    if p.is_dir():
        raise InputDataError(f"{p}: is a folder, not a table", hint="pass a .csv, .tsv, .jsonl or .parquet file")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        elif suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(p, lines=True, encoding=encoding)
        elif suffix == ".json":
            df = pd.read_json(p, encoding=encoding)
        else:
            sep = delimiter or _sniff_delimiter(p, encoding, default="\t" if suffix == ".tsv" else ",")
            df = pd.read_csv(p, sep=sep, encoding=encoding, skipinitialspace=True,
                             na_values=list(MISSING_MARKERS), keep_default_na=True,
                             skip_blank_lines=True, low_memory=False)
    except UnicodeDecodeError as exc:
        raise InputDataError(
            f"{p}: not valid {encoding} text (byte {exc.start}: {exc.reason})",
            hint="re-save the file as UTF-8 or pass the right encoding (--encoding latin-1, encoding='gbk', ...)",
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise InputDataError(f"{p}: the file is empty", hint="pass a table with a header row and data rows") from exc
    except pd.errors.ParserError as exc:
        raise InputDataError(f"{p}: cannot be parsed as a table: {exc}",
                             hint="check that every row has the same number of fields as the header") from exc
    except ValueError as exc:
        raise InputDataError(f"{p}: cannot be read: {exc}", hint="pass a .csv, .tsv, .jsonl or .parquet file") from exc
    return clean_frame(df, source=str(p))


def clean_frame(df: "pd.DataFrame", *, source: str = "<DataFrame>") -> "pd.DataFrame":
    """Strip text cells, map missing markers to NA, drop empty rows; check the header."""
    import pandas as pd

    if df.shape[1] == 0 or df.shape[0] == 0:
        raise InputDataError(f"{source}: no data rows", hint="pass a table with a header row and data rows")
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    dupes = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dupes:
        raise InputDataError(f"{source}: duplicate column names {dupes}", hint="rename the columns so each is unique")
    markers = set(MISSING_MARKERS)
    for col in df.columns:
        s = df[col]
        if s.dtype == object or pd.api.types.is_string_dtype(s):
            stripped = s.map(lambda v: v.strip() if isinstance(v, str) else v)
            df[col] = stripped.map(lambda v: None if isinstance(v, str) and v in markers else v).astype(object)
    df = df.dropna(how="all").reset_index(drop=True)
    return df


def require_columns(df: "pd.DataFrame", columns: Iterable[str], source: str) -> None:
    """Raise :class:`InputDataError` if ``df`` lacks any of ``columns``."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputDataError(
            f"{source}: missing column(s) {missing}; it has {list(df.columns)[:30]}",
            hint="predict on data with the same columns the model was trained on",
        )


def align_labels(values: Sequence[Any], classes: Sequence[Any]) -> list[Any]:
    """Map labels that differ from the training classes only by case, spaces or
    trailing punctuation (``">50K."`` vs ``">50K"``) onto those classes."""

    def key(v: Any) -> str:
        return str(v).strip().rstrip(".;,").strip().lower()

    known = {c: c for c in classes}
    by_key: dict[str, Any] = {}
    for c in classes:
        by_key.setdefault(key(c), c)
    return [v if v in known else by_key.get(key(v), v) for v in values]


def _sniff_delimiter(path: Path, encoding: str, default: str) -> str:
    with open(path, encoding=encoding, newline="") as fh:
        head = fh.read(65536)
    if not head.strip():
        return default
    try:
        return csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except csv.Error:
        return default
