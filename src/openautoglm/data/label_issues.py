"""``label-issues``: find likely mislabeled rows.

Two signals, usable alone or together:

* **Confident learning** (cleanlab) on *out-of-fold* probabilities: a fast model (sentence
  embeddings from :mod:`openautoglm.embeddings` + multinomial logistic regression,
  k-fold) or an Open-AutoGLM pipeline's label distribution (zero/few-shot, no folds needed).
  ``filter_by="both"`` (default here) flags a row only when both cleanlab's
  ``prune_by_class`` and ``prune_by_noise_rate`` rules agree, which trades a little recall
  for precision; ``"prune_by_noise_rate"`` is cleanlab's own default.
* **Confidence moving average (CMA)** over training epochs: an SGD logistic model is trained
  for ``epochs`` passes over all rows; for each row the probability of its given label and
  of the best other label are averaged over epochs; rows whose average favours another label
  are flagged.  Noisy rows are learned late (if at all), so their averaged confidence stays low.

The default ``cl+cma`` flags rows both signals agree on: on SST-2 and TREC with 10 % and 20 %
injected flips it had the best F1 of all variants and of cleanlab's defaults on the same
probabilities (BENCHMARKS.md, issue 6).  Use ``cl`` or ``cl|cma`` when recall matters more.

Results are ranked by cleanlab's label-quality score (lowest first) and exported for review.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..embeddings import get_embedder
from ..errors import InputDataError, OpenAutoGLMError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

METHODS = ("cl", "cma", "cl+cma", "cl|cma")
FILTERS = ("both", "prune_by_noise_rate", "prune_by_class", "confident_learning", "predicted_neq_given")


def embed(texts: Sequence[str], embedder: str = "auto") -> "np.ndarray":
    """L2-normalised sentence vectors (MiniLM, or char n-grams for Chinese)."""
    return get_embedder(embedder, corpus=list(texts)).encode(list(texts))


def _encode_labels(labels: Sequence[Any]) -> tuple["np.ndarray", list[str]]:
    import numpy as np

    classes = sorted({str(x) for x in labels})
    if len(classes) < 2:
        raise InputDataError(f"label issues need at least two classes; found {classes}",
                             hint="check --label-column")
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[str(x)] for x in labels], dtype=int), classes


def out_of_fold_probabilities(features: "np.ndarray", y: "np.ndarray", *, folds: int = 5, C: float = 4.0,
                              seed: int = 0) -> "np.ndarray":
    """k-fold out-of-fold ``predict_proba`` of a logistic regression on ``features``."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y)
    folds = int(max(2, min(folds, counts[counts > 0].min())))
    probs = np.zeros((len(y), int(y.max()) + 1))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, y):
        model = LogisticRegression(C=C, max_iter=2000)
        model.fit(features[train], y[train])
        probs[np.ix_(test, model.classes_)] = model.predict_proba(features[test])
    return probs


def cma_scores(features: "np.ndarray", y: "np.ndarray", *, epochs: int = 10, window: int | None = None,
               seed: int = 0, alpha: float = 1e-4) -> tuple["np.ndarray", "np.ndarray"]:
    """Moving averages over epochs of P(given label) and of the best other label's probability."""
    import numpy as np
    from sklearn.linear_model import SGDClassifier

    classes = np.arange(int(y.max()) + 1)
    model = SGDClassifier(loss="log_loss", alpha=alpha, learning_rate="optimal", random_state=seed)
    rng = np.random.default_rng(seed)
    given_hist, other_hist = [], []
    rows = np.arange(len(y))
    for _ in range(epochs):
        order = rng.permutation(len(y))
        model.partial_fit(features[order], y[order], classes=classes)
        proba = np.zeros((len(y), len(classes)))
        proba[:, model.classes_] = model.predict_proba(features)
        given = proba[rows, y]
        masked = proba.copy()
        masked[rows, y] = -1.0
        given_hist.append(given)
        other_hist.append(masked.max(axis=1))
    take = window or epochs
    return np.mean(given_hist[-take:], axis=0), np.mean(other_hist[-take:], axis=0)


def cma_filter(features: "np.ndarray", labels: Sequence[Any], *, epochs: int = 10, margin: float = 0.0,
               seed: int = 0) -> "np.ndarray":
    """Boolean mask of rows whose epoch-averaged confidence favours another label (by ``margin``)."""
    y, _ = _encode_labels(labels)
    given, other = cma_scores(features, y, epochs=epochs, seed=seed)
    return (other - given) > margin


@dataclass
class LabelIssues:
    """Flagged rows (ranked, lowest label quality first) and the probabilities behind them."""

    issues: list[dict[str, Any]]
    is_issue: "np.ndarray"
    quality: "np.ndarray"
    probabilities: "np.ndarray"
    classes: list[str]
    method: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def indices(self) -> list[int]:
        return [row["row"] for row in self.issues]

    def save(self, path: str | Path) -> Path:
        """Export the ranked issues for review (CSV/TSV/JSONL by suffix; a ``review`` column to fill)."""
        from .io import write_table

        return write_table(path, [{**row, "review": ""} for row in self.issues])

    def summary(self) -> dict[str, Any]:
        return {"rows": int(len(self.quality)), "flagged": len(self.issues), "method": self.method,
                "classes": self.classes, **self.info}

    def to_html(self, top: int = 200) -> str:
        """Summary, a histogram of label quality and the ``top`` ranked issues."""
        from ._html import hist_png
        from .report import generic_html

        header = ["row", "given_label", "suggested_label", "label_quality", "p_given", "p_suggested", "text"]
        rows = [[r[h] if h != "text" else str(r[h])[:200] for h in header] for r in self.issues[:top]]
        summary = {k: (", ".join(v) if isinstance(v, list) else v) for k, v in self.summary().items()}
        plot = hist_png([float(q) for q in self.quality], "label quality (all rows)", xlabel="cleanlab self-confidence")
        return generic_html("Label issues", summary, [(f"Top {min(top, len(self.issues))} issues", header, rows)],
                            [("label quality", plot)])


