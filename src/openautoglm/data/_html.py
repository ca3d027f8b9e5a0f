"""Plots and table cells for the toolkit's HTML reports (rendered by
:mod:`openautoglm.core.html_report`: shared templates, one stylesheet, base64 PNG plots)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..core.html_report import Cell, figure, png_base64

DPI = 90


def bar_png(counts: Mapping[str, float], title: str, top: int = 20) -> str:
    """Bars of the ``top`` largest counts, as base64 PNG."""
    items = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    fig = figure(max(4.0, 0.35 * len(items) + 2), 3.0, dpi=DPI)
    ax = fig.subplots()
    ax.bar([str(k)[:18] for k, _ in items], [v for _, v in items], color="#4a7ab5")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    return png_base64(fig)


def hist_png(values: Sequence[float], title: str, bins: int = 40, xlabel: str = "") -> str:
    """Histogram of ``values``, as base64 PNG."""
    fig = figure(5.0, 3.0, dpi=DPI)
    ax = fig.subplots()
    ax.hist(list(values) or [0], bins=bins, color="#4a7ab5")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return png_base64(fig)


def cell(value: Any) -> Cell:
    """A table cell: floats to 4 significant digits, numbers right-aligned."""
    num = isinstance(value, (int, float)) and not isinstance(value, bool)
    return Cell(f"{value:.4g}" if isinstance(value, float) else str(value), "num" if num else "")
