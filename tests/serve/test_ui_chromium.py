"""The web UI in real headless Chromium (Debian's package) on the real embedded model:
create a task from the form, see a validation error at its line, try it, save it, start a run
on a small file, see it finish with metrics, open a trace.  Screenshots go to artifacts/.
Then Chromium as an attacker's tool: a page of another origin posting to the server, and a
rebound host name (Chromium's resolver rules) reaching it; both are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from .conftest import REPO, SENTIMENT_YAML, ServerThread

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
REVIEWS = REPO / "examples" / "server" / "reviews.csv"


ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def playwright() -> Iterator[object]:
    """One Playwright per module (the sync API cannot nest)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (bash scripts/system-deps.sh)")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright) -> Iterator[object]:  # type: ignore[no-untyped-def]
    b = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
    yield b
    b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    local = pytest.importorskip("openautoglm.backends.local")
    from openautoglm.serve import ServerConfig, create_app

    home = tmp_path_factory.mktemp("ui")
    app = create_app(ServerConfig(model="local", home=home), backend=local.LocalBackend())
    with ServerThread(app) as srv:
        yield srv


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


LATENCY_COLORS = {"P50": "#2f6fde", "P95": "#e0a100", "P99": "#c0362c"}
#: canvas pixels (opaque) within a small distance of each colour: how much of each series is visible
COLOR_PIXELS = """(box, colors) => {
  const canvas = box.querySelector("canvas");
  const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  return colors.map((hex) => {
    const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
    let n = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (px[i + 3] > 200 && Math.abs(px[i] - r) + Math.abs(px[i + 1] - g) + Math.abs(px[i + 2] - b) < 30) n++;
    }
    return n;
  });
}"""


def chart(page, element_id: str) -> dict:  # type: ignore[no-untyped-def]
    """A uPlot chart as drawn: canvas size, axis titles, legend entries."""
    box = f"#{element_id}"
    return {
        "canvas": page.eval_on_selector(f"{box} canvas", "c => [c.width, c.height]"),
        "axes": page.evaluate("id => charts[id].axes.map(a => a.label)", element_id),
        "legend": page.eval_on_selector_all(f"{box} .u-legend .u-label", "els => els.map(e => e.textContent)"),
    }


def assert_latency_chart(page) -> None:  # type: ignore[no-untyped-def]
    """Axes with units; P50, P95 and P99 in the legend and each visible on the canvas."""
    lat = chart(page, "latency-chart")
    assert lat["canvas"][0] > 200 and lat["canvas"][1] > 100
    assert lat["axes"] == ["time since start (s)", "latency per record (ms)"]
    assert lat["legend"] == ["P50", "P95", "P99"]
    pixels = page.eval_on_selector("#latency-chart", COLOR_PIXELS, list(LATENCY_COLORS.values()))
    assert all(n > 20 for n in pixels), dict(zip(LATENCY_COLORS, pixels))