def find_label_issues(texts: Sequence[str] | None = None, labels: Sequence[Any] | None = None, *,
                      records: Sequence[Mapping[str, Any]] | None = None, text_column: str = "text",
                      label_column: str = "label", method: str = "cl+cma", filter_by: str = "both",
                      probabilities: "np.ndarray | None" = None, features: "np.ndarray | None" = None,
                      embedder: str = "auto", pipeline: Any = None, folds: int = 5, epochs: int = 10,
                      seed: int = 0, progress: bool = False) -> LabelIssues:
    """Flag likely label errors.

    Give ``texts`` and ``labels`` (or ``records`` with ``text_column``/``label_column``).
    Probabilities come from ``probabilities`` if given, else from ``pipeline`` (a YAML path or
    :class:`~openautoglm.core.pipeline.Pipeline` whose labels are the dataset's classes), else
    from k-fold logistic regression on ``features`` (default: embeddings of the texts).
    ``method``: ``cl+cma`` (default: flagged by confident learning *and* the confidence moving
    average; the best F1 in ``bench/data_label_noise.py``), ``cl`` (confident learning only; more
    recall), ``cma``, or ``cl|cma`` (flagged by either; most recall).
    """
    import numpy as np

    if method not in METHODS:
        raise OpenAutoGLMError(f"unknown method {method!r}", hint=f"use one of: {', '.join(METHODS)}")
    if filter_by not in FILTERS:
        raise OpenAutoGLMError(f"unknown filter {filter_by!r}", hint=f"use one of: {', '.join(FILTERS)}")
    if records is not None:
        from .io import texts_of

        texts = texts_of(records, text_column, "records")
        labels = texts_of(records, label_column, "records")
    if labels is None or (texts is None and probabilities is None and features is None):
        raise InputDataError("find_label_issues needs labels and texts (or probabilities/features)")
    y, classes = _encode_labels(labels)
    info: dict[str, Any] = {}
    if probabilities is None and pipeline is not None:
        from ._pipeline import load_pipeline, pipeline_probabilities

        pipe = load_pipeline(pipeline)
        recs = list(records) if records is not None else [{text_column: t} for t in texts or []]
        probs_p, pipe_labels, _ = pipeline_probabilities(pipe, recs, progress=progress)
        missing = sorted(set(classes) - set(pipe_labels))
        if missing:
            raise InputDataError(f"the pipeline's labels {pipe_labels} do not cover the data's labels {missing}",
                                 hint="use a pipeline whose task lists every label in the data")
        probabilities = probs_p[:, [pipe_labels.index(c) for c in classes]]
        probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
        info["probabilities"] = "pipeline"
    if (probabilities is None or method != "cl") and features is None:
        if texts is None:
            raise InputDataError(f"method {method!r} needs texts or features (the CMA filter trains on them)",
                                 hint="pass texts=..., features=..., or method='cl'")
        features = embed(texts, embedder)
    if probabilities is None:
        probabilities = out_of_fold_probabilities(features, y, folds=folds, seed=seed)
        info["probabilities"] = f"{folds}-fold logistic regression on embeddings"
    probabilities = np.asarray(probabilities, dtype=float)
    if probabilities.shape != (len(y), len(classes)):
        raise InputDataError(f"probabilities have shape {probabilities.shape}, expected {(len(y), len(classes))}")
    from cleanlab.filter import find_label_issues as cl_find
    from cleanlab.rank import get_label_quality_scores

    quality = get_label_quality_scores(y, probabilities)
    flags = np.zeros(len(y), dtype=bool)
    if method != "cma":
        flags = cl_find(y, probabilities, filter_by=filter_by, n_jobs=1)
        info["cl_flagged"] = int(flags.sum())
    if method != "cl":
        given, other = cma_scores(features, y, epochs=epochs, seed=seed)
        cma = (other - given) > 0
        info["cma_flagged"] = int(cma.sum())
        flags = cma if method == "cma" else (flags & cma if method == "cl+cma" else flags | cma)
    order = [int(i) for i in np.argsort(quality) if flags[i]]
    issues = []
    for i in order:
        best = int(np.argmax(probabilities[i]))
        issues.append({"row": i, "text": (texts[i] if texts is not None else ""), "given_label": classes[y[i]],
                       "suggested_label": classes[best], "label_quality": round(float(quality[i]), 4),
                       "p_given": round(float(probabilities[i, y[i]]), 4),
                       "p_suggested": round(float(probabilities[i, best]), 4)})
    return LabelIssues(issues, flags, quality, probabilities, classes, method, info)


def issues_json(result: LabelIssues) -> str:
    return json.dumps({"summary": result.summary(), "issues": result.issues}, ensure_ascii=False, indent=2)
