"""Column profiling and type inference: numeric, boolean, categorical, datetime, text, id, constant."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

KINDS = ("numeric", "boolean", "categorical", "datetime", "text", "id", "constant")
_ID_NAME = re.compile(r"(^|[_\s-])(id|uuid|guid|key|index|idx)$|^(id|uuid|guid)[_\s-]|id$", re.I)


@dataclass
class ColumnProfile:
    """What one column holds; ``kind`` drives preprocessing and planning."""

    name: str
    kind: str
    dtype: str
    n_unique: int
    missing: float
    samples: list[Any] = field(default_factory=list)
    numeric_text: bool = False  # numbers stored as text (coerced)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DataProfile:
    n_rows: int
    columns: list[ColumnProfile]

    def __getitem__(self, name: str) -> ColumnProfile:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        return {"n_rows": self.n_rows, "columns": [c.to_dict() for c in self.columns]}

    def describe(self, max_cols: int = 60) -> str:
        """A compact text profile for LLM prompts."""
        lines = [f"{self.n_rows} rows, {len(self.columns)} columns:"]
        for c in self.columns[:max_cols]:
            sample = ", ".join(str(s)[:20] for s in c.samples[:3])
            lines.append(f"- {c.name} ({c.kind}, {c.n_unique} distinct): {sample}")
        return "\n".join(lines)


def profile_frame(df: "pd.DataFrame", *, sample_rows: int = 20000, seed: int = 0) -> DataProfile:
    """Profile every column of ``df`` (type inference on at most ``sample_rows`` rows)."""
    sub = df.sample(n=sample_rows, random_state=seed) if len(df) > sample_rows else df
    return DataProfile(n_rows=len(df), columns=[profile_column(sub[c], n_total=len(sub)) for c in df.columns])


def coerce_numeric_text(s: "pd.Series") -> "pd.Series | None":
    """``s`` as floats if at least 95 % of its non-missing cells parse as numbers, else None."""
    import pandas as pd

    nn = s.dropna()
    if nn.empty:
        return None
    num = pd.to_numeric(nn.astype(str).str.replace(",", "", regex=False), errors="coerce")
    if num.notna().mean() < 0.95:
        return None
    return pd.to_numeric(s.astype(str).str.replace(",", "", regex=False), errors="coerce").where(s.notna())


def looks_datetime(s: "pd.Series") -> bool:
    import warnings

    import pandas as pd

    nn = s.dropna().astype(str)
    if nn.empty:
        return False
    sample = nn.iloc[:200]
    if not sample.str.contains(r"\d{1,4}[-/:.]\d{1,2}", regex=True).mean() > 0.9:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= 0.9)


def profile_column(s: "pd.Series", *, n_total: int | None = None) -> ColumnProfile:
    import pandas as pd

    name = str(s.name)
    n = n_total or len(s)
    nn = s.dropna()
    missing = float(1 - len(nn) / n) if n else 1.0
    n_unique = int(nn.nunique())
    samples = [_plain(v) for v in nn.drop_duplicates().iloc[:5].tolist()]
    prof = ColumnProfile(name=name, kind="categorical", dtype=str(s.dtype), n_unique=n_unique,
                         missing=round(missing, 4), samples=samples)
    unique_per_row = len(nn) > 20 and n_unique >= 0.98 * len(nn)
    if n_unique <= 1:
        prof.kind, prof.reason = "constant", "at most one distinct value"
        return prof
    if pd.api.types.is_bool_dtype(s):
        prof.kind, prof.reason = "boolean", "boolean dtype"
        return prof
    if pd.api.types.is_datetime64_any_dtype(s):
        prof.kind, prof.reason = "datetime", "datetime dtype"
        return prof
    if pd.api.types.is_numeric_dtype(s):
        is_int = pd.api.types.is_integer_dtype(s) or bool((nn == nn.round()).all())
        if is_int and unique_per_row and _ID_NAME.search(name):
            prof.kind, prof.reason = "id", "unique integer per row with an id-like name"
        elif n_unique == 2:
            prof.kind, prof.reason = "boolean", "two distinct numbers"
        else:
            prof.kind, prof.reason = "numeric", "numeric dtype"
        return prof
    coerced = coerce_numeric_text(s)
    if coerced is not None:
        prof.kind, prof.numeric_text, prof.reason = "numeric", True, "numbers stored as text"
        return prof
    if looks_datetime(nn):
        prof.kind, prof.reason = "datetime", "values parse as dates"
        return prof
    text = nn.astype(str)
    words = float(text.str.split().str.len().mean())
    if unique_per_row and (words < 3 or _ID_NAME.search(name)):
        prof.kind, prof.reason = "id", "a distinct short code in every row"
    elif words >= 4 and n_unique > 0.3 * len(nn):
        prof.kind, prof.reason = "text", f"free text ({words:.1f} words on average)"
    elif n_unique == 2:
        prof.kind, prof.reason = "boolean", "two distinct values"
    else:
        prof.kind, prof.reason = "categorical", f"{n_unique} distinct values"
    return prof


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        try:
            return v.item()
        except (ValueError, AttributeError):
            return str(v)
    return v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
