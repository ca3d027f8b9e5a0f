"""``llm-label``: pre-annotate records with an Open-AutoGLM classification pipeline.

Rows whose label confidence (the pipeline's probability of its top label, a real
distribution, see the design guide) is at least ``min_confidence`` are kept with the label;
the others go to a review file with the top two labels and their probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import InputDataError


@dataclass
class LLMLabelResult:
    accepted: list[dict[str, Any]] = field(default_factory=list)
    review: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0

    def summary(self) -> dict[str, Any]:
        n = len(self.accepted) + len(self.review)
        return {"rows": n, "accepted": len(self.accepted), "review": len(self.review), "failed": self.failed,
                "accepted_share": round(len(self.accepted) / n, 4) if n else None}

    def save(self, output: str | Path, review: str | Path | None = None) -> dict[str, Path]:
        from .io import write_table

        out = Path(output)
        review_path = Path(review) if review else out.with_name(out.stem + ".review" + out.suffix)
        return {"labeled": write_table(out, self.accepted), "review": write_table(review_path, self.review)}


def llm_label(records: Sequence[Mapping[str, Any]], pipeline: Any, *, min_confidence: float = 0.8,
              label_column: str = "llm_label", model: str | None = None, progress: bool = False) -> LLMLabelResult:
    """Label ``records`` with ``pipeline`` (YAML path or object); split by ``min_confidence``."""
    from ._pipeline import load_pipeline, pipeline_labels

    if not 0.0 <= min_confidence <= 1.0:
        raise InputDataError(f"min_confidence {min_confidence} is outside [0, 1]")
    pipe = load_pipeline(pipeline, model=model)
    pipeline_labels(pipe)  # fails early unless the pipeline classifies
    from ..core.records import require_columns

    require_columns([dict(r) for r in records[:1]], pipe.required_inputs, "records")
    results = pipe.run_batch([dict(r) for r in records], progress=progress)
    out = LLMLabelResult()
    for record, res in zip(records, results):
        if not isinstance(res, Mapping) or "label" not in res:
            out.failed += 1
            out.review.append({**dict(record), label_column: "", "confidence": "", "error": str(res.get("error", ""))
                               if isinstance(res, Mapping) else "no result"})
            continue
        scores = sorted((res.get("scores") or {}).items(), key=lambda kv: -kv[1])
        row = {**dict(record), label_column: res["label"], "confidence": round(float(res["confidence"]), 4),
               "method": res.get("method", "")}
        if float(res["confidence"]) >= min_confidence:
            out.accepted.append(row)
        else:
            if len(scores) > 1:
                row.update(second_label=scores[1][0], second_confidence=round(float(scores[1][1]), 4))
            out.review.append(row)
    return out
