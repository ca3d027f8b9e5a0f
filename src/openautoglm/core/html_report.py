"""Self-contained HTML reports: Jinja2 templates on one base page and one stylesheet, plots
inlined as base64 PNG.

Every report (evaluation, AutoML, data toolkit, text-to-SQL) renders a template from
``openautoglm/core/templates`` that extends ``report_base.html``; the stylesheet
``report.css`` is inlined into each page, so a report is one file that works offline (no
CDN, no fonts, no external images).  Autoescaping is on: labels, column names and texts
from datasets are data, never markup.  Jinja2 and matplotlib are imported on first use.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Iterable, NamedTuple, Sequence

from ..errors import OpenAutoGLMError

if TYPE_CHECKING:  # pragma: no cover
    import jinja2

__all__ = ["Cell", "Image", "Table", "contrast_text", "figure", "png_base64", "render", "stylesheet", "table"]

TEMPLATE_PACKAGE = "openautoglm.core"
TEMPLATE_FOLDER = "templates"
MATPLOTLIB_HINT = "pip install matplotlib (it comes with the eval, automl, data and graph extras)"


class Cell(NamedTuple):
    """One table cell: its text and an optional CSS class (``num`` right-aligns it)."""

    text: str
    cls: str = ""


class Image(NamedTuple):
    """A PNG plot, base64-encoded, shown as a ``data:`` URI."""

    alt: str
    data: str


@dataclass
class Table:
    """A table for the ``table`` macro: a header row and rows of cells."""

    header: Sequence[str]
    rows: list[list[Cell]] = field(default_factory=list)
    cls: str = ""


def table(header: Sequence[Any], rows: Iterable[Sequence[Any]], *, cls: str = "",
          cell: Callable[[Any], Cell | str] = str) -> Table:
    """A :class:`Table` whose cells are ``cell(value)`` (a string or a :class:`Cell`); values
    that already are cells stay as they are."""
    def as_cell(value: Any) -> Cell:
        made = value if isinstance(value, Cell) else cell(value)
        return made if isinstance(made, Cell) else Cell(str(made))

    return Table([str(h) for h in header], [[as_cell(v) for v in row] for row in rows], cls)


@lru_cache(maxsize=1)
def environment() -> "jinja2.Environment":
    """The report templates' Jinja2 environment (autoescaping on, undefined names are errors)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader(TEMPLATE_PACKAGE, TEMPLATE_FOLDER),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def stylesheet() -> str:
    """The one stylesheet every report inlines (``report.css``, read as is, not as a template)."""
    env = environment()
    assert env.loader is not None
    return env.loader.get_source(env, "report.css")[0]


def render(template: str, **context: Any) -> str:
    """Render ``template`` (a file in the templates folder) with ``context``; the page gets the
    stylesheet as ``css``.  Every value from data is escaped by the template engine."""
    from markupsafe import Markup

    return environment().get_template(template).render(css=Markup(stylesheet()), **context)


def figure(width: float, height: float, *, dpi: int = 100) -> Any:
    """A matplotlib Figure drawn by the Agg canvas (no pyplot, no global backend switch)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise OpenAutoGLMError("the report's plots need matplotlib, which is not installed",
                               hint=MATPLOTLIB_HINT) from None
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def png_base64(fig: Any, *, tight: bool = True) -> str:
    """``fig`` as base64 PNG (``tight``: crop to the drawn content)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **({"bbox_inches": "tight"} if tight else {}))
    return base64.b64encode(buf.getvalue()).decode("ascii")


def relative_luminance(rgb: Sequence[float]) -> float:
    """WCAG relative luminance of an sRGB colour given as floats in [0, 1]."""
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(float(c)) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_text(background: Sequence[float]) -> str:
    """``"black"`` or ``"white"``, whichever contrasts more with ``background`` (RGB(A) in [0, 1])."""
    lum = relative_luminance(background)
    # contrast ratios (L1 + 0.05) / (L2 + 0.05) against black (L=0) and white (L=1)
    return "black" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "white"
