"""The toolkit's HTML reports (profile, label issues, drift, QC) rendered from the shared
templates show what the former f-string pages showed, escape what comes from data, and stay
one offline file each."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

import openautoglm.data.report as report
from openautoglm.core.html_report import stylesheet
from openautoglm.data.drift import drift
from openautoglm.data.label_issues import find_label_issues
from openautoglm.data.profile import profile

from ..evaluation.report_html import assert_escaped, assert_self_contained, missing_tables, missing_texts, parse
from . import legacy_report
from .test_drift_qc import WORDS_A, WORDS_B, _rows
from .test_profile_clean import ROWS

HOSTILE = "<script>alert(1)</script>"


def _profile() -> Any:
    rows = ROWS + [{"text": f"click {HOSTILE} now", "label": HOSTILE}, {"text": "", "label": HOSTILE}]
    return profile(rows, label_column="label")


def _label_issues() -> Any:
    labels = ["a", "a", HOSTILE, HOSTILE, "a", HOSTILE] * 10
    probs = np.array([[0.9, 0.1] if lab == "a" else [0.2, 0.8] for lab in labels])
    probs[3] = [0.97, 0.03]  # row 3 says HOSTILE, the model is sure it is "a"
    texts = [f"t{i}" if i != 3 else f"t3 {HOSTILE}" for i in range(60)]
    return find_label_issues(labels=labels, probabilities=probs, texts=texts, method="cl")


def _drift() -> Any:
    ref = [{**r, "label": HOSTILE if r["label"] == "pos" else r["label"]} for r in _rows(200, 0.5, 0, WORDS_A)]
    cur = [{**r, "label": HOSTILE if r["label"] == "pos" else r["label"]} for r in _rows(200, 0.9, 2, WORDS_B)]
    return drift(ref, cur, label_column="label", embeddings=False)


def _qc_html(generic: Callable[..., str]) -> str:
    """The page ``data qc`` writes (summary, kappa and violation tables), hostile names included."""
    summary = {"rows": 20, "fleiss_kappa": 0.2103, "items_rated_by_all": 20, "violations": 2, HOSTILE: True}
    sections = [("Cohen's kappa", ["pair", "kappa"], [["a1~a2", 0.5], [f"a1~{HOSTILE}", -0.125]]),
                ("Guideline violations", ["row", "rule", "field", "message"],
                 [[3, "allowed_labels", "label", f"label {HOSTILE!r} is not allowed"]])]
    return generic("Annotation QC", summary, sections, [(f"plot {HOSTILE}", legacy_report.hist_png([1, 2], "x"))])


REPORTS: dict[str, Callable[[], Any]] = {"profile": _profile, "label issues": _label_issues, "drift": _drift}
RENDERERS = {"profile": "profile_html", "label issues": "generic_html", "drift": "generic_html"}


@pytest.fixture(scope="module", params=sorted(REPORTS))
def result(request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, REPORTS[request.param]()


def _old_and_new(name: str, result: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    new = result.to_html()
    with monkeypatch.context() as patch:  # the result's own to_html, with the f-string renderer behind it
        patch.setattr(report, RENDERERS[name], getattr(legacy_report, RENDERERS[name]))
        old = result.to_html()
    return old, new


def test_template_reports_show_every_text_table_and_plot_of_the_f_string_reports(
        result: tuple[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    old_html, new_html = _old_and_new(*result, monkeypatch)
    assert old_html != new_html  # the legacy renderer really was swapped in
    old, new = parse(old_html), parse(new_html)
    assert old.tables and len(new.tables) == len(old.tables)
    assert missing_texts(old, new) == {}
    assert missing_tables(old, new) == []
    assert new.images == old.images  # the same plots, byte for byte, in the same order


def test_qc_page_shows_what_the_f_string_page_showed() -> None:
    old, new = parse(_qc_html(legacy_report.generic_html)), parse(_qc_html(report.generic_html))
    assert len(old.tables) == 3 and len(old.images) == 1
    assert missing_texts(old, new) == {} and missing_tables(old, new) == [] and new.images == old.images


def test_profile_numbers_are_in_the_report() -> None:
    result = _profile()
    page = parse(result.to_html())
    rows = {tuple(row) for t in page.tables for row in t}
    s = result.stats
    assert ("rows", str(s["rows"])) in rows and ("exact_duplicates", str(s["exact_duplicates"])) in rows
    assert [t[0] for t in page.tables[3:6]] == [["value", "rows"]] * 3  # labels, languages, PII
    assert {(k, str(v)) for k, v in s["labels"].items()} <= rows
    assert f"imbalance ratio (largest / smallest class): {s['imbalance_ratio']}" in page.blocks


@pytest.mark.parametrize("name", sorted(REPORTS) + ["qc"])
def test_labels_column_names_and_texts_from_data_are_escaped(name: str) -> None:
    html = _qc_html(report.generic_html) if name == "qc" else REPORTS[name]().to_html()
    assert_escaped(html, HOSTILE)
    assert parse(html).tags["script"] == 0


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_reports_are_offline_pages_with_the_shared_stylesheet(name: str) -> None:
    html = REPORTS[name]().to_html()
    assert_self_contained(html)
    assert parse(html).styles[0].strip() == stylesheet().strip()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
