"""What a batch run returns and stores: :class:`BatchResult`, content hashes, output rows."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ...errors import OpenAutoGLMError
from ..result import Result


class TooManyErrors(OpenAutoGLMError):
    """More records failed than the run allows (``max_errors``)."""


@dataclass
class BatchResult:
    run_id: str
    results: list[Result]  # in input order (empty when the run did not collect them)
    done: int = 0
    failed: int = 0
    skipped: int = 0  # already done (or failed) in an earlier attempt of the same run
    changed: int = 0  # stored results discarded because the record or the pipeline changed
    seconds: float = 0.0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (record index, message); capped if not collected
    errors_total: int = 0  # failed records, this attempt's and earlier ones kept
    total: int = 0  # records read
    reason_counts: Counter[str] = field(default_factory=Counter)

    @property
    def failure_reasons(self) -> list[tuple[str, int]]:
        """Why records failed, most common first: ``(reason, count)``."""
        if self.reason_counts:
            return self.reason_counts.most_common()
        return Counter(reason(msg) for _, msg in self.errors).most_common()


def reason(message: str) -> str:
    """The first line of an error message (at most 200 characters): what failures are grouped by."""
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return first[:200]


def record_hash(config_fingerprint: str, record: Any) -> str:
    """What a stored result answers: the pipeline config and the record's content."""
    blob = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(f"{config_fingerprint}\n{blob}".encode("utf-8", "surrogatepass")).hexdigest()[:24]


def output_row(idx: int, record: Any, output: Any, error: str | None) -> dict[str, Any]:
    """One line of the output file."""
    row: dict[str, Any] = {"idx": idx, "input": record}
    if error is not None:
        row["error"] = error
    else:
        row["output"] = output
    return row