def test_ui_task_try_run_trace(browser, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.base_url + "/?fresh=1")

    # 1. build a classification task from the form
    page.fill("#form-name", "sentiment")
    page.fill("#form-labels", "positive, negative")
    page.fill("#form-instruction", "Is this movie review positive or negative?")
    page.click("#form-btn")
    page.wait_for_selector("#validation .ok")
    assert "labels: positive, negative" in page.inner_text("#validation")
    good_yaml = page.input_value("#yaml")

    # 2. a mistake is reported live, at its line
    assert "labels: [positive, negative]" in good_yaml
    bad_line = next(i for i, line in enumerate(good_yaml.splitlines(), 1) if "labels:" in line)
    broken = good_yaml.replace("[positive, negative]", "[positive]")
    page.fill("#yaml", broken)
    page.wait_for_selector("#problem")
    assert page.get_attribute("#problem", "data-line") == str(bad_line)
    assert "two labels" in page.inner_text("#problem")
    assert page.get_attribute("#gutter span.err", "data-line") == str(bad_line)
    shot(page, "01-editor-validation-error")
    page.fill("#yaml", good_yaml)
    page.wait_for_selector("#validation .ok")

    # 3. try it on a text: label, confidence bars, the exact prompt
    page.fill("#try-text", "An absolute delight, wonderful acting and a great story.")
    page.click("#try-btn")
    page.wait_for_selector("#try-result:not([hidden])", timeout=60_000)
    label = page.inner_text("#try-label")
    assert label in ("positive", "negative")
    widths = page.eval_on_selector_all(".bars .fill", "els => els.map(e => parseFloat(e.style.width))")
    assert len(widths) == 2 and abs(sum(widths) - 100) < 0.5 and max(widths) >= 50
    prompt = page.inner_text("#try-prompt")
    # the exact prompt: the embedded model's label form (plain text ending in the preset's cue, no chat markup)
    assert "An absolute delight, wonderful acting" in prompt and "Sentiment:" in prompt
    assert "<|im_start|>" not in prompt
    assert "method: logprob" in page.inner_text("#try-method")
    shot(page, "02-editor-try")

    # 4. save it, then start a run on a small file
    page.fill("#save-name", "sentiment")
    page.click("#save-btn")
    page.wait_for_selector("#save-status:has-text('saved as sentiment')")
    page.goto(server.base_url + "/runs")
    page.select_option("#pipeline", "sentiment")
    page.set_input_files("#file", str(REVIEWS))
    page.wait_for_selector("#start-btn:not([disabled])")
    assert page.input_value("#col-text") == "text" and page.input_value("#label-col") == "label"
    shot(page, "03-runs-start")
    page.click("#start-btn")
    page.wait_for_url("**/runs/srv-*")

    # 5. the run finishes and shows metrics
    page.wait_for_selector("body[data-run-finished='1']", timeout=120_000)
    assert page.inner_text("#run-status") == "done"
    accuracy = float(page.inner_text("#m-accuracy"))
    assert 0.0 <= accuracy <= 1.0
    n_rows = len(REVIEWS.read_text(encoding="utf-8").splitlines()) - 1
    assert page.inner_text("#run-count").startswith(f"{n_rows}/{n_rows}")
    cells = page.eval_on_selector_all("#confusion td", "els => els.map(e => Number(e.textContent))")
    assert sum(cells) == n_rows
    calibration, throughput = chart(page, "calibration"), chart(page, "throughput-chart")
    assert calibration["axes"] == ["confidence (probability)", "accuracy (fraction correct)"]
    assert calibration["legend"] == ["accuracy per bin", "perfect calibration"] and calibration["canvas"][0] > 200
    assert throughput["axes"] == ["time since start (s)", "throughput (records/s)"] and throughput["canvas"][1] > 100
    assert_latency_chart(page)
    assert page.locator("#records tbody tr").count() == n_rows
    assert "/" in page.inner_text("#m-latency")
    page.select_option("#record-filter", "wrong")
    page.wait_for_function(f"document.querySelectorAll('#records tbody tr').length === "
                           f"{round((1 - accuracy) * n_rows)}")
    shot(page, "04-run-detail")
    page.locator("#latency-chart").screenshot(path=str(ARTIFACTS / "04b-latency-chart.png"))

    # 6. open a trace of that run
    page.click("a[href^='/traces?run_id=']")
    page.wait_for_selector("#traces-table tbody tr a")
    page.click("#traces-table tbody tr a")
    page.wait_for_selector("#trace-detail")
    assert "Text: " in page.inner_text("#trace-prompt") and page.inner_text("#trace-prompt").endswith("Sentiment:")
    assert "positive" in page.inner_text("#trace-response")
    shot(page, "05-trace")

    # 7. search the traces
    page.goto(server.base_url + "/traces")
    page.fill("#trace-q", "delight")
    page.click("#trace-search button")
    page.wait_for_selector("#traces-table tbody tr a")
    assert "delight" in page.inner_text("#traces-table").lower()
    assert not errors, errors
    page.close()


