"""The reports in a real browser (Debian's Chromium): they load with the network cut off, draw
every plot, run no script from the data, share one stylesheet, and the evaluation report's
filter hides rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from openautoglm.evaluation import EvalResult
from openautoglm.evaluation.report import render_html

from .test_report import HOSTILE
from .test_report import result as result  # noqa: F401 - the evaluation fixture, shared

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (bash scripts/system-deps.sh)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def _sql_page() -> str:
    from openautoglm.sql.evaluator import ItemResult, SpiderReport, render_report

    item = ItemResult(0, HOSTILE, "easy", f"Who is {HOSTILE}?", "SELECT 1", f"SELECT '{HOSTILE}'", False, False, 0.5,
                      HOSTILE, 0.1)
    return render_report([SpiderReport(HOSTILE, HOSTILE, [item])])


def _data_page() -> str:
    from openautoglm.data.profile import profile

    return profile([{"text": f"hi {HOSTILE}", "label": HOSTILE}, {"text": "a@example.com", "label": "b"}],
                   label_column="label").to_html()


def _automl_page(tmp: Path) -> str:
    import numpy as np
    import pandas as pd

    from openautoglm.automl import AutoML

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({HOSTILE: rng.choice(["a", HOSTILE], 200), "x": rng.normal(size=200)})
    frame["y"] = np.where(frame["x"] + (frame[HOSTILE] == HOSTILE) > 0.5, "yes", "no")
    model = AutoML("predict y", planner="heuristic", time_budget=30, max_trials=2, cv=3, families=["linear"]).fit(frame)
    return model.report(tmp / "automl.html").read_text(encoding="utf-8")


def _open(browser: Any, html: str, tmp: Path) -> tuple[Any, list[str], list[str]]:
    """The page from a file, every non-file request refused; (page, refused URLs, dialogs)."""
    path = tmp / "page.html"
    path.write_text(html, encoding="utf-8")
    page = browser.new_page()
    refused: list[str] = []
    dialogs: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(("file:", "data:")):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, refused, dialogs


PAGES: dict[str, Callable[..., str]] = {"sql": lambda tmp, r: _sql_page(), "data": lambda tmp, r: _data_page(),
                                        "automl": lambda tmp, r: _automl_page(tmp),
                                        "evaluation": lambda tmp, r: render_html(r)}


@pytest.mark.parametrize("name", sorted(PAGES))
def test_report_loads_offline_draws_its_plots_and_runs_no_data_script(
        name: str, browser: Any, result: EvalResult, tmp_path: Path) -> None:  # noqa: F811
    page, refused, dialogs = _open(browser, PAGES[name](tmp_path, result), tmp_path)
    try:
        assert refused == [] and dialogs == []
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert widths and all(w > 0 for w in widths)
        assert page.evaluate("document.styleSheets.length") == 1
        header = page.eval_on_selector("th", "th => getComputedStyle(th).backgroundColor")
        assert header == "rgb(240, 243, 247)"  # the shared stylesheet's table header
        assert HOSTILE in page.inner_text("body")  # shown as text
    finally:
        page.close()


def test_evaluation_filter_hides_correct_and_confident_rows(browser: Any, result: EvalResult, tmp_path: Path) -> None:  # noqa: F811
    page, _, _ = _open(browser, render_html(result), tmp_path)
    try:
        visible = "() => [...document.querySelectorAll('#examples tbody tr')].filter(r => r.style.display !== 'none').length"
        assert page.evaluate(visible) == len(result.predictions)
        page.check("#wrong-only")
        wrong = sum(not p["correct"] for p in result.predictions)
        assert page.evaluate(visible) == wrong and page.inner_text("#shown") == str(wrong)
        page.fill("#conf-below", "0.5")
        low = sum(not p["correct"] and p["confidence"] is not None and p["confidence"] < 0.5
                  for p in result.predictions)
        assert page.evaluate(visible) == low and low < wrong
    finally:
        page.close()
