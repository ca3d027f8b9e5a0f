"""The task/pipeline API on the fake backend: validation with lines, try with the exact prompt,
saved pipelines, uploads, background runs (progress, report, filters, download, cancel), traces."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from .conftest import SENTIMENT_YAML, make_app, robust_fake, wait_for_run

CSV = "review,gold\ngood positive film,positive\nbad negative mess,negative\nplain,positive\nnegative awful,negative\n"


def _upload(client, name: str = "reviews.csv", data: bytes = CSV.encode()) -> dict:  # type: ignore[no-untyped-def]
    r = client.post("/api/uploads", files={"file": (name, data, "text/plain")})
    assert r.status_code == 200, r.text
    return r.json()


def test_validate_points_at_the_line(client) -> None:  # type: ignore[no-untyped-def]
    ok = client.post("/api/validate", json={"yaml": SENTIMENT_YAML}).json()
    assert ok["valid"] and ok["inputs"] == ["text"] and ok["labels"] == ["positive", "negative"]
    bad_labels = SENTIMENT_YAML.replace("[positive, negative]", "[positive]")
    p = client.post("/api/validate", json={"yaml": bad_labels}).json()["problems"][0]
    assert p["line"] == 5 and "two labels" in p["message"] and p["field"] == "task.labels"
    unknown = SENTIMENT_YAML + "colour: red\n"
    p = client.post("/api/validate", json={"yaml": unknown}).json()["problems"][0]
    assert p["line"] == 6 and "colour" in p["message"]
    broken = "name: x\ntask:\n  template: 'unclosed\n  labels: [a, b]\n"
    p = client.post("/api/validate", json={"yaml": broken}).json()["problems"][0]
    assert "malformed YAML" in p["message"] and p["line"] is not None


def test_form_builds_valid_yaml_and_try_shows_prompt(client) -> None:  # type: ignore[no-untyped-def]
    form = {"name": "topic", "labels": ["sports", "politics", "tech"], "instruction": "What is the topic?"}
    built = client.post("/api/task-yaml", json=form).json()
    assert built["problems"] == [] and "sports" in built["yaml"] and "{text}" in built["yaml"]
    out = client.post("/api/try", json={"yaml": built["yaml"], "inputs": {"text": "the tech news of today"}}).json()
    result = out["result"]
    from openautoglm.backends.fake import FakeBackend
    from openautoglm.core.config import parse_pipeline_yaml
    from openautoglm.core.pipeline import Pipeline

    direct = Pipeline.from_config(parse_pipeline_yaml(built["yaml"]), model=FakeBackend(), store=False)
    assert result == direct.run(text="the tech news of today")  # the server adds nothing to the answer
    assert abs(sum(result["scores"].values()) - 1) < 1e-9 and result["method"].startswith("logprob")
    (call,) = out["calls"]
    assert call["kind"] == "score" and "the tech news of today" in json.dumps(call["prompt"])
    assert call["params"]["continuations"] == ["sports", "politics", "tech"]
    missing = client.post("/api/try", json={"yaml": built["yaml"], "inputs": {"body": "x"}})
    assert missing.status_code == 400 and "'text'" in missing.json()["error"]["message"]
    invalid = client.post("/api/try", json={"yaml": "name: x\n", "inputs": {"text": "x"}})
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "invalid_pipeline"


def test_saved_pipelines(client) -> None:  # type: ignore[no-untyped-def]
    assert client.put("/api/pipelines/sentiment", json={"yaml": SENTIMENT_YAML}).json()["saved"]
    listed = client.get("/api/pipelines").json()["pipelines"]
    assert [(p["name"], p["valid"], p["labels"]) for p in listed] == [("sentiment", True, ["positive", "negative"])]
    assert client.get("/api/pipelines/sentiment").json()["yaml"] == SENTIMENT_YAML
    run = client.post("/api/pipelines/sentiment/run", json={"inputs": {"text": "so negative"}}).json()
    assert set(run["result"]["scores"]) == {"positive", "negative"} and "calls" not in run
    bad = client.put("/api/pipelines/x", json={"yaml": "name: x\n"})
    assert bad.status_code == 400 and "step" in bad.json()["error"]["message"]
    assert client.put("/api/pipelines/..%2Fescape", json={"yaml": SENTIMENT_YAML}).status_code in (400, 404)
    assert client.get("/api/pipelines/nope").status_code == 404


def test_upload_errors_name_the_file_and_fix(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/uploads", files={"file": ("data.xlsx", b"PK..", "application/octet-stream")})
    assert r.status_code == 400 and ".csv" in r.json()["error"]["message"]
    r = client.post("/api/uploads", files={"file": ("latin.csv", "text\ncaf\xe9\n".encode("latin-1"), "text/csv")})
    err = r.json()["error"]["message"]
    assert r.status_code == 400 and "latin.csv" in err and "UTF-8" in err.upper() and "iconv" in err
    r = client.post("/api/uploads", files={"file": ("empty.csv", b"", "text/csv")})
    assert r.status_code == 400 and "empty.csv" in r.json()["error"]["message"]
    up = _upload(client)
    assert up["rows"] == 4 and up["columns"] == ["review", "gold"] and len(up["preview"]) == 4
    r = client.post("/api/runs", json={"upload_id": up["upload_id"], "yaml": SENTIMENT_YAML})
    assert r.status_code == 400 and "'text'" in r.json()["error"]["message"] and "review" in r.json()["error"]["message"]
    r = client.post("/api/runs", json={"upload_id": up["upload_id"], "yaml": SENTIMENT_YAML,
                                       "columns": {"text": "nope"}})
    assert r.status_code == 400 and "nope" in r.json()["error"]["message"]
    assert client.post("/api/runs", json={"upload_id": "deadbeef", "yaml": SENTIMENT_YAML}).status_code == 404


def test_background_run_report_filters_and_downloads(client) -> None:  # type: ignore[no-untyped-def]
    up = _upload(client)
    started = client.post("/api/runs", json={"upload_id": up["upload_id"], "yaml": SENTIMENT_YAML,
                                             "columns": {"text": "review"}, "label_column": "gold"}).json()
    assert started["status"] in ("queued", "running", "done") and started["total"] == 4
    run = wait_for_run(client, started["run_id"])
    assert run["status"] == "done" and run["done"] == 4 and run["progress"] == 1.0
    report = client.get(f"/api/runs/{run['run_id']}/report").json()
    q = report["quality"]
    preds = client.get(f"/api/runs/{run['run_id']}/records").json()["records"]
    correct = [p["predicted"] == p["gold"] for p in preds]
    assert q["accuracy"] == sum(correct) / 4 and q["n"] == 4
    assert sum(map(sum, q["confusion_matrix"]["matrix"])) == 4
    assert q["calibration"]["n"] == 4 and 0 <= q["calibration"]["ece"] <= 1
    t = report["timing"]
    assert t["records"] == 4 and t["p50_ms"] <= t["p95_ms"] <= t["p99_ms"] and t["records_per_s"] > 0
    assert sum(w["records"] for w in t["windows"]) == 4
    assert all(w["p50_ms"] <= w["p95_ms"] <= w["p99_ms"] for w in t["windows"])
    wrong = client.get(f"/api/runs/{run['run_id']}/records?filter=wrong").json()
    assert wrong["total"] == correct.count(False) == report["counts"]["wrong"]
    low = client.get(f"/api/runs/{run['run_id']}/records?filter=low&threshold=0.99").json()
    assert low["total"] == sum(p["confidence"] < 0.99 for p in preds)
    lines = client.get(f"/api/runs/{run['run_id']}/results?format=jsonl").text.splitlines()
    rows = [json.loads(x) for x in lines]
    assert [r["idx"] for r in rows] == [0, 1, 2, 3] and rows[1]["input"]["review"] == "bad negative mess"
    table = list(csv.DictReader(io.StringIO(client.get(f"/api/runs/{run['run_id']}/results?format=csv").text)))
    assert [r["predicted"] for r in table] == [p["predicted"] for p in preds] and "p(positive)" in table[0]
    listed = client.get("/api/runs").json()["runs"]
    assert listed[0]["run_id"] == run["run_id"]
    traces = client.get(f"/api/traces?run_id={run['run_id']}").json()["traces"]
    assert len(traces) == 4 and {t["record_key"] for t in traces} == {"0", "1", "2", "3"}


@pytest.mark.slow
def test_cancel_stops_a_running_job_and_resume_finishes_it(tmp_path: Path) -> None:
    app = make_app(tmp_path, backend=robust_fake(delay_s=0.05), job_chunk_size=2)
    rows = "text\n" + "".join(f"review {i}\n" for i in range(200))
    with TestClient(app) as client:
        up = _upload(client, "many.csv", rows.encode())
        run = client.post("/api/runs", json={"upload_id": up["upload_id"], "yaml": SENTIMENT_YAML}).json()
        deadline = time.monotonic() + 30
        while client.get(f"/api/runs/{run['run_id']}").json()["done"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        client.post(f"/api/runs/{run['run_id']}/cancel")
        final = wait_for_run(client, run["run_id"])
        assert final["status"] == "cancelled" and 2 <= final["done"] < 200
        done = final["done"]
        time.sleep(0.3)
        assert client.get(f"/api/runs/{run['run_id']}").json()["done"] == done  # really stopped
        resumed = client.post(f"/api/runs/{run['run_id']}/resume").json()
        assert resumed["status"] in ("queued", "running", "done")
        again = client.post(f"/api/runs/{run['run_id']}/resume")
        assert again.status_code == 400 or again.json()["status"] == "done"
        final = wait_for_run(client, run["run_id"], timeout=120)
        assert final["status"] == "done" and final["done"] == 200
        rows = client.get(f"/api/runs/{run['run_id']}/results").text.splitlines()
        assert len(rows) == 200  # resumed, not redone: one row per record
        calls = client.get(f"/api/traces?run_id={run['run_id']}&limit=1000").json()["traces"]
        assert len(calls) == 200  # each record scored once across the two attempts


def test_traces_search_and_detail(client) -> None:  # type: ignore[no-untyped-def]
    client.post("/api/try", json={"yaml": SENTIMENT_YAML, "inputs": {"text": "zebra crossing review"}})
    client.post("/api/try", json={"yaml": SENTIMENT_YAML, "inputs": {"text": "another text"}})
    found = client.get("/api/traces?q=zebra").json()["traces"]
    assert len(found) == 1 and "zebra" in found[0]["prompt"]
    detail = client.get(f"/api/traces/{found[0]['id']}").json()
    assert detail["kind"] == "score" and detail["prompt"][0]["content"].startswith("Review: zebra")
    assert set(detail["response"]) == {"positive", "negative"} and detail["prompt_tokens"] > 0
    assert client.get("/api/traces/999999").status_code == 404
    assert client.get("/api/traces", params={"q": "zebra\x00crossing"}).json()["traces"][0]["id"] == found[0]["id"]
    page = client.get(f"/traces/{found[0]['id']}")
    assert page.status_code == 200 and "zebra crossing review" in page.text
    assert "zebra" in client.get("/traces?q=zebra").text


def test_openai_calls_are_traced_and_models_listed(client) -> None:  # type: ignore[no-untyped-def]
    client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "unicorn question"}]})
    (row,) = client.get("/api/traces?q=unicorn").json()["traces"]
    assert row["step"] == "/v1/chat/completions" and row["kind"] == "generate"
    models = client.get("/api/models").json()
    assert models["served"]["id"] == "fake" and models["served"]["micro_batching"] is True
    assert any(m["model"] == "local" for m in models["available"])
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["queue_depth"] == 0


def test_runs_left_running_by_a_stopped_server_show_interrupted_and_resume(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        up = _upload(client)
        run = client.post("/api/runs", json={"upload_id": up["upload_id"], "yaml": SENTIMENT_YAML,
                                             "columns": {"text": "review"}}).json()
        wait_for_run(client, run["run_id"])
        state = client.app.state.server  # type: ignore[attr-defined]
        state.store.execute("UPDATE serve_jobs SET status = 'running' WHERE run_id = ?", (run["run_id"],))
        state.store.execute("DELETE FROM records WHERE run_id = ? AND idx >= 2", (run["run_id"],))
    with TestClient(make_app(tmp_path)) as client:  # a new server process on the same project
        again = client.get(f"/api/runs/{run['run_id']}").json()
        assert again["status"] == "interrupted"
        client.post(f"/api/runs/{run['run_id']}/resume")
        final = wait_for_run(client, run["run_id"])
        assert final["status"] == "done" and final["done"] == 4
        assert len(client.get(f"/api/runs/{run['run_id']}/results").text.splitlines()) == 4
        calls = client.get(f"/api/traces?run_id={run['run_id']}").json()["traces"]
        assert sorted(c["record_key"] for c in calls) == ["0", "1", "2", "2", "3", "3"]  # only the lost two re-ran