def test_run_charts_on_many_chunks(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A run of 15 chunks (fake backend): lines over time, and the three latency percentiles,
    which coincide when a window holds one chunk, all stay visible."""
    import httpx

    from openautoglm.backends.fake import FakeBackend
    from openautoglm.serve import ServerConfig, create_app

    rows = "".join(f"review number {i},{'positive' if i % 3 else 'negative'}\n" for i in range(60))
    app = create_app(ServerConfig(model="fake", home=tmp_path, job_chunk_size=4), backend=FakeBackend(delay_s=0.002))
    with ServerThread(app) as srv:
        with httpx.Client(base_url=srv.base_url) as client:
            upload = client.post("/api/uploads", files={"file": ("r.csv", "text,label\n" + rows, "text/csv")}).json()
            run = client.post("/api/runs", json={"upload_id": upload["upload_id"], "yaml": SENTIMENT_YAML,
                                                 "columns": {"text": "text"}, "label_column": "label"}).json()
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{srv.base_url}/runs/{run['run_id']}")
        page.wait_for_selector("body[data-run-finished='1']", timeout=60_000)
        assert page.inner_text("#run-status") == "done"
        assert_latency_chart(page)
        timing = httpx.get(f"{srv.base_url}/api/runs/{run['run_id']}/report").json()["timing"]
        assert len(timing["series"]) == 15 and len(timing["windows"]) >= 2
        page.locator("#latency-chart").screenshot(path=str(ARTIFACTS / "06-latency-chart-many-chunks.png"))
        page.close()
    assert not errors, errors


# -- a real browser as the attacker's tool ----------------------------------------------------------------
def _attacker_site(target_url: str) -> object:
    """A page on another origin that, once opened, posts a file to the target server (no-cors)."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    page = f"""<!doctype html><title>cat pictures</title><script>
const data = new FormData();
data.append("file", new Blob(["text\\nplanted by another site\\n"], {{type: "text/csv"}}), "x.csv");
fetch("{target_url}/api/uploads", {{method: "POST", body: data, mode: "no-cors"}})
  .finally(() => {{ document.title = "sent"; }});
</script>"""
    return Starlette(routes=[Route("/", lambda request: HTMLResponse(page))])


@pytest.fixture()
def target_server(tmp_path: Path) -> Iterator[tuple[ServerThread, Path]]:
    from openautoglm.backends.fake import FakeBackend
    from openautoglm.serve import ServerConfig, create_app

    home = tmp_path / "target"
    app = create_app(ServerConfig(model="fake", home=home), backend=FakeBackend())
    with ServerThread(app) as srv:
        yield srv, home


def test_another_site_cannot_post_to_the_server(browser, target_server) -> None:  # type: ignore[no-untyped-def]
    srv, home = target_server
    with ServerThread(_attacker_site(srv.base_url)) as evil:
        page = browser.new_page()
        page.goto(evil.base_url.replace("127.0.0.1", "localhost") + "/")  # another origin than the server's
        page.wait_for_function("document.title === 'sent'", timeout=30_000)
        page.close()
    uploads = home / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())


def test_a_rebound_name_is_refused(playwright, target_server) -> None:  # type: ignore[no-untyped-def]
    """DNS rebinding, simulated with Chromium's resolver rules: attacker.test resolves to 127.0.0.1."""
    srv, _ = target_server
    b = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                   args=[*ARGS, "--host-resolver-rules=MAP attacker.test 127.0.0.1"])
    try:
        page = b.new_page()
        rebound = page.goto(srv.base_url.replace("127.0.0.1", "attacker.test") + "/api/pipelines")
        own = page.goto(srv.base_url + "/api/pipelines")
    finally:
        b.close()
    assert rebound is not None and rebound.status == 400
    assert own is not None and own.status == 200
