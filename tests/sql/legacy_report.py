"""Frozen copy of the f-string renderer (``render_report`` in src/openautoglm/sql/evaluator.py at
21dd998), kept as the reference the template-rendered report is compared with."""

from __future__ import annotations

from typing import Sequence

from openautoglm.sql.evaluator import HARDNESS, SpiderReport


def render_report(reports: Sequence[SpiderReport]) -> str:
    """A self-contained HTML page: EX by hardness per mode (plot + table) and per-question results."""
    from html import escape

    from ..evaluation.legacy_report import STYLE, _figure, _png

    fig = _figure(6.5, 3.2)
    ax = fig.add_subplot(111)
    width = 0.8 / max(1, len(reports))
    for k, rep in enumerate(reports):
        rows = rep.summary()["by_hardness"]
        levels = [lv for lv in (*HARDNESS, "all") if lv in rows]
        ax.bar([i + k * width for i in range(len(levels))], [rows[lv]["ex"] for lv in levels], width, label=rep.mode)
        ax.set_xticks([i + width * (len(reports) - 1) / 2 for i in range(len(levels))], levels)
    ax.set_ylabel("execution accuracy")
    ax.set_ylim(0, 1)
    ax.legend()
    parts = [f"<!doctype html><meta charset='utf-8'><title>Text-to-SQL evaluation</title><style>{STYLE}</style>",
             "<h1>Text-to-SQL evaluation (EX on converted Spider dev DBs)</h1>",
             "<p>Execution accuracy compares result bags (ordered when the gold query has ORDER BY); "
             "the dev databases were converted from MySQL (wta_1, car_1, flight_2 excluded), so this is not the "
             "official test-suite metric.</p>",
             f"<img alt='EX by hardness' src='data:image/png;base64,{_png(fig)}'>"]
    for rep in reports:
        s = rep.summary()
        parts.append(f"<h2>{escape(rep.mode)} · model {escape(rep.model)} · "
                     f"{s['seconds_per_question']:.2f} s/question</h2><table class='num'><tr><th>hardness</th><th>n</th>"
                     "<th>EX</th><th>structure match</th><th>errors</th></tr>")
        for level, row in s["by_hardness"].items():
            parts.append(f"<tr><td>{level}</td><td>{row['n']}</td><td>{row['ex']:.3f}</td>"
                         f"<td>{row['structure']:.3f}</td><td>{row['errors']}</td></tr>")
        parts.append("</table><details><summary>per question</summary><table><tr><th>#</th><th>db</th>"
                     "<th>hardness</th><th>question</th><th>gold</th><th>predicted</th><th>EX</th><th>error</th></tr>")
        for r in rep.results:
            cls = "" if r.ex else " class='wrong'"
            parts.append(f"<tr{cls}><td>{r.index}</td><td>{escape(r.db_id)}</td><td>{r.hardness}</td>"
                         f"<td class='text'>{escape(r.question)}</td><td class='text'>{escape(r.gold)}</td>"
                         f"<td class='text'>{escape(r.pred)}</td><td>{'yes' if r.ex else 'no'}</td>"
                         f"<td>{escape(r.error or '')}</td></tr>")
        parts.append("</table></details>")
    return "\n".join(parts)
