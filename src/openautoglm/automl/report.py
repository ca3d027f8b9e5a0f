"""A self-contained HTML report: profile, plan with provenance, leaderboard, search
curve, diagnostics (confusion matrix / ROC or residuals, out-of-fold) and importance.

Rendered from the shared ``automl.html`` template (:mod:`openautoglm.core.html_report`):
one stylesheet, plots as base64 PNG, every value from the data escaped."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.html_report import Cell, Image, Table, contrast_text, figure, png_base64, render, table

FIGSIZE = (5.2, 3.6)
DPI = 90


def write_report(model: Any, path: Path, *, data: Any = None) -> Path:
    """Write the report to ``path`` (a ``.html`` file, or a folder that gets ``report.html``)."""
    out = path if path.suffix.lower() in (".html", ".htm") else path / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    plan = model.plan_
    search = _search_curve(model)
    page = render("automl.html", title="AutoML report", instruction=plan.instruction or "(none)", run=_run(model),
                  plan=_plan_rows(plan), notes=plan.notes, profile=_profile_table(model.profile_),
                  leaderboard=_leaderboard_table(model.leaderboard().head(40)),
                  search=Image("search curve", search) if search else None, diagnostics=_diagnostics(model),
                  importance=_importance(model), written=time.strftime("%Y-%m-%d %H:%M:%S"))
    out.write_text(page, encoding="utf-8")
    return out


def _run(model: Any) -> dict[str, Any]:
    """The headline: data size, task, metric, cross-validated score, budget, seed, planner."""
    plan = model.plan_
    return {"rows": model.n_rows_, "features": model.n_features_in_, "task": plan.task, "metric": plan.metric,
            "cv_score": f"{model.cv_score_:.4f}", "folds": len(model.folds_), "budget": f"{model.time_budget:g}",
            "used": f"{model.time_used_:.1f}", "seed": model.seed, "planner": plan.planner}


def _plan_rows(plan: Any) -> list[dict[str, str]]:
    """One row per plan field: value, where it came from, why, the LLM's distribution."""
    return [{"name": name, "value": str(f.value), "source": f.source, "reason": str(f.reason),
             "llm": json.dumps(f.llm, ensure_ascii=False)[:300] if f.llm else ""}
            for name, f in plan.fields.items()]


def _profile_table(profile: Any) -> Table:
    rows = [[c.name, c.kind, c.n_unique, f"{c.missing:.1%}", ", ".join(str(s)[:24] for s in c.samples[:4]),
             Cell(str(c.reason), "small")] for c in profile.columns]
    return table(["column", "kind", "distinct", "missing", "samples", "why"], rows)


def _leaderboard_table(board: pd.DataFrame) -> Table:
    """The leaderboard, floats with 4 decimals (``NaN`` where a trial has no score)."""
    floats = {c for c in board.columns if pd.api.types.is_float_dtype(board[c])}

    def fmt(col: str, value: Any) -> str:
        if col in floats:
            return "NaN" if value is None or math.isnan(value) else f"{value:.4f}"
        return str(value)

    return table(board.columns, [[fmt(c, v) for c, v in zip(board.columns, row)]
                                 for row in board.itertuples(index=False, name=None)])


def _fig() -> tuple[Any, Any]:
    fig = figure(*FIGSIZE, dpi=DPI)
    return fig, fig.subplots()


def _png(fig: Any) -> str:
    fig.tight_layout()
    return png_base64(fig, tight=False)


def _search_curve(model: Any) -> str | None:
    from .metrics import LOWER_IS_BETTER

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


def _diagnostics(model: Any) -> list[Image]:
    """Residual and predicted-vs-true plots (regression), or confusion matrix and ROC curves."""
    y, oof = model.y_, model.oof_
    if model.plan_.task == "regression":
        return [Image("residuals", _residuals(y, oof)), Image("predicted against true", _predicted_vs_true(y, oof))]
    from sklearn import metrics as M

    classes = [str(c) for c in model.classes_]
    cm = M.confusion_matrix(y, oof.argmax(axis=1), labels=range(len(classes)))
    return [Image("confusion matrix", _png(confusion_figure(cm, classes))), Image("ROC curves", _roc(y, oof, classes))]


def _residuals(y: Any, oof: Any) -> str:
    fig, ax = _fig()
    ax.scatter(oof, y - oof, s=6, alpha=0.5)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (true - predicted)")
    return _png(fig)


def _predicted_vs_true(y: Any, oof: Any) -> str:
    fig, ax = _fig()
    ax.scatter(y, oof, s=6, alpha=0.5)
    lo, hi = float(min(y.min(), oof.min())), float(max(y.max(), oof.max()))
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    return _png(fig)


def confusion_figure(cm: np.ndarray, classes: list[str]) -> Any:
    """Heat map of the confusion matrix (rows: true, columns: predicted); each count is drawn
    in black or white, whichever contrasts more with its cell's colour."""
    fig, ax = _fig()
    image = ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color=contrast_text(image.to_rgba(v)))
    ax.set_xticks(range(len(classes)), [c[:12] for c in classes], rotation=45, fontsize=7)
    ax.set_yticks(range(len(classes)), [c[:12] for c in classes], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return fig


def _roc(y: Any, oof: Any, classes: list[str]) -> str:
    from sklearn import metrics as M

    fig, ax = _fig()
    for k, c in enumerate(classes if len(classes) > 2 else classes[1:]):
        kk = k if len(classes) > 2 else 1
        fpr, tpr, _ = M.roc_curve(y == kk, oof[:, kk])
        ax.plot(fpr, tpr, lw=1, label=f"{c[:12]} (AUC {M.auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.6)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7)
    return _png(fig)


def _importance(model: Any) -> list[tuple[str, Image]]:
    """Permutation importance and, for LightGBM, TreeSHAP: (explanation, bar chart) pairs."""
    from .importance import lgbm_shap, permutation_importance

    pi = permutation_importance(model, seed=model.seed)
    out = [("Permutation importance: drop in the metric when a column is shuffled, on fold 1's held-out rows "
            f"({len(model.holdout_[1])} rows, models that never saw them).",
            Image("permutation importance", _bar(pi, "importance")))]
    shap = lgbm_shap(model)
    if shap is not None:
        out.append(("TreeSHAP (LightGBM, exact): mean |SHAP value| per prepared feature, same rows.",
                    Image("TreeSHAP", _bar(shap, "mean_abs_shap"))))
    return out


def _bar(frame: pd.DataFrame, col: str) -> str:
    top = frame.head(20).iloc[::-1]
    fig, ax = _fig()
    ax.barh([str(f)[:28] for f in top["feature"]], top[col])
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel(col)
    return _png(fig)
