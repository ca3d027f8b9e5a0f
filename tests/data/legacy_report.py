"""Frozen copy of the f-string renderers (src/openautoglm/data/_html.py and report.py at 21dd998),
kept as the reference the template-rendered reports are compared with."""

from __future__ import annotations

import base64
import io
from html import escape
from typing import Any, Mapping, Sequence


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}td.num{text-align:right}.warn{color:#b35c00}h2{margin-top:1.6em}
img{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:1em}"""


def figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def bar_png(counts: Mapping[str, float], title: str, top: int = 20) -> str:
    items = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    fig = figure(max(4.0, 0.35 * len(items) + 2), 3.0)
    ax = fig.subplots()
    ax.bar([str(k)[:18] for k, _ in items], [v for _, v in items], color="#4a7ab5")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    return png(fig)


def hist_png(values: Sequence[float], title: str, bins: int = 40, xlabel: str = "") -> str:
    fig = figure(5.0, 3.0)
    ax = fig.subplots()
    ax.hist(list(values) or [0], bins=bins, color="#4a7ab5")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return png(fig)


def img(data: str, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for v in row:
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            text = f"{v:.4g}" if isinstance(v, float) else str(v)
            cells.append(f'<td class="num">{escape(text)}</td>' if num else f"<td>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>")


def _kv_rows(stats: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in stats.items() if not isinstance(v, (dict, list))]


def profile_html(result: "ProfileResult") -> str:
    s = result.stats
    parts = [f"<p>source: <code>{escape(result.source)}</code></p>", "<h2>Overview</h2>",
             table(["measure", "value"], _kv_rows(s))]
    parts += ["<h2>Encoding</h2>", table(["problem", "rows"], list(s["encoding"].items()))]
    parts += ["<h2>Length (characters)</h2>", table(["statistic", "value"], list(s["length_chars"].items()))]
    plots = [img(hist_png(result.lengths, "text length", xlabel="characters"), "length histogram")]
    for key, title in (("labels", "label distribution"), ("languages", "languages"), ("pii", "PII by type")):
        if s.get(key):
            plots.append(img(bar_png(s[key], title), title))
    parts.append('<div class="grid">' + "".join(plots) + "</div>")
    for key, title in (("labels", "Labels"), ("languages", "Languages"), ("pii", "PII matches by type")):
        if s.get(key):
            parts += [f"<h2>{title}</h2>", table(["value", "rows"], list(s[key].items()))]
    if s.get("imbalance_ratio"):
        parts.append(f"<p>imbalance ratio (largest / smallest class): <b>{s['imbalance_ratio']}</b></p>")
    parts.append(_examples(result.examples))
    return page("Data profile", "".join(parts))


def _examples(examples: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    if not examples:
        return ""
    out = ["<h2>Examples of problems</h2>"]
    for kind, rows in examples.items():
        header = sorted({k for r in rows for k in r}, key=lambda k: (k != "row", k != "text", k))
        out += [f"<h3>{escape(kind)}</h3>", table(header, [[r.get(h, "") for h in header] for r in rows])]
    return "".join(out)


def generic_html(title: str, summary: Mapping[str, Any], sections: Sequence[tuple[str, Sequence[str],
                 Sequence[Sequence[Any]]]] = (), plots: Sequence[tuple[str, str]] = ()) -> str:
    """A report page: a summary table, optional plots (title, base64 png) and tables."""
    parts = ["<h2>Summary</h2>", table(["measure", "value"], _kv_rows(summary))]
    if plots:
        parts.append('<div class="grid">' + "".join(img(p, t) for t, p in plots) + "</div>")
    for name, header, rows in sections:
        parts += [f"<h2>{escape(name)}</h2>", table(header, rows)]
    return page(title, "".join(parts))
