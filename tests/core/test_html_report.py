"""The shared report module (openautoglm.core.html_report): templates, escaping, plots,
text colour on coloured cells.  (Kept with the evaluation tests, the first report.)"""

from __future__ import annotations

import base64
import subprocess
import sys

import jinja2
import pytest

from openautoglm.core import html_report
from openautoglm.core.html_report import Cell, contrast_text, figure, png_base64, relative_luminance, table

REPORTS = ("evaluation.html", "automl.html", "data_profile.html", "data_generic.html", "sql_evaluation.html")


def _ratio(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return (hi + 0.05) / (lo + 0.05)


def test_every_report_template_extends_the_one_base_page() -> None:
    env = html_report.environment()
    names = set(env.list_templates())
    assert {"report_base.html", "report.css", "macros.html", *REPORTS} <= names
    for name in REPORTS:
        source = env.loader.get_source(env, name)[0]
        assert source.startswith('{% extends "report_base.html" %}'), name
        env.get_template(name)  # parses
        assert "<style" not in source and "http" not in source, name


def test_autoescaping_is_on_and_missing_values_are_errors() -> None:
    env = html_report.environment()
    assert env.from_string("<td>{{ x }}</td>").render(x="<script>alert(1)</script>") == \
        "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>"
    with pytest.raises(jinja2.UndefinedError):
        html_report.render("data_generic.html", title="no summary given")


def test_table_cells_take_a_formatter() -> None:
    t = table(["a", "b"], [[1.23456, "x"]], cls="num", cell=lambda v: Cell(f"{v:.2f}", "num")
              if isinstance(v, float) else str(v))
    assert t.header == ["a", "b"] and t.rows == [[Cell("1.23", "num"), Cell("x")]] and t.cls == "num"


def test_figure_to_base64_png() -> None:
    fig = figure(2, 1.5, dpi=50)
    fig.subplots().plot([0, 1], [1, 0])
    data = base64.b64decode(png_base64(fig))
    assert data.startswith(b"\x89PNG")
    loose = base64.b64decode(png_base64(fig, tight=False))
    width = int.from_bytes(loose[16:20], "big")
    assert width == 100  # 2 in at 50 dpi, not cropped


def test_text_colour_contrasts_with_every_cell_colour_of_the_heat_maps() -> None:
    from matplotlib import colormaps

    assert contrast_text((1, 1, 1)) == "black" and contrast_text((0, 0, 0, 1)) == "white"
    assert contrast_text(colormaps["Blues"](1.0)) == "white"  # navy: the AutoML count was black on it
    for cmap in ("Blues", "viridis"):
        for k in range(101):
            background = relative_luminance(colormaps[cmap](k / 100))
            chosen = 0.0 if contrast_text(colormaps[cmap](k / 100)) == "black" else 1.0
            other = 1.0 - chosen
            assert _ratio(background, chosen) >= max(4.5, _ratio(background, other))


def test_importing_the_module_loads_neither_jinja2_nor_matplotlib() -> None:
    code = ("import sys, openautoglm.core.html_report; "
            "print([m for m in ('jinja2', 'matplotlib') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
