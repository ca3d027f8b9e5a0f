"""``active-learn``: pick the most informative unlabeled rows and grow the labeled set.

* :func:`query` ranks a pool by ``uncertainty`` (1 − max p), ``margin`` (p1 − p2, smallest
  first), ``entropy`` or ``random``; probabilities come from a model or a pipeline.
* :func:`active_learning` runs the loop: fit sentence embeddings + logistic regression on the
  labeled rows, score the pool, query ``batch`` rows, get their labels from an oracle, repeat;
  with a test set it reports the learning curve (accuracy per labeled-set size).

Oracles: a labels file (human answers; rows matched by ``id_column`` or by text), an
Open-AutoGLM pipeline (LLM labels), or any callable ``records -> labels``.  Without an
oracle, one round writes the queried rows to a file for annotation and stops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..errors import InputDataError, OpenAutoGLMError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

STRATEGIES = ("uncertainty", "margin", "entropy", "random")
Oracle = Callable[[Sequence[Mapping[str, Any]]], Sequence[Any]]


def informativeness(probs: "np.ndarray", strategy: str = "margin") -> "np.ndarray":
    """Higher = more informative."""
    import numpy as np

    p = np.asarray(probs, dtype=float)
    if strategy == "uncertainty":
        return 1.0 - p.max(axis=1)
    if strategy == "margin":
        top = np.sort(p, axis=1)
        return -(top[:, -1] - top[:, -2]) if p.shape[1] > 1 else -top[:, -1]
    if strategy == "entropy":
        return -(p * np.log(np.clip(p, 1e-12, 1))).sum(axis=1)
    raise OpenAutoGLMError(f"unknown strategy {strategy!r}", hint=f"use one of: {', '.join(STRATEGIES)}")


def query(probs: "np.ndarray", k: int, strategy: str = "margin", seed: int = 0) -> list[int]:
    """Indices of the ``k`` most informative rows (``random``: a seeded sample)."""
    import numpy as np

    n = len(probs)
    if strategy == "random":
        return [int(i) for i in np.random.default_rng(seed).permutation(n)[:k]]
    scores = informativeness(probs, strategy)
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def file_oracle(path: str | Path, *, label_column: str = "label", id_column: str | None = None,
                text_column: str = "text") -> Oracle:
    """Labels from a file of human answers, matched by ``id_column`` (or by text)."""
    from .io import read_table

    rows = read_table(path)
    key = id_column or text_column
    if rows and (key not in rows[0] or label_column not in rows[0]):
        raise InputDataError(f"{path}: needs columns {key!r} and {label_column!r}; it has {', '.join(rows[0])}")
    answers = {str(r[key]): r[label_column] for r in rows if r.get(label_column) not in ("", None)}

    def oracle(records: Sequence[Mapping[str, Any]]) -> list[Any]:
        return [answers.get(str(r.get(key))) for r in records]

    return oracle


def pipeline_oracle(pipeline: Any, *, progress: bool = False) -> Oracle:
    """Labels from an Open-AutoGLM classification pipeline (its top label)."""
    from ._pipeline import load_pipeline

    pipe = load_pipeline(pipeline)

    def oracle(records: Sequence[Mapping[str, Any]]) -> list[Any]:
        return [r.get("label") for r in pipe.run_batch([dict(x) for x in records], progress=progress)]

    return oracle


@dataclass
class ActiveResult:
    labeled: list[dict[str, Any]]
    curve: list[dict[str, Any]] = field(default_factory=list)
    queried: list[dict[str, Any]] = field(default_factory=list)


def _fit_predict(features: "np.ndarray", y: Sequence[str], targets: "np.ndarray") -> tuple["np.ndarray", list[str], Any]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    classes = sorted(set(y))
    if len(classes) < 2:
        return np.full((len(targets), 1), 1.0), classes, None
    model = LogisticRegression(C=4.0, max_iter=2000).fit(features, y)
    return model.predict_proba(targets), list(model.classes_), model


def active_learning(pool: Sequence[Mapping[str, Any]], labeled: Sequence[Mapping[str, Any]] = (), *,
                    oracle: Oracle | None = None, text_column: str = "text", label_column: str = "label",
                    strategy: str = "margin", batch: int = 20, rounds: int = 5,
                    test: Sequence[Mapping[str, Any]] | None = None, embedder: str = "auto",
                    seed_size: int = 10, seed: int = 0) -> ActiveResult:
    """Run ``rounds`` of query → oracle → refit; returns the labeled set and the learning curve."""
    import numpy as np

    if strategy not in STRATEGIES:
        raise OpenAutoGLMError(f"unknown strategy {strategy!r}", hint=f"use one of: {', '.join(STRATEGIES)}")
    pool = [dict(r) for r in pool]
    if not pool:
        raise InputDataError("the unlabeled pool is empty")
    if text_column not in pool[0]:
        raise InputDataError(f"pool has no column {text_column!r}; it has: {', '.join(pool[0])}")
    from ..embeddings import get_embedder

    test = list(test or [])
    labeled_rows = [dict(r) for r in labeled]
    all_texts = [str(r.get(text_column) or "") for r in pool + labeled_rows + test]
    model = get_embedder(embedder, corpus=all_texts)
    vec = model.encode(all_texts)
    pool_x, lab_x, test_x = vec[:len(pool)], vec[len(pool):len(pool) + len(labeled_rows)], vec[len(pool) + len(labeled_rows):]
    labeled_idx: list[int] = []
    labels: list[str] = [str(r[label_column]) for r in labeled_rows]
    features = [lab_x[i] for i in range(len(labeled_rows))]
    remaining = list(range(len(pool)))
    result = ActiveResult(labeled=labeled_rows)

    def record_curve() -> None:
        if test and len(set(labels)) >= 2:
            probs, classes, _ = _fit_predict(np.array(features), labels, test_x)
            pred = [classes[i] for i in probs.argmax(axis=1)]
            acc = float(np.mean([p == str(r[label_column]) for p, r in zip(pred, test)]))
            result.curve.append({"labeled": len(labels), "accuracy": round(acc, 4)})

    for rnd in range(rounds + (1 if not labels else 0)):
        if not remaining:
            break
        if len(set(labels)) < 2:  # cold start: a random seed set
            picks = query(np.zeros((len(remaining), 1)), seed_size if not labels else batch, "random", seed + rnd)
        else:
            probs, _, _ = _fit_predict(np.array(features), labels, pool_x[remaining])
            picks = query(probs, batch, strategy, seed + rnd)
        chosen = [remaining[i] for i in picks]
        rows = [pool[i] for i in chosen]
        if oracle is None:
            result.queried = rows
            break
        answers = oracle(rows)
        for i, row, answer in zip(chosen, rows, answers):
            if answer in (None, ""):
                continue
            row[label_column] = str(answer)
            labels.append(str(answer))
            features.append(pool_x[i])
            labeled_idx.append(i)
            result.labeled.append(row)
        chosen_set = set(chosen)
        remaining = [i for i in remaining if i not in chosen_set]
        record_curve()
    return result
