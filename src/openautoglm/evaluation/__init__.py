"""Evaluate a pipeline against gold labels: accuracy, macro-F1, per-class scores, confusion
matrix, calibration (ECE, Brier, reliability) and cost, as JSON and a self-contained HTML report.

>>> result = openautoglm.evaluate("pipeline.yaml", "dev.csv", label_column="label", out="out/eval")
>>> result.metrics["accuracy"], result.metrics["calibration"]["ece"]

The records go through :func:`openautoglm.core.batch.run_batch` under a run id derived from
the pipeline, its backends, the data and the limit, so every call and per-record result is
in the store, and re-running the same evaluation resumes instead of paying twice.
Needs the ``eval`` extra (scikit-learn, matplotlib): ``pip install 'openautoglm[eval]'``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import ConfigError, InputDataError
from .calibration import N_BINS, calibration_report
from .metrics import classification_metrics, require_extra

if TYPE_CHECKING:  # the pipeline machinery is imported on use: `openautoglm --help` stays fast
    from ..core.batch import BatchResult
    from ..core.pipeline import Pipeline

__all__ = ["EvalResult", "evaluate"]


@dataclass
class EvalResult:
    """Metrics and per-example predictions of one evaluation."""

    name: str
    model: str
    data: str
    label_column: str
    run_id: str
    metrics: dict[str, Any]
    predictions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """What ``metrics.json`` holds: the evaluation's identity and its metrics."""
        return {"pipeline": self.name, "model": self.model, "data": self.data,
                "label_column": self.label_column, "run_id": self.run_id, "metrics": self.metrics}

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2, default=str) + "\n",
                        encoding="utf-8")
        return path

    def to_predictions_jsonl(self, path: str | Path) -> Path:
        from ..core.records import write_jsonl

        path = Path(path)
        write_jsonl(path, self.predictions)
        return path

    def to_html(self, path: str | Path) -> Path:
        from .report import render_html

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(self), encoding="utf-8")
        return path

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``metrics.json``, ``predictions.jsonl`` and ``report.html`` into ``out_dir``."""
        out = Path(out_dir)
        return {
            "metrics": self.to_json(out / "metrics.json"),
            "predictions": self.to_predictions_jsonl(out / "predictions.jsonl"),
            "report": self.to_html(out / "report.html"),
        }


def evaluate(
    pipeline: Pipeline | str | Path,
    data: str | Path | Sequence[Mapping[str, Any]],
    label_column: str = "label",
    *,
    limit: int | None = None,
    model: str | None = None,
    store: Any = None,
    out: str | Path | None = None,
    run_id: str | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    encoding: str = "utf-8-sig",
    label_map: Mapping[str, str] | None = None,
) -> EvalResult:
    """Run ``pipeline`` (a :class:`Pipeline` or a YAML path) over ``data`` and score it.

    ``data`` is a .csv/.tsv/.jsonl/.json file or a list of dicts; ``label_column`` holds the
    gold labels (compared as stripped strings with the final output's ``label``).  ``model``
    and ``store`` apply when ``pipeline`` is a path (give them to ``Pipeline(...)`` otherwise).
    Records that fail count as wrong (``predicted: None``, with their error).  With ``out``,
    the three files are written there (see :meth:`EvalResult.save`).  ``label_map``
    renames gold labels first (e.g. ``{"1": "positive", "0": "negative"}``).
    """
    from ..core.batch import run_batch
    from ..core.records import map_labels, require_columns

    for needed in ["sklearn.metrics"] + (["matplotlib"] if out is not None else []):
        require_extra(needed)  # fail before any model call, not after the run
    pipe, owned = _open_pipeline(pipeline, model, store)
    try:
        records, source, data_key = _load(data, encoding, limit)
        require_columns(records, pipe.required_inputs | {label_column}, source)
        records = map_labels(list(records), label_column, dict(label_map or {}))
        gold = _gold(records, label_column, source)
        rid = run_id or _run_id(pipe, data_key, limit)
        batch = run_batch(pipe, records, run_id=rid, batch_size=batch_size, progress=progress, input_name=source)
        calls = _calls(pipe, rid)
        labels = _task_labels(pipe)
        predictions = _predictions(pipe, records, gold, batch, label_column, calls)
        metrics = _metrics(predictions, labels)
        metrics["methods"] = methods_report(predictions)
        metrics["cost"] = _cost(batch, calls, len(records))
        if calls is None:
            metrics["warnings"].append("calls are not traced in a store: model calls and tokens are unknown")
        result = EvalResult(name=pipe.config.name, model=_model_name(pipe), data=source, label_column=label_column,
                            run_id=rid, metrics=metrics, predictions=predictions)
    finally:
        if owned:
            pipe.close()
    if out is not None:
        result.save(out)
    return result


# -- inputs ----------------------------------------------------------------------------
def _open_pipeline(pipeline: Any, model: str | None, store: Any) -> tuple[Pipeline, bool]:
    """The pipeline to run, and whether it is ours to close."""
    from ..core.pipeline import Pipeline

    if isinstance(pipeline, Pipeline):
        if model is not None or store is not None:
            raise ConfigError(
                "model= and store= only apply when evaluate() is given a YAML path",
                source="evaluate(...)",
                hint="pass them to Pipeline(model=..., store=...) instead",
            )
        return pipeline, False
    if isinstance(pipeline, (str, Path)):
        return Pipeline.from_yaml(pipeline, model=model, store=True if store is None else store), True
    raise TypeError(f"evaluate() needs a Pipeline or a YAML path, got {type(pipeline).__name__}")


def _load(data: Any, encoding: str, limit: int | None) -> tuple[list[dict[str, Any]], str, str]:
    """Records, a name for messages, and a key that changes when the data does."""
    from ..core.records import read_records

    if isinstance(data, (str, Path)):
        path = Path(data)
        records = read_records(path, encoding=encoding, limit=limit)
        st = path.stat()
        source, key = str(path), f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    else:
        records = [dict(r) for r in data][:limit]
        source = "<records>"
        key = hashlib.sha256(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest()
    if not records:
        raise InputDataError(f"{source}: no records to evaluate")
    return records, source, key


def _gold(records: Sequence[Mapping[str, Any]], column: str, source: str) -> list[str]:
    gold = []
    for i, rec in enumerate(records):
        value = rec.get(column)
        text = "" if value is None else str(value).strip()
        if not text:
            raise InputDataError(
                f"{source}: record {i} has no gold label in column {column!r}",
                hint="drop unlabelled rows, or pick the right column with --label-column",
            )
        gold.append(text)
    return gold


def _run_id(pipe: Pipeline, data_key: str, limit: int | None) -> str:
    """``eval-`` + a hash of the pipeline, the backends it uses, the data and the limit."""
    backends = [pipe.backend_for(s).identity() for s in pipe.config.steps if s.task is not None]
    blob = f"{pipe.config.fingerprint()}|{backends}|{data_key}|{limit}"
    return "eval-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def _model_name(pipe: Pipeline) -> str:
    """``backend:model`` of the task steps (or the configured model) for reports."""
    backends = [pipe.backend_for(s) for s in pipe.config.steps if s.task is not None]
    names = [f"{b.name}:{b.model}" if b.model != b.name else b.name for b in backends]
    if names:
        return ", ".join(dict.fromkeys(names))
    model = pipe.config.model
    return model if isinstance(model, str) else json.dumps(model, sort_keys=True, default=str)


def _task_labels(pipe: Pipeline) -> list[str]:
    """The final step's labels when it is a label task, else [] (labels come from the data)."""
    final = pipe.config.output or pipe.config.steps[-1].name
    step = next((s for s in pipe.config.steps if s.name == final), None)
    if step is not None and step.task is not None and step.task.kind.distribution:
        return list(step.task.labels or [])
    return []


# -- results ---------------------------------------------------------------------------
def _calls(pipe: Pipeline, run_id: str) -> list[dict[str, Any]] | None:
    """The run's call rows from the store (``None`` when calls are not stored)."""
    if pipe.store is None or not pipe.trace:
        return None
    return pipe.store.recent_calls(limit=2**62, run_id=run_id)


def _predicted(output: Mapping[str, Any]) -> str:
    for key in ("label", "text", "value", "output"):
        if key in output:
            value = output[key]
            break
    else:
        value = {k: v for k, v in output.items() if k != "steps"}
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return value.strip()


def _probability(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0
    return float(value) if ok else None


def _predictions(
    pipe: Pipeline, records: list[dict[str, Any]], gold: list[str], batch: BatchResult, label_column: str,
    calls: list[dict[str, Any]] | None,
) -> list[dict[str, Any]]:
    errors = dict(batch.errors)
    fields = sorted(pipe.required_inputs) or [k for k in records[0] if k != label_column]
    per_record: dict[str, int] = {}
    for row in calls or []:
        if not row["cached"] and row["record_key"] is not None:
            per_record[row["record_key"]] = per_record.get(row["record_key"], 0) + 1
    out = []
    for i, (rec, g, res) in enumerate(zip(records, gold, batch.results)):
        failed = i in errors or "error" in res and len(res) == 1
        predicted = None if failed else _predicted(res)
        scores = None if failed else res.get("scores")
        if not (isinstance(scores, dict) and all(_probability(v) is not None for v in scores.values())):
            scores = None
        out.append({
            "idx": i,
            "text": " | ".join(str(rec.get(f, "")) for f in fields),
            "gold": g,
            "predicted": predicted,
            "confidence": None if failed else _probability(res.get("confidence")),
            "correct": predicted == g,
            "scores": scores,
            "error": errors.get(i, res.get("error")) if failed else None,
            "calls": per_record.get(str(i), 0) if calls is not None else None,
            "input": rec,
            "output": None if failed else res,
        })
    return out


def _metrics(predictions: list[dict[str, Any]], task_labels: list[str]) -> dict[str, Any]:
    gold = [p["gold"] for p in predictions]
    predicted = [p["predicted"] for p in predictions]
    labels = task_labels or sorted(set(gold) | {p for p in predicted if p is not None})
    warnings = []
    unknown = sorted(set(gold) - set(task_labels)) if task_labels else []
    if unknown:
        warnings.append(f"gold labels not among the task's labels {task_labels}: {unknown}")
    scored = [p for p in predictions if p["confidence"] is not None]
    with_scores = [p for p in scored if p["scores"] is not None]
    calibration = calibration_report(
        [p["confidence"] for p in scored], [p["correct"] for p in scored],
        [p["scores"] for p in with_scores], [p["gold"] for p in with_scores], N_BINS,
    )
    if calibration is not None and len(with_scores) < len(scored):
        calibration["brier_n"] = len(with_scores)
    if scored and len(scored) < len(predictions):
        warnings.append(f"calibration uses the {len(scored)} of {len(predictions)} examples that have a confidence")
    errors = [{"idx": p["idx"], "error": p["error"]} for p in predictions if p["error"] is not None]
    return {
        "n": len(predictions),
        "n_errors": len(errors),
        **classification_metrics(gold, predicted, labels),
        "calibration": calibration,
        "errors": errors,
        "warnings": warnings,
    }


#: the ``methods`` entry of records that failed, and of answers that name no method
FAILED_METHOD, NO_METHOD = "(failed)", "(none)"


def methods_report(predictions: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Records per confidence method (``Result.method``: how each distribution was measured,
    e.g. ``logprob``, ``logprob-first-token-estimate``, ``guided-choice-first-token-estimate``,
    ``vote-share(n=5)+guided-choice``), with their accuracy, how many fell back from a
    first-token estimate that measured nothing, and the unparsed votes; ``{}`` when no answer
    names a method."""
    if not any(isinstance(p.get("output"), Mapping) and p["output"].get("method") for p in predictions):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for p in predictions:
        output = p.get("output") if isinstance(p.get("output"), Mapping) else {}
        name = FAILED_METHOD if p.get("error") is not None else str(output.get("method") or NO_METHOD)
        row = out.setdefault(name, {"records": 0, "correct": 0, "fallbacks": 0, "unparsed_votes": 0})
        row["records"] += 1
        row["correct"] += int(bool(p.get("correct")))
        row["fallbacks"] += int(bool(output.get("fallback")))
        votes = output.get("unparsed_votes")
        row["unparsed_votes"] += votes if isinstance(votes, int) and not isinstance(votes, bool) else 0
    for row in out.values():
        row["accuracy"] = row["correct"] / row["records"]
    return dict(sorted(out.items(), key=lambda kv: (-kv[1]["records"], kv[0])))


def _cost(batch: BatchResult, calls: list[dict[str, Any]] | None, n: int) -> dict[str, Any]:
    """Calls and tokens of the whole run (all attempts, cache hits excluded); time of this one."""
    run_now = batch.done + batch.failed
    cost: dict[str, Any] = {
        "model_calls": None, "cached_calls": None, "failed_calls": None,
        "prompt_tokens": None, "completion_tokens": None,
    }
    if calls is not None:
        fresh = [c for c in calls if not c["cached"]]
        cost.update(
            model_calls=len(fresh),
            cached_calls=len(calls) - len(fresh),
            failed_calls=sum(1 for c in fresh if c["error"]),
            prompt_tokens=sum(c["prompt_tokens"] or 0 for c in fresh),
            completion_tokens=sum(c["completion_tokens"] or 0 for c in fresh),
        )
        cost["calls_per_example"] = len(fresh) / n
    cost.update(
        wall_seconds=batch.seconds,
        examples_run=run_now,
        examples_resumed=batch.skipped,
        examples_per_s=run_now / batch.seconds if run_now and batch.seconds > 0 else None,
    )
    return cost
