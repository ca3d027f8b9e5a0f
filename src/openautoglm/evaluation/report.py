"""A self-contained HTML evaluation report: the ``evaluation.html`` template on the shared
report base (:mod:`openautoglm.core.html_report`), plots as base64 PNG (matplotlib Agg),
a small inline script to filter the examples.

Nothing is loaded from the network: no CDN, no fonts, no external images.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Sequence

from ..core.html_report import Image, Table, figure, png_base64, render, table
from .metrics import require_extra

if TYPE_CHECKING:
    from . import EvalResult

SCRIPT = """
function applyFilter(){
  var wrongOnly=document.getElementById('wrong-only').checked;
  var raw=document.getElementById('conf-below').value;
  var below=raw===''?null:parseFloat(raw);
  var rows=document.querySelectorAll('#examples tbody tr');
  var shown=0;
  rows.forEach(function(r){
    var ok=!(wrongOnly&&r.dataset.correct==='1');
    if(ok&&below!==null&&!isNaN(below)){
      var c=r.dataset.conf===''?null:parseFloat(r.dataset.conf);
      ok=c!==null&&c<below;
    }
    r.style.display=ok?'':'none';
    if(ok){shown++;}
  });
  document.getElementById('shown').textContent=shown;
}
"""


def _figure(width: float, height: float) -> Any:
    require_extra("matplotlib")  # says how to install the eval extra
    return figure(width, height, dpi=100)


def confusion_png(confusion: dict[str, Any]) -> str:
    """Heat map of the confusion matrix (rows: gold, columns: predicted), as base64 PNG."""
    rows, cols, matrix = confusion["rows"], confusion["columns"], confusion["matrix"]
    size = max(3.0, 0.6 * max(len(rows), len(cols)) + 2)
    fig = _figure(size, size * 0.85)
    ax = fig.subplots()
    image = ax.imshow(matrix or [[0]], cmap="Blues", aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(cols)), [_short(c) for c in cols], rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), [_short(r) for r in rows])
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    top = max((v for row in matrix for v in row), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > top / 2 else "black")
    ax.set_title("confusion matrix")
    return png_base64(fig)


def reliability_png(bins: Sequence[dict[str, Any]]) -> str:
    """Reliability diagram: accuracy per confidence bin against the diagonal."""
    fig = _figure(4.5, 4.0)
    ax = fig.subplots()
    full = [b for b in bins if b["count"]]
    ax.bar([b["lo"] for b in full], [b["accuracy"] for b in full], width=[b["hi"] - b["lo"] for b in full],
           align="edge", edgecolor="#1f4e79", color="#4f8fcf", label="accuracy")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.plot([b["confidence"] for b in full], [b["accuracy"] for b in full], "o", color="#c0392b",
            markersize=4, label="mean confidence", clip_on=False)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    return png_base64(fig)


def histogram_png(confidences: Sequence[float], correct: Sequence[bool], n_bins: int = 15) -> str:
    """Histogram of confidences, correct and wrong predictions stacked."""
    fig = _figure(4.5, 4.0)
    ax = fig.subplots()
    right = [c for c, ok in zip(confidences, correct) if ok]
    wrong = [c for c, ok in zip(confidences, correct) if not ok]
    ax.hist([right, wrong], bins=[i / n_bins for i in range(n_bins + 1)], stacked=True,
            color=["#4f8fcf", "#e07b6a"], label=["correct", "wrong"])
    ax.set_xlim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("examples")
    ax.set_title("confidence histogram")
    ax.legend(loc="upper left", fontsize=8)
    return png_base64(fig)


def _short(text: str, width: int = 18) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> Table:
    return table(header, rows, cls=cls, cell=_fmt)


def _tables(result: "EvalResult") -> dict[str, Table | None]:
    """The report's tables: run identity, summary, per class, confusion matrix, cost."""
    m = result.metrics
    cal, cost, cm = m.get("calibration"), m.get("cost", {}), m["confusion_matrix"]
    summary = [["accuracy", m["accuracy"]], ["macro-F1", m["macro_f1"]], ["errors", m["n_errors"]]]
    if cal:
        summary += [["ECE (15 bins)", cal["ece"]], ["Brier", cal["brier"]], ["mean confidence", cal["mean_confidence"]]]
    summary += [[f"method: {name}", f"{row['records']} records, accuracy {row['accuracy']:.3f}"]
                for name, row in (m.get("methods") or {}).items()]
    return {
        "run": _table(["pipeline", "model", "data", "label column", "run id", "examples"],
                      [[result.name, result.model, result.data, result.label_column, result.run_id, m["n"]]]),
        "summary": _table(["metric", "value"], summary, "num"),
        "per_class": _table(["label", "precision", "recall", "F1", "support"],
                            [[lab, s["precision"], s["recall"], s["f1"], s["support"]]
                             for lab, s in m["per_class"].items()], "num"),
        "confusion": _table(["gold \\ predicted", *cm["columns"]],
                            [[r, *row] for r, row in zip(cm["rows"], cm["matrix"])], "num"),
        "cost": _table(["measure", "value"], [[k.replace("_", " "), v] for k, v in cost.items()], "num")
        if cost else None,
    }


def _images(result: "EvalResult") -> list[Image]:
    """Confusion matrix, and with calibration the reliability diagram and confidence histogram."""
    cal = result.metrics.get("calibration")
    images = [Image("confusion matrix", confusion_png(result.metrics["confusion_matrix"]))]
    if cal:
        with_conf = [p for p in result.predictions if p.get("confidence") is not None]
        images.append(Image("reliability diagram", reliability_png(cal["bins"])))
        images.append(Image("confidence histogram", histogram_png([p["confidence"] for p in with_conf],
                                                                  [p["correct"] for p in with_conf], cal["n_bins"])))
    return images


def _examples(predictions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per prediction, formatted for the examples table and its filter."""
    rows = []
    for p in predictions:
        conf = p.get("confidence")
        shown = p["predicted"] if p.get("error") is None else f"error: {p['error']}"
        rows.append({"idx": p["idx"], "text": str(p["text"]), "gold": str(p["gold"]), "predicted": _fmt(shown),
                     "confidence": _fmt(conf), "correct": bool(p["correct"]),
                     "conf_attr": "" if conf is None else json.dumps(conf)})
    return rows


def render_html(result: "EvalResult") -> str:
    """The whole report as one HTML string."""
    from markupsafe import Markup

    return render("evaluation.html", title=f"Evaluation: {result.name}", warnings=result.metrics.get("warnings", []),
                  images=_images(result), examples=_examples(result.predictions), script=Markup(SCRIPT),
                  **_tables(result))
