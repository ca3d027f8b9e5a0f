"""Run comparison: two or more background runs over the same records, side by side.

* :func:`compare` - per run: accuracy, macro-F1, error rate, mean confidence, latency
  (P50/P95 per record), throughput and cost (model calls, prompt and completion tokens); per
  later run, the deltas against the first (the baseline) with a paired bootstrap confidence
  interval for accuracy and macro-F1 (records resampled with replacement, numpy, seeded).
* :func:`records` - the records, filtered (where the runs disagree, improved, regressed,
  errors, a gold label, a text search), each with every run's prediction, confidence, error
  and the exact prompts and responses of its model calls (promptfoo's matrix view).

Runs compare only when they read the same records (same count, same content); gold labels
come from the first run that has a label column.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import InputDataError
from . import reports

if TYPE_CHECKING:
    from .app import ServerState

#: the most bootstrap draws x records (memory and time of one comparison stay bounded)
BOOT_CELLS = 20_000_000
FILTERS = ("disagree", "all", "improved", "regressed", "errors")


def _runs(state: "ServerState", run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Each run's job, predictions and timing; refuses runs over different records."""
    from .pipelines import final_labels

    ids = list(dict.fromkeys(run_ids))
    if len(ids) < 2:
        raise InputDataError("pick at least two different runs to compare", hint="GET /api/runs lists them")
    out, reference = [], None
    for run_id in ids:
        job = state.jobs.job_row(run_id)
        inputs = state.jobs.inputs(run_id)
        if reference is None:
            reference = (run_id, inputs)
        elif len(inputs) != len(reference[1]) or _digest(inputs) != _digest(reference[1]):
            raise InputDataError(f"runs {reference[0]} and {run_id} read different records "
                                 f"({len(reference[1])} vs {len(inputs)})",
                                 hint="compare runs over the same uploaded file")
        config = state.registry.config(job["pipeline"], job["name"] or "pipeline.yaml")
        rows = {r["idx"]: r for r in state.store.run_records(run_id)}
        out.append({"job": job, "run": state.jobs.get(run_id), "inputs": inputs, "rows": rows,
                    "labels": final_labels(config)})
    gold_run = next((r for r in out if r["job"]["label_column"]), None)
    column = gold_run["job"]["label_column"] if gold_run else None
    for r in out:
        r["gold"] = [None if not column or r["inputs"][i].get(column) in (None, "") else
                     str(r["inputs"][i][column]).strip() for i in range(len(r["inputs"]))]
        r["pred"] = [reports.predicted_label(r["rows"][i]["output"]) if i in r["rows"] and r["rows"][i]["status"] == "done"
                     else None for i in range(len(r["inputs"]))]
    return out


def _digest(records: list[dict[str, Any]]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest()


def _encode(values: Sequence[str | None], labels: list[str]) -> "Any":
    import numpy as np

    index = {lab: i for i, lab in enumerate(labels)}
    return np.array([index.get(v, -1) if v is not None else -1 for v in values], dtype=np.int64)


def _scores(gold: "Any", pred: "Any", k: int) -> tuple["Any", "Any"]:
    """Accuracy and macro-F1 of each row of ``gold``/``pred`` (2-D: draws x records)."""
    import numpy as np

    acc = (gold == pred).mean(axis=-1)
    f1s = []
    for c in range(k):
        g, p = gold == c, pred == c
        tp = (g & p).sum(axis=-1)
        denom = g.sum(axis=-1) + p.sum(axis=-1)
        f1s.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0))
    return acc, np.mean(f1s, axis=0) if f1s else acc * 0


