"""The AutoML report rendered from the shared templates shows what the former f-string report
showed (the confusion matrix's counts now contrast with their cells), escapes column names and
values from the data, and stays one offline file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from openautoglm.automl import AutoML
from openautoglm.automl.report import confusion_figure, write_report
from openautoglm.core.html_report import relative_luminance, stylesheet

from ..evaluation.report_html import assert_escaped, assert_self_contained, missing_tables, missing_texts, parse
from . import legacy_report

HOSTILE = "<script>alert(1)</script>"
FAST = dict(planner="heuristic", time_budget=60, max_trials=4, cv=3, families=["lgbm", "linear"], seed=0)


def _frame(task: str) -> pd.DataFrame:
    """A column named like a script tag, holding it as a category too; a target per task."""
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({"tenure": rng.integers(0, 72, n), HOSTILE: rng.choice(["a", HOSTILE, "c"], n),
                          "charges": rng.normal(70, 20, n).round(2)})
    signal = frame["tenure"] + 20 * (frame[HOSTILE] == HOSTILE) + rng.normal(0, 10, n)
    frame["target"] = np.where(signal > 40, "yes", "no") if task == "binary" else signal.round(2)
    return frame


@pytest.fixture(scope="module", params=["binary", "regression"])
def model(request: pytest.FixtureRequest) -> Any:
    fitted = AutoML("predict target", **FAST).fit(_frame(request.param))
    assert fitted.plan_.task == request.param
    return fitted


@pytest.fixture(scope="module")
def pages(model: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(f-string report, template report) of one fitted model."""
    out = tmp_path_factory.mktemp("report")
    old = legacy_report.write_report(model, out / "old.html").read_text(encoding="utf-8")
    return old, write_report(model, out / "new.html").read_text(encoding="utf-8")


def test_template_report_shows_every_text_table_and_plot_of_the_f_string_report(model: Any, pages: tuple[str, str]) -> None:
    old, new = parse(pages[0]), parse(pages[1])
    assert len(old.tables) == 3 and len(old.images) >= 4
    assert missing_texts(old, new, ignore=("written ",)) == {}  # the time stamp may tick between the two
    assert missing_tables(old, new) == []
    changed = [k for k, (a, b) in enumerate(zip(old.image_sources(), new.image_sources())) if a != b]
    assert len(new.images) == len(old.images)
    # the same plots, byte for byte, except the classifier's confusion matrix (its count colours)
    assert [new.images[k][0] for k in changed] == (["confusion matrix"] if model.plan_.task == "binary" else [])


def test_leaderboard_and_headline_numbers_are_in_the_report(model: Any, pages: tuple[str, str]) -> None:
    page = parse(pages[1])
    board = model.leaderboard()
    shown = page.tables[2]
    assert shown[0] == list(board.columns)
    metric = model.plan_.metric
    assert [row[list(board.columns).index(metric)] for row in shown[1:]] == [f"{v:.4f}" for v in board[metric]]
    assert [row[0] for row in shown[1:]] == list(board["model"])
    headline = next(b for b in page.blocks if b.startswith(f"{model.n_rows_} rows"))
    assert f"cross-validated {metric} {model.cv_score_:.4f}" in headline


def test_column_names_and_values_from_the_data_are_escaped(pages: tuple[str, str]) -> None:
    assert_escaped(pages[1], HOSTILE)
    assert parse(pages[1]).tags["script"] == 0
    profile = parse(pages[1]).tables[1]
    assert [HOSTILE, "categorical", "3"] == profile[2][:3]


def test_report_is_one_offline_page_with_the_shared_stylesheet(pages: tuple[str, str]) -> None:
    assert_self_contained(pages[1])
    assert parse(pages[1]).styles[0].strip() == stylesheet().strip()


def _ratio(a: float, b: float) -> float:
    return (max(a, b) + 0.05) / (min(a, b) + 0.05)


def test_confusion_matrix_counts_contrast_with_their_cells() -> None:
    from matplotlib.colors import to_rgba

    cm = np.array([[154, 0, 3], [16, 80, 40], [1, 111, 19]])
    fig = confusion_figure(cm, ["no", "yes", HOSTILE])
    ax = fig.axes[0]
    image = ax.images[0]
    colours = {}
    for text in ax.texts:
        i, j = (int(round(v)) for v in text.get_position()[::-1])
        cell = relative_luminance(image.to_rgba(cm[i, j]))
        ink = relative_luminance(to_rgba(text.get_color()))
        assert _ratio(cell, ink) >= 4.5, (text.get_text(), text.get_color())
        colours[int(text.get_text())] = text.get_color()
    assert len(colours) == cm.size
    assert colours[154] == "white" and colours[0] == "black"  # navy cell, white cell
