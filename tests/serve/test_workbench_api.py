"""Issue 21, the workbench's API on the fake backend: the builder's YAML <-> graph conversion,
run comparison (metrics, bootstrap intervals, disagreements), monitoring from the store, and the
guards on the new routes.  The optimizer, SQL and data routes are in test_workbench_jobs.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from .conftest import make_app, wait_for_run
from .workbench_data import ALWAYS_GOOD_YAML, GOOD_BAD_YAML, reviews_csv

THREE_STEPS = {
    "pipeline": {"name": "reviews", "description": "three steps"},
    "steps": [
        {"name": "sentiment", "template": "Review: {text}", "labels": ["positive", "negative"]},
        {"name": "topic", "template": "Topic of: {text}", "labels": ["film", "food"], "strategy": "self_consistency"},
        {"name": "summary", "template": "Sentiment {sentiment}, topic {topic}: {text}", "labels": ["recommend", "avoid"],
         "inputs": {"sentiment": "sentiment.label", "topic": "topic.label"}},
    ],
}


@pytest.fixture()
def client(tmp_path: Path) -> Any:
    with TestClient(make_app(tmp_path)) as c:
        yield c


# -- builder ---------------------------------------------------------------------------------------
def test_graph_to_yaml_is_a_valid_pipeline_and_reads_back_the_same(client) -> None:  # type: ignore[no-untyped-def]
    out = client.post("/api/builder/yaml", json={"graph": THREE_STEPS}).json()
    assert out["problems"] == [] and out["inputs"] == ["text"]
    data = yaml.safe_load(out["yaml"])
    assert [s["name"] for s in data["steps"]] == ["sentiment", "topic", "summary"]
    assert data["steps"][2]["inputs"] == {"sentiment": "sentiment.label", "topic": "topic.label"}
    assert data["steps"][1]["task"]["strategy"] == "self_consistency" and "strategy" not in data["steps"][0]["task"]
    assert client.post("/api/validate", json={"yaml": out["yaml"]}).json()["valid"]
    back = client.post("/api/builder/graph", json={"yaml": out["yaml"]}).json()
    assert back["ok"] and back["problems"] == []
    summary = back["graph"]["steps"][2]
    assert summary["reads_steps"] == ["sentiment", "topic"] and summary["reads_fields"] == ["text"]
    assert [s["line"] for s in back["graph"]["steps"]] == [s["line"] for s in out["steps"]]
    again = client.post("/api/builder/yaml", json={"graph": {"pipeline": back["graph"]["pipeline"], "steps": [
        {k: v for k, v in s.items() if k not in ("line", "reads_steps", "reads_fields")}
        for s in back["graph"]["steps"]], "form": back["graph"]["form"]}}).json()
    assert again["yaml"] == out["yaml"]  # a fixed point: YAML -> graph -> YAML changes nothing


def test_fields_without_a_control_survive_the_round_trip(client) -> None:  # type: ignore[no-untyped-def]
    text = ("name: keep\nbatch_size: 16\nsteps:\n  - name: s\n    task:\n      template: 'R: {text}'\n"
            "      labels: [a, b]\n      examples: [{text: x, output: a}]\n      verbalizers: {a: yes, b: no}\n"
            "      strategy: {name: self_consistency, n: 3}\n")
    graph = client.post("/api/builder/graph", json={"yaml": text}).json()["graph"]
    steps = [{k: v for k, v in s.items() if k not in ("line", "reads_steps", "reads_fields")} for s in graph["steps"]]
    out = client.post("/api/builder/yaml", json={"graph": {"pipeline": graph["pipeline"], "steps": steps,
                                                           "form": graph["form"]}}).json()
    assert yaml.safe_load(out["yaml"]) == yaml.safe_load(text)


def test_a_syntax_error_names_its_line_and_no_graph(client) -> None:  # type: ignore[no-untyped-def]
    broken = "name: x\nsteps:\n  - name: a\n    task:\n      template: 'unclosed\n      labels: [a, b]\n"
    out = client.post("/api/builder/graph", json={"yaml": broken}).json()
    assert out["ok"] is False and "graph" not in out
    assert out["syntax_error"]["line"] == 7 and "malformed YAML" in out["syntax_error"]["message"]
    shape = client.post("/api/builder/graph", json={"yaml": "- just\n- a list\n"}).json()
    assert shape["ok"] is False and shape["syntax_error"]["line"] == 1


def test_problems_point_at_their_node(client) -> None:  # type: ignore[no-untyped-def]
    graph = json.loads(json.dumps(THREE_STEPS))
    graph["steps"][2]["labels"] = ["recommend"]
    out = client.post("/api/builder/yaml", json={"graph": graph}).json()
    (problem,) = out["problems"]
    assert problem["step"] == 2 and "two labels" in problem["message"] and problem["line"] > out["steps"][2]["line"]
    graph["steps"][2]["labels"] = ["recommend", "avoid"]
    graph["steps"][1]["schema_text"] = "{not: [valid"
    bad_schema = client.post("/api/builder/yaml", json={"graph": graph}).json()
    assert bad_schema["yaml"] is None and bad_schema["problems"][0]["step"] == 1
    shorthand = "name: one\ntask:\n  template: 'R: {text}'\n  labels: [a]\n"
    (p,) = client.post("/api/builder/graph", json={"yaml": shorthand}).json()["problems"]
    assert p["step"] == 0 and p["field"] == "task.labels"


def test_call_steps_offer_only_the_operators_callables(tmp_path: Path) -> None:
    shout = "tests.serve.helpers_calls:shout"
    with TestClient(make_app(tmp_path, allow_calls=[shout])) as c:
        assert c.get("/api/builder/options").json()["calls"] == [shout]
        ok = {"pipeline": {"name": "c"}, "steps": [{"name": "up", "kind": "call", "call": shout}]}
        assert c.post("/api/builder/yaml", json={"graph": ok}).json()["problems"] == []
        evil = {"pipeline": {"name": "c"}, "steps": [{"name": "up", "kind": "call", "call": "subprocess:run"}]}
        (p,) = c.post("/api/builder/yaml", json={"graph": evil}).json()["problems"]
        assert p["step"] == 0 and "--allow-call subprocess:run" in (p["hint"] or "")
    with TestClient(make_app(tmp_path / "other")) as c:
        assert c.get("/api/builder/options").json()["calls"] == []


def test_sub_pipeline_steps_resolve_only_inside_the_pipelines_folder(client) -> None:  # type: ignore[no-untyped-def]
    client.put("/api/pipelines/verdict", json={"yaml": GOOD_BAD_YAML})
    assert "verdict.yaml" in client.get("/api/builder/options").json()["pipelines"]
    graph = {"pipeline": {"name": "outer"}, "steps": [{"name": "inner", "kind": "pipeline", "pipeline": "verdict.yaml"}]}
    ok = client.post("/api/builder/yaml", json={"graph": graph}).json()
    assert ok["problems"] == []  # (its inputs: core.Pipeline.required_inputs does not look into sub-pipelines)
    out = client.post("/api/try", json={"yaml": ok["yaml"], "inputs": {"text": "a good film"}}).json()
    assert out["result"]["label"] == "good"
    graph["steps"][0]["pipeline"] = "../store.db"
    (p,) = client.post("/api/builder/yaml", json={"graph": graph}).json()["problems"]
    assert p["step"] == 0 and "outside the pipelines folder" in p["message"]


def test_one_plain_step_is_written_as_the_task_shorthand(client) -> None:  # type: ignore[no-untyped-def]
    one = {"pipeline": {"name": "s"}, "steps": [{"name": "s", "template": "R: {text}", "labels": ["a", "b"]}]}
    text = client.post("/api/builder/yaml", json={"graph": one}).json()["yaml"]
    assert yaml.safe_load(text) == {"name": "s", "task": {"name": "s", "template": "R: {text}", "labels": ["a", "b"]}}


# -- comparison ------------------------------------------------------------------------------------
def _two_runs(client: Any, n: int = 40) -> tuple[str, str]:
    up = client.post("/api/uploads", files={"file": ("r.csv", reviews_csv(n), "text/csv")}).json()
    ids = []
    for text in (GOOD_BAD_YAML, ALWAYS_GOOD_YAML):
        run = client.post("/api/runs", json={"upload_id": up["upload_id"], "yaml": text, "label_column": "label"})
        ids.append(run.json()["run_id"])
    for run_id in ids:
        assert wait_for_run(client, run_id)["status"] == "done"
    return ids[0], ids[1]


def test_compare_reports_metrics_deltas_and_intervals(client) -> None:  # type: ignore[no-untyped-def]
    from sklearn.metrics import f1_score

    a, b = _two_runs(client)
    out = client.get(f"/api/compare?runs={a}&runs={b}").json()
    first, second = out["runs"]
    assert first["metrics"]["accuracy"] == 0.8 and second["metrics"]["accuracy"] == 0.5  # see reviews_csv
    gold = [r["gold"] for r in client.get(f"/api/runs/{a}/records?limit=100").json()["records"]]
    pred = [r["predicted"] for r in client.get(f"/api/runs/{b}/records?limit=100").json()["records"]]
    assert second["metrics"]["macro_f1"] == round(f1_score(gold, pred, average="macro", labels=["good", "bad"]), 4)
    assert first["cost"]["calls"] == 40 and second["cost"]["prompt_tokens"] > first["cost"]["prompt_tokens"]
    assert first["latency"]["p50_ms"] is not None
    (delta,) = out["deltas"]
    boot = delta["bootstrap"]["accuracy"]
    assert boot["delta"] == -0.3 and boot["ci95"][0] <= -0.3 <= boot["ci95"][1] and boot["ci95"][1] < 0
    assert delta["disagreements"] == 20 and delta["calls"] == 0
    assert client.get(f"/api/compare?runs={a},{b}").json() == out  # seeded: the same intervals again
    other = client.get(f"/api/compare?runs={a},{b}&seed=7").json()["deltas"][0]["bootstrap"]["accuracy"]
    assert other["delta"] == -0.3


def test_compare_filters_disagreements_with_prompts_side_by_side(client) -> None:  # type: ignore[no-untyped-def]
    a, b = _two_runs(client)
    base = f"/api/compare/records?runs={a}&runs={b}"
    disagree = client.get(base).json()
    assert disagree["total"] == 20 and all(r["answers"][0]["predicted"] != r["answers"][1]["predicted"]
                                           for r in disagree["records"])
    first = disagree["records"][0]
    prompts = [ans["calls"][0]["prompt"] for ans in first["answers"]]
    assert first["text"] in prompts[0] and prompts[1].startswith("A good question.")
    improved = client.get(base + "&filter=improved").json()
    assert improved["total"] == 4  # the noisy "good" golds of even rows: wrong for a, right for b
    assert all(r["answers"][0]["correct"] is False and r["answers"][1]["correct"] for r in improved["records"])
    assert client.get(base + "&filter=regressed").json()["total"] == 16
    only_bad = client.get(base + "&filter=all&gold=bad").json()
    assert only_bad["total"] == 20 and {r["gold"] for r in only_bad["records"]} == {"bad"}
    search = client.get(base + "&filter=all&q=number 3").json()
    assert {r["idx"] for r in search["records"]} == {3, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39}


def test_compare_refuses_runs_over_different_records(client) -> None:  # type: ignore[no-untyped-def]
    a, _ = _two_runs(client, 20)
    up = client.post("/api/uploads", files={"file": ("s.csv", reviews_csv(12), "text/csv")}).json()
    c = client.post("/api/runs", json={"upload_id": up["upload_id"], "yaml": GOOD_BAD_YAML}).json()["run_id"]
    wait_for_run(client, c)
    r = client.get(f"/api/compare?runs={a}&runs={c}")
    assert r.status_code == 400 and "different records" in r.json()["error"]["message"]
    assert client.get(f"/api/compare?runs={a}").status_code == 400
    assert client.get(f"/api/compare?runs={a}&runs=srv-nope").status_code == 404


# -- monitoring ------------------------------------------------------------------------------------
def test_monitor_counts_runs_and_requests_per_pipeline(client) -> None:  # type: ignore[no-untyped-def]
    _two_runs(client, 20)
    client.put("/api/pipelines/verdict", json={"yaml": GOOD_BAD_YAML})
    for _ in range(3):
        client.post("/api/pipelines/verdict/run", json={"inputs": {"text": "a good one"}})
    client.post("/api/pipelines/verdict/run", json={"inputs": {"nope": "x"}})  # 400 before the model: no event
    out = client.get("/api/monitor?window=hour&pipeline=verdict").json()
    assert out["pipelines"] == ["verdict"] and out["bucket_s"] == 60 and len(out["series"]["t"]) == 60
    assert out["totals"]["requests"] == 43 and out["totals"]["errors"] == 0
    # accuracy over the runs' records with gold: 16/20 for one run, 10/20 for the other
    assert out["totals"]["accuracy"] == round(26 / 40, 4)
    s = out["series"]
    assert sum(s["requests"]) == 43 and max(s["qps"]) > 0 and sum(s["gold"]) == 40
    busy = [i for i, n in enumerate(s["requests"]) if n]
    assert all(s["p50_ms"][i] is not None and s["p50_ms"][i] <= s["p95_ms"][i] <= s["p99_ms"][i] for i in busy)
    assert all(s["accuracy"][i] is None for i, n in enumerate(s["gold"]) if not n)
    day = client.get("/api/monitor?window=day").json()
    assert day["bucket_s"] == 900 and len(day["series"]["t"]) == 96 and day["totals"]["requests"] == 43
    assert client.get("/api/monitor?window=year").status_code == 400


def test_monitor_buckets_by_time(tmp_path: Path) -> None:
    from openautoglm.serve.traces import ServerStore
    from openautoglm.serve.workbench_monitor import EventLog

    store = ServerStore(tmp_path / "s.db")
    try:
        log = EventLog(store)
        now = 1_800_000_000.0
        log.add("p", "run", [(10.0, False, True), (30.0, True, False)], ts=now - 30)
        log.add("p", "run", [(20.0, False, None)] * 4, ts=now - 600)
        log.add("q", "request", [(5.0, False, None)], ts=now - 30)
        log.add("p", "run", [(99.0, False, True)], ts=now - 7200)  # beyond the hour
        out = log.series("hour", "p", now=now)
        s = out["series"]
        assert s["requests"][-1] == 2 and s["requests"][-10] == 4 and sum(s["requests"]) == 6
        assert s["error_rate"][-1] == 0.5 and s["accuracy"][-1] == 0.5 and s["accuracy"][-10] is None
        assert s["qps"][-10] == pytest.approx(4 / 60) and s["p50_ms"][-10] == 20.0
        assert out["pipelines"] == ["p", "q"] and out["totals"]["requests"] == 6
    finally:
        store.close()


# -- the guards hold on the new routes --------------------------------------------------------------
NEW_POSTS = [("/api/builder/yaml", {"graph": THREE_STEPS}), ("/api/builder/graph", {"yaml": GOOD_BAD_YAML}),
             ("/api/optimize", {"train_upload": "abc", "yaml": GOOD_BAD_YAML}),
             ("/api/sql/conversations", {"database": "x"}), ("/api/data/profile", {"upload_id": "abc"})]


@pytest.mark.parametrize("path,body", NEW_POSTS, ids=[p for p, _ in NEW_POSTS])
def test_new_routes_refuse_cross_site_posts_and_foreign_hosts(client, path: str, body: dict) -> None:  # type: ignore[no-untyped-def]
    evil = client.post(path, json=body, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and evil.json()["error"]["code"] == "cross_site_request"
    rebound = client.post(path, json=body, headers={"Host": "attacker.test"})
    assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "host_not_allowed"


def test_new_routes_need_the_key_when_keys_are_on(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, api_keys=["k-123"])) as c:
        for path in ("/api/compare?runs=a&runs=b", "/api/monitor", "/api/optimize", "/api/sql/databases",
                     "/api/data/reports"):
            assert c.get(path).status_code == 401, path
        assert c.get("/api/monitor", headers={"Authorization": "Bearer k-123"}).status_code == 200
        assert c.get("/builder", follow_redirects=False).status_code == 303


def test_sql_db_option_and_extensions(tmp_path: Path) -> None:
    from openautoglm.errors import ConfigError
    from openautoglm.serve.cli import parse_sql_dbs

    assert parse_sql_dbs(["shop=sqlite:///x.db", "pg = postgresql://u:p@h/db"]) == {
        "shop": "sqlite:///x.db", "pg": "postgresql://u:p@h/db"}
    for bad in (["shop"], ["=sqlite:///x"], ["1x=sqlite:///x"], ["a=x", "a=y"]):
        with pytest.raises(ConfigError):
            parse_sql_dbs(bad)
    with pytest.raises(ConfigError, match="cannot be loaded"):
        make_app(tmp_path, extensions=["openautoglm.nowhere:install"])
    with TestClient(make_app(tmp_path / "bare", extensions=[])) as c:  # the server runs without the workbench
        assert c.get("/sql").status_code == 404 and c.get("/builder").status_code == 200
        assert b"/sql" not in c.get("/").content


def test_every_page_escapes_what_it_shows(tmp_path: Path) -> None:
    """Server-rendered parts of the new pages: run names, inputs and database names are escaped."""
    evil = '<script>window.__xss=1</script>'
    with TestClient(make_app(tmp_path, sql_dbs={"shop": "sqlite:///nowhere.db"})) as c:
        up = c.post("/api/uploads", files={"file": (f"{evil}.csv", reviews_csv(4), "text/csv")}).json()
        run = c.post("/api/runs", json={"upload_id": up["upload_id"], "yaml": GOOD_BAD_YAML, "name": evil[:60]}).json()
        wait_for_run(c, run["run_id"])
        time.sleep(0.05)
        for page in ("/compare", "/optimize", "/monitor", "/sql", "/data", "/builder"):
            html = c.get(page).text
            assert "<script>window.__xss" not in html, page
        assert "&lt;script&gt;window.__xss" in c.get("/compare").text