def _bootstrap(gold: "Any", base: "Any", other: "Any", k: int, seed: int, draws: int) -> dict[str, Any]:
    """Deltas (other - base) of accuracy and macro-F1 with 95 % percentile intervals."""
    import numpy as np

    n = len(gold)
    acc_b, f1_b = _scores(gold[None], base[None], k)
    acc_o, f1_o = _scores(gold[None], other[None], k)
    draws = max(200, min(draws, BOOT_CELLS // max(1, n)))
    idx = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    a_b, f_b = _scores(gold[idx], base[idx], k)
    a_o, f_o = _scores(gold[idx], other[idx], k)

    def ci(d: Any) -> list[float]:
        return [round(float(np.percentile(d, 2.5)), 4), round(float(np.percentile(d, 97.5)), 4)]

    return {"n": n, "draws": draws, "seed": seed,
            "accuracy": {"delta": round(float(acc_o[0] - acc_b[0]), 4), "ci95": ci(a_o - a_b)},
            "macro_f1": {"delta": round(float(f1_o[0] - f1_b[0]), 4), "ci95": ci(f_o - f_b)}}


def _cost(state: "ServerState", run_id: str) -> dict[str, Any]:
    row = state.store.execute(
        "SELECT COUNT(*) AS calls, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,"
        " COALESCE(SUM(completion_tokens), 0) AS completion_tokens FROM calls WHERE run_id = ? AND cached = 0",
        (run_id,))[0]
    return dict(row)


def compare(state: "ServerState", run_ids: Sequence[str], *, seed: int = 0, draws: int = 1000) -> dict[str, Any]:
    """Metrics, cost and latency per run, and each later run's deltas against the first."""
    import numpy as np

    state.store.flush()
    runs = _runs(state, run_ids)
    gold_values = runs[0]["gold"]
    have_gold = [i for i, g in enumerate(gold_values) if g is not None]
    labels = runs[0]["labels"] or sorted({gold_values[i] for i in have_gold})
    labels = list(dict.fromkeys([*labels, *sorted({gold_values[i] for i in have_gold} - set(labels))]))
    gold = _encode([gold_values[i] for i in have_gold], labels)
    out_runs = []
    for r in runs:
        run_id = r["job"]["run_id"]
        done = [row for row in r["rows"].values()]
        confidences = [row["output"].get("confidence") for row in done if row["status"] == "done"
                       and isinstance(row["output"], dict) and isinstance(row["output"].get("confidence"), (int, float))]
        timing = reports.timing(state.jobs.chunks(run_id), r["job"]["started"])
        metrics: dict[str, Any] = {
            "records": len(done), "errors": sum(1 for row in done if row["status"] != "done"),
            "error_rate": (sum(1 for row in done if row["status"] != "done") / len(done)) if done else None,
            "mean_confidence": float(np.mean(confidences)) if confidences else None,
            "accuracy": None, "macro_f1": None,
        }
        if have_gold:
            pred = _encode([r["pred"][i] for i in have_gold], labels)
            acc, f1 = _scores(gold[None], pred[None], len(labels))
            metrics.update(accuracy=round(float(acc[0]), 4), macro_f1=round(float(f1[0]), 4), gold=len(have_gold))
        latency = {k: timing.get(k) for k in ("p50_ms", "p95_ms", "p99_ms", "records_per_s", "wall_s")}
        out_runs.append({"run_id": run_id, "name": r["run"]["name"], "status": r["run"]["status"],
                         "input": r["run"]["input"], "metrics": metrics, "latency": latency,
                         "cost": _cost(state, run_id)})
    deltas = []
    base = runs[0]
    for r, view in zip(runs[1:], out_runs[1:]):
        entry: dict[str, Any] = {"run_id": view["run_id"], "against": out_runs[0]["run_id"]}
        for key in ("error_rate", "mean_confidence"):
            a, b = out_runs[0]["metrics"][key], view["metrics"][key]
            entry[key] = None if a is None or b is None else round(b - a, 4)
        for key in ("p50_ms", "p95_ms"):
            a, b = out_runs[0]["latency"][key], view["latency"][key]
            entry[key] = None if a is None or b is None else round(b - a, 3)
        for key in ("calls", "prompt_tokens", "completion_tokens"):
            entry[key] = view["cost"][key] - out_runs[0]["cost"][key]
        if have_gold:
            entry["bootstrap"] = _bootstrap(gold, _encode([base["pred"][i] for i in have_gold], labels),
                                            _encode([r["pred"][i] for i in have_gold], labels),
                                            len(labels), seed, draws)
        entry["disagreements"] = sum(1 for a, b in zip(base["pred"], r["pred"]) if a != b)
        deltas.append(entry)
    return {"runs": out_runs, "deltas": deltas, "labels": labels, "gold": bool(have_gold),
            "label_column": next((r["job"]["label_column"] for r in runs if r["job"]["label_column"]), None)}


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        try:
            prompt = json.loads(prompt)
        except ValueError:
            return prompt
    if isinstance(prompt, list):
        return "\n".join(f"[{m.get('role', '?')}] {m.get('content', '')}" if isinstance(m, dict) else str(m)
                         for m in prompt)
    return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)


def _calls(state: "ServerState", run_ids: list[str], keys: list[str]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Each (run, record key)'s model calls: step, attempt, prompt text, response."""
    from ..redact import mask_secrets

    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    if not keys:
        return found
    marks = ",".join("?" * len(keys))
    for run_id in run_ids:
        rows = state.store.execute(
            f"SELECT record_key, step, attempt, kind, prompt, response, error FROM calls WHERE run_id = ?"
            f" AND record_key IN ({marks}) ORDER BY id", (run_id, *keys))
        for row in rows:
            found.setdefault((run_id, row["record_key"]), []).append({
                "step": row["step"], "attempt": row["attempt"], "kind": row["kind"],
                "prompt": _prompt_text(row["prompt"]), "response": _prompt_text(row["response"] or ""),
                "error": mask_secrets(row["error"])})
    return found


def records(state: "ServerState", run_ids: Sequence[str], *, filter: str = "disagree", gold: str | None = None,
            q: str | None = None, offset: int = 0, limit: int = 50) -> dict[str, Any]:
    """The records ``filter`` selects, each with every run's answer and its calls (newest prompt last)."""
    from ..redact import mask_secrets

    if filter not in FILTERS:
        raise InputDataError(f"unknown filter {filter!r}", hint=f"use one of: {', '.join(FILTERS)}")
    state.store.flush()
    runs = _runs(state, run_ids)
    ids = [r["job"]["run_id"] for r in runs]
    text_fields = list(dict.fromkeys(k for rec in runs[0]["inputs"][:50] for k in rec
                                     if k != runs[0]["job"]["label_column"]))
    chosen = []
    needle = (q or "").lower().strip()
    for i in range(len(runs[0]["inputs"])):
        preds = [r["pred"][i] for r in runs]
        errors = [i in r["rows"] and r["rows"][i]["status"] != "done" for r in runs]
        g = runs[0]["gold"][i]
        right = [g is not None and p == g for p in preds]
        keep = {"all": True, "disagree": len(set(preds)) > 1,
                "improved": g is not None and not right[0] and any(right[1:]),
                "regressed": g is not None and right[0] and not all(right[1:]),
                "errors": any(errors)}[filter]
        if not keep or (gold and g != gold):
            continue
        text = " | ".join(str(runs[0]["inputs"][i].get(f, "")) for f in text_fields)
        if needle and needle not in text.lower():
            continue
        chosen.append((i, text))
    page = chosen[offset:offset + limit]
    calls = _calls(state, ids, [str(i) for i, _ in page])
    out = []
    for i, text in page:
        answers = []
        for r in runs:
            row = r["rows"].get(i)
            output = row["output"] if row and row["status"] == "done" else None
            answers.append({"run_id": r["job"]["run_id"], "predicted": r["pred"][i],
                            "confidence": output.get("confidence") if isinstance(output, dict) else None,
                            "error": mask_secrets(row["error"]) if row else "not run yet",
                            "correct": None if runs[0]["gold"][i] is None else r["pred"][i] == runs[0]["gold"][i],
                            "calls": calls.get((r["job"]["run_id"], str(i)), [])})
        out.append({"idx": i, "text": text, "gold": runs[0]["gold"][i], "answers": answers})
    return {"total": len(chosen), "filter": filter, "runs": ids, "records": out}
