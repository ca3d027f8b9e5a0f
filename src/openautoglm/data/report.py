"""HTML renderings of the toolkit's results (profile, clean, label issues, drift, qc), from the
shared report templates (``data_profile.html``, ``data_generic.html``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..core.html_report import Image, Table, render, table
from ._html import bar_png, cell, hist_png

if TYPE_CHECKING:  # pragma: no cover
    from .profile import ProfileResult

#: the distributions a profile shows (stats key, plot title, section heading)
DISTRIBUTIONS = (("labels", "label distribution", "Labels"), ("languages", "languages", "Languages"),
                 ("pii", "PII by type", "PII matches by type"))


def _kv_rows(stats: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in stats.items() if not isinstance(v, (dict, list))]


def _table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> Table:
    return table(header, rows, cell=cell)


def profile_html(result: "ProfileResult") -> str:
    """The profile: overview, encoding, lengths, distributions (plots and tables), examples."""
    s = result.stats
    plots = [Image("length histogram", hist_png(result.lengths, "text length", xlabel="characters"))]
    plots += [Image(title, bar_png(s[key], title)) for key, title, _ in DISTRIBUTIONS if s.get(key)]
    return render("data_profile.html", title="Data profile", source=result.source,
                  overview=_table(["measure", "value"], _kv_rows(s)),
                  encoding=_table(["problem", "rows"], list(s["encoding"].items())),
                  length=_table(["statistic", "value"], list(s["length_chars"].items())), plots=plots,
                  distributions=[(heading, _table(["value", "rows"], list(s[key].items())))
                                 for key, _, heading in DISTRIBUTIONS if s.get(key)],
                  imbalance_ratio=str(s["imbalance_ratio"]) if s.get("imbalance_ratio") else "",
                  examples=_examples(result.examples))


def _examples(examples: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[tuple[str, Table]]:
    """One table per kind of problem; columns ``row`` and ``text`` first."""
    out = []
    for kind, rows in examples.items():
        header = sorted({k for r in rows for k in r}, key=lambda k: (k != "row", k != "text", k))
        out.append((kind, _table(header, [[r.get(h, "") for h in header] for r in rows])))
    return out


def generic_html(title: str, summary: Mapping[str, Any], sections: Sequence[tuple[str, Sequence[str],
                 Sequence[Sequence[Any]]]] = (), plots: Sequence[tuple[str, str]] = ()) -> str:
    """A report page: a summary table, optional plots (title, base64 png) and tables."""
    return render("data_generic.html", title=title, summary=_table(["measure", "value"], _kv_rows(summary)),
                  plots=[Image(name, data) for name, data in plots],
                  sections=[(name, _table(header, rows)) for name, header, rows in sections])
