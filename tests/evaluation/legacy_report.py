"""Frozen copy of the f-string renderer (src/openautoglm/evaluation/report.py at 21dd998), kept as the
reference the template-rendered report is compared with.

A self-contained HTML evaluation report: inline CSS/JS, plots as base64 PNG (matplotlib Agg).

Nothing is loaded from the network: no CDN, no fonts, no external images.
"""

from __future__ import annotations

import base64
import io
import json
from html import escape
from typing import TYPE_CHECKING, Any, Sequence

from openautoglm.evaluation.metrics import require_extra

if TYPE_CHECKING:
    from openautoglm.evaluation import EvalResult


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure drawn by the Agg canvas (no pyplot, no global backend switch)."""
    figure_mod = require_extra("matplotlib.figure")
    agg = require_extra("matplotlib.backends.backend_agg")
    fig = figure_mod.Figure(figsize=(width, height), dpi=100)
    agg.FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


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
    return _png(fig)


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
    return _png(fig)


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
    return _png(fig)


def _short(text: str, width: int = 18) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f7}
.num td:not(:first-child){text-align:right}
.plots img{margin:0 1em 1em 0;border:1px solid #ddd}
tr.wrong td{background:#fdecea}
td.text{max-width:600px;white-space:pre-wrap;word-break:break-word}
.controls{margin:0.5em 0}
.warn{color:#a15c00}
"""

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


def render_html(result: "EvalResult") -> str:
    """The whole report as one HTML string."""
    m = result.metrics
    cal = m.get("calibration")
    cost = m.get("cost", {})
    title = f"Evaluation: {result.name}"
    parts = [f"<h1>{escape(title)}</h1>",
             _table(["pipeline", "model", "data", "label column", "run id", "examples"],
                    [[result.name, result.model, result.data, result.label_column, result.run_id, m["n"]]])]
    for warning in m.get("warnings", []):
        parts.append(f'<p class="warn">warning: {escape(warning)}</p>')
    parts.append("<h2>Summary</h2>")
    summary = [["accuracy", m["accuracy"]], ["macro-F1", m["macro_f1"]], ["errors", m["n_errors"]]]
    if cal:
        summary += [["ECE (15 bins)", cal["ece"]], ["Brier", cal["brier"]], ["mean confidence", cal["mean_confidence"]]]
    parts.append(_table(["metric", "value"], summary, "num"))
    parts.append("<h2>Per class</h2>")
    parts.append(_table(["label", "precision", "recall", "F1", "support"],
                        [[lab, s["precision"], s["recall"], s["f1"], s["support"]]
                         for lab, s in m["per_class"].items()],
                        "num"))
    cm = m["confusion_matrix"]
    parts.append("<h2>Confusion matrix</h2><p>rows: gold · columns: predicted</p>")
    parts.append(_table(["gold \\ predicted", *cm["columns"]], [[r, *row] for r, row in zip(cm["rows"], cm["matrix"])],
                        "num"))
    images = [("confusion matrix", confusion_png(cm))]
    if cal:
        with_conf = [p for p in result.predictions if p.get("confidence") is not None]
        images.append(("reliability diagram", reliability_png(cal["bins"])))
        images.append(("confidence histogram", histogram_png([p["confidence"] for p in with_conf],
                                                             [p["correct"] for p in with_conf], cal["n_bins"])))
    parts.append('<h2>Plots</h2><div class="plots">' + "".join(
        f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">' for alt, data in images) + "</div>")
    if cost:
        parts.append("<h2>Cost</h2>")
        parts.append(_table(["measure", "value"], [[k.replace("_", " "), v] for k, v in cost.items()], "num"))
    parts.append(_examples_table(result.predictions))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(parts)
        + f"<script>{SCRIPT}</script></body></html>\n"
    )


def _examples_table(predictions: Sequence[dict[str, Any]]) -> str:
    rows = []
    for p in predictions:
        conf = p.get("confidence")
        shown = p["predicted"] if p.get("error") is None else f"error: {p['error']}"
        rows.append(
            f'<tr class="{"" if p["correct"] else "wrong"}" data-correct="{int(bool(p["correct"]))}"'
            f' data-conf="{"" if conf is None else json.dumps(conf)}">'
            f'<td>{p["idx"]}</td><td class="text">{escape(str(p["text"]))}</td><td>{escape(str(p["gold"]))}</td>'
            f"<td>{escape(_fmt(shown))}</td><td>{escape(_fmt(conf))}</td>"
            f'<td>{"yes" if p["correct"] else "no"}</td></tr>'
        )
    controls = (
        '<div class="controls"><label><input type="checkbox" id="wrong-only" onchange="applyFilter()"> wrong only'
        '</label> &nbsp; <label>confidence below <input type="number" id="conf-below" min="0" max="1" step="0.05"'
        ' oninput="applyFilter()" style="width:5em"></label> &nbsp; showing <span id="shown">'
        f"{len(predictions)}</span> of {len(predictions)}</div>"
    )
    return (
        "<h2>Examples</h2>" + controls
        + '<table id="examples"><thead><tr><th>#</th><th>input</th><th>gold</th><th>predicted</th>'
        + "<th>confidence</th><th>correct</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
