"""Label probabilities from an Open-AutoGLM pipeline (shared by label-issues, active learning, llm-label)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..core.pipeline import Pipeline


def load_pipeline(pipeline: "str | Path | Pipeline", model: str | None = None) -> "Pipeline":
    """A :class:`Pipeline` from a YAML path (or the object itself)."""
    from ..core.pipeline import Pipeline

    if isinstance(pipeline, Pipeline):
        return pipeline
    return Pipeline.from_yaml(pipeline, model=model)


def pipeline_labels(pipeline: "Pipeline") -> list[str]:
    """The labels of the pipeline's final classification step."""
    name = pipeline.config.output or pipeline.config.steps[-1].name
    step = next(s for s in pipeline.config.steps if s.name == name)
    if step.task is None or not step.task.labels:
        raise ConfigError(f"step {name!r} is not a classification task with labels",
                          source=pipeline.source or "Pipeline(...)", field=f"steps.{name}",
                          hint="the final step (or `output:`) must be a task with `labels:`")
    return list(step.task.labels)


def pipeline_probabilities(pipeline: "Pipeline", records: Sequence[Mapping[str, Any]], *,
                           progress: bool = False) -> tuple["np.ndarray", list[str], list[dict[str, Any]]]:
    """(n × k probabilities, labels, raw results); failed rows get a uniform row and ``error`` in results."""
    import numpy as np

    labels = pipeline_labels(pipeline)
    results = pipeline.run_batch([dict(r) for r in records], progress=progress)
    probs = np.full((len(records), len(labels)), 1.0 / len(labels))
    for i, result in enumerate(results):
        scores = result.get("scores") if isinstance(result, Mapping) else None
        if isinstance(scores, Mapping):
            row = np.array([float(scores.get(label, 0.0)) for label in labels])
            if row.sum() > 0:
                probs[i] = row / row.sum()
    return probs, labels, results
