"""Small helpers for the toolkit's self-contained HTML reports (inline CSS, base64 PNG plots)."""

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
