"""Issue 21 in real headless Chromium (Debian's package), on fake backends: build a 3-step pipeline
visually, see the YAML follow, break the YAML and keep the graph, try it, run it on an upload and
watch it finish through a dropped connection; compare two runs and filter their disagreements;
start and stop the optimizer; ask two SQL questions with a follow-up; profile an upload; watch
the monitor.  Every page also shows a hostile string and must not run it.  Screenshots go to
artifacts/ (two of them, copied to docs/img/, are in the README)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from .conftest import ServerThread
from .test_ui_chromium import ARGS, CHROMIUM, chart, shot
from .workbench_data import (ALWAYS_GOOD_YAML, GOOD_BAD_YAML, SQL_ANSWERS, XSS, GatedFake, csv_quote, reviews_csv,
                             singers_db)

pytestmark = pytest.mark.slow

ONE_STEP = """name: reviews
steps:
  - name: sentiment
    task:
      template: "Review: {text}"
      format: text
      labels: [positive, negative]
"""
EXPECTED = {"name": "reviews", "steps": [
    {"name": "sentiment", "task": {"template": "Review: {text}", "labels": ["positive", "negative"], "format": "text"}},
    {"name": "topic", "task": {"template": "Topic of: {text}", "labels": ["film", "food"]}},
    {"name": "summary", "task": {"template": "Sentiment {sentiment}, topic {topic}: {text}",
                                 "labels": ["recommend", "avoid"]},
     "inputs": {"sentiment": "sentiment.label", "topic": "topic.label"}},
]}


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (bash scripts/system-deps.sh)")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    b = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
    yield b
    b.close()


def serve(home: Path, backend: Any, **options: Any) -> ServerThread:
    from openautoglm.serve import ServerConfig, create_app

    return ServerThread(create_app(ServerConfig(model="fake", home=home, **options), backend=backend))


def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    return page, errors


def no_xss(page: Any, where: str) -> None:
    """The hostile string is on the page as text, and never ran."""
    assert page.evaluate("window.__xss") is None
    assert 'onerror="window.__xss=1"' in page.inner_text(where) or "onerror=" in page.inner_text(where)


def csv_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- 1. the builder ----------------------------------------------------------------------------------
def node(page: Any, i: int) -> Any:
    return page.locator(".drawflow-node.task").nth(i)


def test_build_three_steps_yaml_try_and_run(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    backend = GatedFake()
    with serve(tmp_path / "home", backend, job_chunk_size=4) as srv:
        page, errors = open_page(browser, srv.base_url + "/builder?fresh=1")
        page.wait_for_selector("body[data-builder-ready='1']")
        page.fill("#yaml", ONE_STEP)
        page.wait_for_function("document.querySelector('#pipe-name').value === 'reviews'")
        assert page.locator(".drawflow-node.task").count() == 1

        # add two steps, fill them in, wire both into the last one
        page.click("#add-task")
        page.click("#add-task")
        assert page.locator(".drawflow-node.task").count() == 3
        node(page, 1).locator("[df-name]").fill("topic")
        node(page, 1).locator("[df-template]").fill("Topic of: {text}")
        node(page, 1).locator("[df-labels]").fill("film, food")
        node(page, 2).locator("[df-name]").fill("summary")
        node(page, 2).locator("[df-template]").fill("Sentiment {sentiment}, topic {topic}: {text}")
        node(page, 2).locator("[df-labels]").fill("recommend, avoid")
        page.drag_and_drop(".drawflow-node.task >> nth=0 >> .output_1", ".drawflow-node.task >> nth=2 >> .input_1")
        page.drag_and_drop(".drawflow-node.task >> nth=1 >> .output_1", ".drawflow-node.task >> nth=2 >> .input_1")
        page.wait_for_function("document.querySelector('#yaml').value.includes('topic: topic.label')")
        page.wait_for_selector("#validation .ok")
        assert yaml.safe_load(page.input_value("#yaml")) == EXPECTED
        assert "sentiment: sentiment.label" in node(page, 2).locator("[df-inputs]").input_value()

        # a problem lands on its node
        node(page, 2).locator("[df-labels]").fill("recommend")
        page.wait_for_selector(".drawflow-node.task.has-problem")
        assert "two labels" in node(page, 2).locator(".node-problem").inner_text()
        assert page.get_attribute("#problem", "data-step") == "2"
        node(page, 2).locator("[df-labels]").fill("recommend, avoid")
        page.wait_for_selector("#validation .ok")
        assert page.locator(".has-problem").count() == 0

        # a YAML syntax error keeps the graph and marks its line
        good = page.input_value("#yaml")
        lines = good.splitlines()
        bad_line = next(i for i, line in enumerate(lines, 1) if "Topic of" in line)
        lines[bad_line - 1] = lines[bad_line - 1].replace("'Topic of: {text}'", "'Topic of: {text}")
        page.fill("#yaml", "\n".join(lines) + "\n")
        page.wait_for_selector("body[data-graph-kept='1']")
        assert page.get_attribute("#gutter span.err", "data-line") is not None
        assert int(page.get_attribute("#problem", "data-line")) >= bad_line
        names = page.eval_on_selector_all(".drawflow-node.task .node-name", "els => els.map(e => e.value)")
        assert names == ["sentiment", "topic", "summary"]
        shot(page, "11-builder-yaml-error")
        page.fill("#yaml", good)
        page.wait_for_selector("body[data-graph-kept='0']")
        page.wait_for_selector("#validation .ok")
        assert page.locator(".drawflow .connection").count() == 5  # record -> 3 steps, 2 step wires
        version = page.get_attribute("body", "data-graph-version")
        page.click("#layout-btn")  # lay out by depth: the two first steps in a column, the summary after them
        page.wait_for_function(f"document.body.dataset.graphVersion !== '{version}'")
        xs = page.eval_on_selector_all(".drawflow-node.task", "els => els.map(e => e.offsetLeft)")
        assert xs[0] == xs[1] < xs[2]

        # try: each step's output on its node
        page.fill("#try-text", "A wonderful film with a great story.")
        page.click("#try-btn")
        page.wait_for_function("[...document.querySelectorAll('.drawflow-node.task .node-output')]"
                               ".every(e => e.textContent.startsWith('→'))")
        outputs = page.eval_on_selector_all(".drawflow-node.task .node-output", "els => els.map(e => e.textContent)")
        assert outputs[0].split()[1] in ("positive", "negative") and outputs[1].split()[1] in ("film", "food")
        assert outputs[2].split()[1] in ("recommend", "avoid")
        shot(page, "10-builder")

        # run it on a file and watch it finish, through a dropped connection
        rows = "".join(f'"review number {i}",{"recommend" if i % 2 else "avoid"}\n' for i in range(12))
        page.set_input_files("#run-file", csv_file(tmp_path, "reviews.csv", "text,label\n" + rows))
        page.wait_for_selector("#run-btn:not([disabled])")
        assert page.input_value("#run-label") == "label"
        backend.gate.clear()  # the run will wait for the model until the test lets it go
        page.click("#run-btn")
        page.wait_for_selector("#run-live:not([hidden])")
        page.wait_for_function("document.querySelector('#run-status').textContent === 'running'")
        page.route("**/api/runs/**", lambda route: route.abort())
        page.wait_for_selector("body[data-connection='lost']", timeout=30_000)
        assert page.is_visible("#connection") and page.inner_text("#run-status") == "running"
        assert page.inner_text("#run-link").startswith("srv-")  # the view is kept
        shot(page, "17-builder-reconnecting")
        page.unroute("**/api/runs/**")
        backend.gate.set()
        page.wait_for_selector("body[data-run-finished='1']", timeout=60_000)
        assert page.inner_text("#run-status") == "done" and page.inner_text("#run-count") == "12/12"
        assert page.get_attribute("body", "data-connection") == "ok" and not page.is_visible("#connection")
        assert page.inner_text("#run-accuracy").startswith("accuracy ")
        assert not errors, errors
        page.close()


def test_builder_escapes_what_the_yaml_says(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from openautoglm.backends.fake import FakeBackend

    hostile = (f"name: x\nsteps:\n  - name: a\n    task:\n      template: '{XSS} {{text}}'\n"
               f"      labels: [yes, no]\n      strategy: '{XSS}'\n")
    with serve(tmp_path / "home", FakeBackend()) as srv:
        page, errors = open_page(browser, srv.base_url + "/builder?fresh=1")
        page.wait_for_selector("body[data-builder-ready='1']")
        page.fill("#yaml", hostile)
        page.wait_for_selector("#problem")
        assert XSS in node(page, 0).locator("[df-template]").input_value()
        assert XSS in node(page, 0).locator("[df-strategy] option").first.text_content()  # an option's text
        assert page.evaluate("window.__xss") is None
        assert not errors, errors
        page.close()


# -- 2. comparison -----------------------------------------------------------------------------------
def test_compare_two_runs_and_filter_disagreements(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from openautoglm.backends.fake import FakeBackend

    with serve(tmp_path / "home", FakeBackend()) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=60) as client:
            up = client.post("/api/uploads", files={"file": ("r.csv", reviews_csv(40, xss=True), "text/csv")}).json()
            ids = [client.post("/api/runs", json={"upload_id": up["upload_id"], "yaml": y, "label_column": "label"})
                   .json()["run_id"] for y in (GOOD_BAD_YAML, ALWAYS_GOOD_YAML)]
            from .conftest import wait_for_run

            for run_id in ids:
                assert wait_for_run(client, run_id)["status"] == "done"
        page, errors = open_page(browser, srv.base_url + "/compare")
        page.check(f"input.pick[value='{ids[0]}']")
        page.check(f"input.pick[value='{ids[1]}']")
        assert page.inner_text("#picked").startswith(f"baseline: {ids[0]}")
        page.click("#compare-btn")
        page.wait_for_selector("body[data-compared='1']")
        accuracy = page.eval_on_selector_all("#metrics-table td.m-accuracy", "els => els.map(e => e.textContent)")
        assert accuracy == ["0.800", "0.500"]
        delta = page.inner_text("#delta-table td.d-accuracy")
        low, high = (float(x) for x in delta.split("[")[1].rstrip("]").split(","))
        assert delta.startswith("-0.300") and low <= -0.3 <= high < 0
        assert page.inner_text("#delta-table td.d-disagree") == "20"
        assert page.locator("#matrix tr[data-idx]").count() == 20 and page.inner_text("#rec-total") == "20 record(s)"
        preds = page.eval_on_selector_all("#matrix tr[data-idx]", "rows => rows.map(r => [...r.querySelectorAll('.pred')]"
                                          ".map(p => p.textContent))")
        assert all(a != b for a, b in preds)
        first = page.locator("#matrix tr[data-idx] details").first
        first.locator("summary").click()
        assert "Review:" in first.locator("pre.prompt").inner_text()
        shot(page, "12-compare")
        page.select_option("#rec-filter", "improved")
        page.wait_for_function("document.querySelector('#rec-total').textContent === '4 record(s)'")
        page.select_option("#rec-filter", "all")
        page.select_option("#rec-gold", "bad")
        page.wait_for_function("document.querySelector('#rec-total').textContent === '20 record(s)'")
        page.select_option("#rec-gold", "")
        page.fill("#rec-q", "number 3")
        page.wait_for_function("document.querySelector('#rec-total').textContent === '11 record(s)'")
        no_xss(page, "#matrix")
        assert not errors, errors
        page.close()


# -- 3. the optimizer --------------------------------------------------------------------------------
def test_start_and_stop_an_optimizer_run(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    backend = GatedFake(block_after=30)
    home = tmp_path / "home"
    (home / "pipelines").mkdir(parents=True)
    named = GOOD_BAD_YAML.replace("name: verdict\ntask:", f"name: '{XSS}'\ntask:")
    (home / "pipelines" / "verdict.yaml").write_text(named, encoding="utf-8")
    with serve(home, backend) as srv:
        page, errors = open_page(browser, srv.base_url + "/optimize")
        page.select_option("#opt-pipeline", "verdict")
        page.set_input_files("#opt-train", csv_file(tmp_path, "train.csv", reviews_csv(60)))
        page.wait_for_selector("#opt-start:not([disabled])")
        assert page.input_value("#opt-label") == "label"
        page.fill("#opt-budget", "2000")
        page.click("#opt-start")
        page.wait_for_selector("body[data-opt-status='running']")
        assert backend.waiting.wait(60)
        page.wait_for_selector("#opt-candidates tbody tr[data-stage='base']")
        page.wait_for_selector("#opt-stages li.stage.running")
        shot(page, "13-optimize-running")
        left = int(page.inner_text("#opt-left"))
        assert 0 < left < 2000
        page.click("#opt-stop")
        backend.gate.set()
        page.wait_for_selector("body[data-opt-status='stopped']", timeout=60_000)
        page.wait_for_selector("#opt-result:not([hidden])")
        assert "stopped" in page.inner_text("#opt-summary") and "- good" in page.inner_text("#opt-yaml")
        no_xss(page, "#opt-yaml")
        page.fill("#opt-save-name", "verdict-opt")
        page.click("#opt-save")
        page.wait_for_selector("#opt-save-status:has-text('saved as verdict-opt')")
        shot(page, "13-optimize")
        page.click("#opt-compare")
        page.wait_for_selector("#opt-compare-link")
        page.click("#opt-compare-link")
        page.wait_for_url("**/compare?runs=*")
        page.wait_for_selector("body[data-compared='1']", timeout=60_000)
        assert page.locator("#metrics-table tr[data-run]").count() == 2
        assert not errors, errors
        page.close()


# -- 4. SQL -------------------------------------------------------------------------------------------
def test_ask_two_sql_questions_with_a_follow_up(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from openautoglm.backends.fake import FakeBackend

    db = singers_db(tmp_path / "singers.db", xss=True)
    with serve(tmp_path / "home", FakeBackend(responses=SQL_ANSWERS), sql_dbs={"singers": f"sqlite:///{db}"}) as srv:
        page, errors = open_page(browser, srv.base_url + "/sql")
        page.wait_for_selector("#sql-schema li")
        assert "singer" in page.inner_text("#sql-schema") and str(db) not in page.content()
        page.fill("#sql-candidates", "1")
        page.click("#sql-new")
        page.wait_for_function("document.querySelector('#sql-conv').textContent.includes('singers')")
        page.fill("#sql-question", "Which singers are older than 28?")
        page.click("#sql-ask")
        page.wait_for_selector("body[data-turns='1']")
        turn = page.locator(".turn").nth(0)
        assert turn.locator("code.sql").inner_text() == SQL_ANSWERS[1]
        assert "confidence 1.00" in turn.inner_text()
        cells = turn.locator("table.rows td").all_inner_texts()
        assert cells[:2] == ["Ann", "Bob"] and XSS in cells
        turn.locator("details summary").click()
        fix = turn.locator(".attempts li")
        assert fix.count() == 2 and "no such column: nam" in fix.nth(0).inner_text() and "✓" in fix.nth(1).inner_text()
        page.fill("#sql-question", "And how old are they?")
        page.click("#sql-ask")
        page.wait_for_selector("body[data-turns='2']")
        second = page.locator(".turn").nth(1)
        assert "follow-up" in second.locator(".question").inner_text()
        assert "with corrections" not in second.locator("details summary").inner_text()
        assert second.locator("table.rows th").all_inner_texts() == ["name", "age"]
        assert second.locator("table.rows td").all_inner_texts()[:4] == ["Ann", "30", "Bob", "41"]
        shot(page, "14-sql")
        no_xss(page, "#sql-chat")
        assert not errors, errors
        page.close()


# -- 5. data ------------------------------------------------------------------------------------------
def test_upload_data_and_see_the_profile(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from openautoglm.backends.fake import FakeBackend

    text = reviews_csv(30) + csv_quote(f"mail {XSS} to ann@example.com") + ",good\n"
    with serve(tmp_path / "home", FakeBackend()) as srv:
        page, errors = open_page(browser, srv.base_url + "/data")
        page.set_input_files("#data-file", csv_file(tmp_path, "reviews.csv", text))
        page.wait_for_selector("#run-profile:not([disabled])")
        assert page.input_value("#data-text") == "text" and page.input_value("#data-label") == "label"
        page.click("#run-profile")
        page.wait_for_selector("body[data-report='profile']", timeout=120_000)
        summary = dict(zip(page.locator("#report-summary th").all_inner_texts(),
                           page.locator("#report-summary td").all_inner_texts()))
        assert summary["rows"] == "31"
        frame = page.frame_locator("#report-frame")
        frame.locator("body").wait_for()
        assert "31" in frame.locator("body").inner_text()
        assert frame.locator("img[onerror]").count() == 0  # the report escapes what it quotes
        assert page.locator("#report-downloads a").count() == 2
        assert page.evaluate("window.__xss") is None
        shot(page, "15-data")
        # a file without the columns a tool needs says which it has
        page.set_input_files("#data-file", csv_file(tmp_path, "other.csv", "review,stars\nfine,5\n"))
        page.wait_for_function("document.querySelector('#data-info').textContent.includes('other.csv')")
        page.click("#run-issues")
        page.wait_for_function("document.querySelector('#data-error').textContent.includes('it has: review, stars')")
        assert not errors, errors
        page.close()


# -- 6. monitoring -------------------------------------------------------------------------------------
def test_monitor_charts_from_the_store(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from openautoglm.backends.fake import FakeBackend

    from .conftest import wait_for_run

    hostile = GOOD_BAD_YAML.replace("name: verdict\ntask:", f"name: '{XSS}'\ntask:")
    with serve(tmp_path / "home", FakeBackend()) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=60) as client:
            up = client.post("/api/uploads", files={"file": ("r.csv", reviews_csv(40), "text/csv")}).json()
            for text in (GOOD_BAD_YAML, hostile):
                run = client.post("/api/runs", json={"upload_id": up["upload_id"], "yaml": text, "label_column": "label"})
                assert wait_for_run(client, run.json()["run_id"])["status"] == "done"
        page, errors = open_page(browser, srv.base_url + "/monitor")
        page.wait_for_selector("body[data-monitor-loaded='1']")
        assert page.inner_text("#t-requests") == "80" and page.inner_text("#t-accuracy") == "0.800"
        options = page.locator("#mon-pipeline option").all_inner_texts()
        assert options[0] == "(all)" and set(options[1:]) == {"verdict", XSS}
        for element_id, y in (("qps-chart", "throughput (records/s)"), ("mon-latency-chart", "latency per record (ms)"),
                              ("error-chart", "error rate (fraction)"),
                              ("accuracy-chart", "accuracy (fraction correct)")):
            drawn = chart(page, element_id)
            assert drawn["axes"] == ["time (local)", y] and drawn["canvas"][0] > 200
        assert chart(page, "mon-latency-chart")["legend"] == ["P50", "P95", "P99"]
        page.select_option("#mon-pipeline", "verdict")
        page.wait_for_function("document.querySelector('#t-requests').textContent === '40'")
        page.select_option("#mon-window", "day")
        page.wait_for_function("charts['qps-chart'].data[0].length === 96")
        shot(page, "16-monitor")
        assert page.evaluate("window.__xss") is None
        assert not errors, errors
        page.close()
