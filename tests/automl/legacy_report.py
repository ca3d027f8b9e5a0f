"""Frozen copy of the f-string renderer (src/openautoglm/automl/report.py at 21dd998), kept as the
reference the template-rendered report is compared with.

A self-contained HTML report: profile, plan with provenance, leaderboard, search
curve, diagnostics (confusion matrix / ROC or residuals, out-of-fold) and importance."""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.user{color:#0a6}.llm{color:#06c}.heuristic{color:#a60}img{max-width:520px;margin:4px}
.small{color:#666;font-size:12px}"""


def write_report(model: Any, path: Path, *, data: Any = None) -> Path:
    """Write the report to ``path`` (a ``.html`` file, or a folder that gets ``report.html``)."""
    out = path if path.suffix.lower() in (".html", ".htm") else path / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    plan = model.plan_
    parts = [f"<h1>AutoML report</h1><p><b>Instruction:</b> {_e(plan.instruction or '(none)')}</p>",
             f"<p>{model.n_rows_} rows · {model.n_features_in_} features · task <b>{plan.task}</b> · metric "
             f"<b>{plan.metric}</b> · cross-validated {plan.metric} <b>{model.cv_score_:.4f}</b> · "
             f"{len(model.folds_)} folds · budget {model.time_budget:g} s, used {model.time_used_:.1f} s · "
             f"seed {model.seed} · planner {plan.planner}</p>"]
    parts.append("<h2>Plan</h2>" + _plan_table(plan))
    if plan.notes:
        parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in plan.notes) + "</ul>")
    parts.append("<h2>Data profile</h2>" + _profile_table(model.profile_))
    board = model.leaderboard()
    parts.append("<h2>Leaderboard</h2>" + board.head(40).to_html(index=False, float_format=lambda v: f"{v:.4f}",
                                                                 border=0, escape=True))
    parts.append("<h2>Search</h2>" + _img(_search_curve(model)))
    parts.append("<h2>Diagnostics (out-of-fold predictions)</h2>" + "".join(_img(f) for f in _diagnostics(model)))
    parts.append("<h2>Feature importance</h2>" + _importance(model))
    parts.append(f"<p class=small>written {time.strftime('%Y-%m-%d %H:%M:%S')} by openautoglm.automl</p>")
    out.write_text(f"<!doctype html><html><head><meta charset=utf-8><title>AutoML report</title><style>{CSS}</style>"
                   f"</head><body>{''.join(parts)}</body></html>", encoding="utf-8")
    return out


def _e(x: Any) -> str:
    return html.escape(str(x))


def _plan_table(plan: Any) -> str:
    rows = []
    for name, f in plan.fields.items():
        llm = json.dumps(f.llm, ensure_ascii=False)[:300] if f.llm else ""
        rows.append(f"<tr><td>{name}</td><td><b>{_e(f.value)}</b></td><td class={f.source}>{f.source}</td>"
                    f"<td>{_e(f.reason)}</td><td class=small>{_e(llm)}</td></tr>")
    return ("<table><tr><th>field</th><th>value</th><th>source</th><th>why</th><th>LLM distribution</th></tr>"
            + "".join(rows) + "</table>")


def _profile_table(profile: Any) -> str:
    rows = "".join(
        f"<tr><td>{_e(c.name)}</td><td>{c.kind}</td><td>{c.n_unique}</td><td>{c.missing:.1%}</td>"
        f"<td>{_e(', '.join(str(s)[:24] for s in c.samples[:4]))}</td><td class=small>{_e(c.reason)}</td></tr>"
        for c in profile.columns)
    return ("<table><tr><th>column</th><th>kind</th><th>distinct</th><th>missing</th><th>samples</th><th>why</th></tr>"
            + rows + "</table>")


def _fig() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(5.2, 3.6), dpi=90)


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _img(b64: str | None) -> str:
    return f'<img src="data:image/png;base64,{b64}">' if b64 else ""


def _search_curve(model: Any) -> str | None:
    from openautoglm.automl.metrics import LOWER_IS_BETTER

    done = [t for t in model.trials_ if t.state == "complete"]
    if not done:
        return None
    fig, ax = _fig()
    lower = model.plan_.metric in LOWER_IS_BETTER
    fams = sorted({t.family for t in done})
    for fam in fams:
        pts = [(t.finished_at, t.value) for t in done if t.family == fam]
        ax.scatter(*zip(*pts), s=14, label=fam)
    xs, best, cur = [], [], None
    for t in sorted(done, key=lambda t: t.finished_at):
        cur = t.value if cur is None else (min(cur, t.value) if lower else max(cur, t.value))
        xs.append(t.finished_at)
        best.append(cur)
    ax.step(xs, best, where="post", color="k", lw=1, label="best so far")
    ax.set_xlabel("seconds into the search")
    ax.set_ylabel(f"CV {model.plan_.metric}")
    ax.legend(fontsize=7)
    return _png(fig)


def _diagnostics(model: Any) -> list[str]:
    from sklearn import metrics as M

    y, oof = model.y_, model.oof_
    figs = []
    if model.plan_.task == "regression":
        fig, ax = _fig()
        ax.scatter(oof, y - oof, s=6, alpha=0.5)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("residual (true - predicted)")
        figs.append(_png(fig))
        fig, ax = _fig()
        ax.scatter(y, oof, s=6, alpha=0.5)
        lo, hi = float(min(y.min(), oof.min())), float(max(y.max(), oof.max()))
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
        figs.append(_png(fig))
        return figs
    classes = [str(c) for c in model.classes_]
    cm = M.confusion_matrix(y, oof.argmax(axis=1), labels=range(len(classes)))
    fig, ax = _fig()
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(classes)), [c[:12] for c in classes], rotation=45, fontsize=7)
    ax.set_yticks(range(len(classes)), [c[:12] for c in classes], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    figs.append(_png(fig))
    fig, ax = _fig()
    for k, c in enumerate(classes if len(classes) > 2 else classes[1:]):
        kk = k if len(classes) > 2 else 1
        fpr, tpr, _ = M.roc_curve(y == kk, oof[:, kk])
        ax.plot(fpr, tpr, lw=1, label=f"{c[:12]} (AUC {M.auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.6)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7)
    figs.append(_png(fig))
    return figs


def _importance(model: Any) -> str:
    from openautoglm.automl.importance import lgbm_shap, permutation_importance

    pi = permutation_importance(model, seed=model.seed)
    out = ["<p>Permutation importance: drop in the metric when a column is shuffled, on fold 1's held-out rows "
           f"({len(model.holdout_[1])} rows, models that never saw them).</p>", _bar(pi, "importance")]
    shap = lgbm_shap(model)
    if shap is not None:
        out += ["<p>TreeSHAP (LightGBM, exact): mean |SHAP value| per prepared feature, same rows.</p>",
                _bar(shap, "mean_abs_shap")]
    return "".join(out)


def _bar(frame: pd.DataFrame, col: str) -> str:
    top = frame.head(20).iloc[::-1]
    fig, ax = _fig()
    ax.barh([str(f)[:28] for f in top["feature"]], top[col])
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel(col)
    return _img(_png(fig))
