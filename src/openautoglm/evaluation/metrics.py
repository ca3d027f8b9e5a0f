"""Classification metrics (accuracy, macro-F1, per-class scores, confusion matrix) via scikit-learn.

A failed prediction is passed as ``None``: it counts as wrong (a miss for its gold
class) and gets its own ``ERROR`` column in the confusion matrix.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import OpenAutoGLMError

#: confusion-matrix column for records whose pipeline run failed
ERROR = "(error)"

EXTRA_HINT = "pip install 'openautoglm[eval]'"


def require_extra(module: str) -> Any:
    """Import ``module`` (sklearn, matplotlib) or say how to install the ``eval`` extra."""
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError:
        raise OpenAutoGLMError(
            f"evaluation needs {module.split('.')[0]}, which is not installed", hint=EXTRA_HINT
        ) from None


def classification_metrics(
    gold: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    ``labels`` orders the per-class table and the matrix; gold or predicted values
    outside it are added (sorted) so nothing is dropped silently.  Macro-F1 averages
    over the classes that occur in ``gold`` or ``predicted``.
    """
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted must have the same length")
    if not gold:
        raise ValueError("no examples to score")
    skm = require_extra("sklearn.metrics")
    labels = list(dict.fromkeys(labels))
    extra = {g for g in gold if g not in labels} | {p for p in predicted if p is not None and p not in labels}
    labels += sorted(extra)
    y_true = list(gold)
    y_pred = [ERROR if p is None else p for p in predicted]
    present = [lab for lab in labels if lab in set(y_true) | set(y_pred)]
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    columns = labels + ([ERROR] if ERROR in y_pred else [])
    matrix = skm.confusion_matrix(y_true, y_pred, labels=columns)[: len(labels)]
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "macro_f1": float(skm.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "labels": labels,
        "per_class": {
            lab: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for lab, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion_matrix": {"rows": labels, "columns": columns, "matrix": matrix.tolist()},
    }
