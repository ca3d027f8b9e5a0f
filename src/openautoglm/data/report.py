"""HTML renderings of the toolkit's results (profile, clean, label issues, drift, qc)."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ._html import bar_png, hist_png, img, page, table

if TYPE_CHECKING:  # pragma: no cover
    from .profile import ProfileResult


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
