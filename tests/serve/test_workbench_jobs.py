"""Issue 21, the workbench's longer jobs through the API: the optimizer (start, watch, stop, save,
compare with the base), the SQL page (the operator's databases, a conversation with a follow-up,
correction attempts, the library's guards) and the data page (profile, clean, label issues, drift,
report files).  Fake backends; a real SQLite file."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from .conftest import make_app, wait_for_run
from .workbench_data import GOOD_BAD_YAML, SQL_ANSWERS, GatedFake, noisy_labels_csv, reviews_csv, singers_db


def _upload(client: Any, text: str, name: str = "r.csv") -> dict[str, Any]:
    r = client.post("/api/uploads", files={"file": (name, text, "text/csv")})
    assert r.status_code == 200, r.text
    return r.json()


def _until(client: Any, path: str, done: Any, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if done(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


# -- optimizer ---------------------------------------------------------------------------------------
def test_optimizer_runs_to_the_end_and_its_pipeline_beats_nothing_it_does_not_measure(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        train = _upload(client, reviews_csv(60))
        job = client.post("/api/optimize", json={"train_upload": train["upload_id"], "yaml": GOOD_BAD_YAML,
                                                 "budget": 500}).json()
        assert job["status"] in ("queued", "running") and job["settings"]["rows"]["train"] == 30
        out = _until(client, f"/api/optimize/{job['opt_id']}", lambda j: j["status"] not in ("queued", "running"))
        assert out["status"] == "done", out["error"]
        assert out["calls"] <= 500 and out["budget_left"] == 500 - out["calls"]
        assert out["candidates"][0]["stage"] == "base" and len(out["candidates"]) > 3
        assert {s["state"] for s in out["stages"]} <= {"done", "skipped"} and out["stages"][0]["state"] == "done"
        scores = out["result"]["scores"]
        assert "best_holdout" in scores and scores["best_select"] >= scores["base_select"]
        chosen = yaml.safe_load(out["chosen_yaml"])
        assert chosen["name"] == "verdict" and chosen["steps"][0]["name"] == "verdict"
        assert client.post("/api/validate", json={"yaml": out["chosen_yaml"]}).json()["valid"]
        listed = client.get("/api/optimize").json()["jobs"]
        assert [j["opt_id"] for j in listed] == [job["opt_id"]] and "chosen_yaml" not in listed[0]


def test_optimizer_stops_keeps_the_best_so_far_saves_and_compares(tmp_path: Path) -> None:
    backend = GatedFake(block_after=25)  # the base is measured, then the search waits at call 25
    with TestClient(make_app(tmp_path, backend=backend)) as client:
        train = _upload(client, reviews_csv(60), "train.csv")
        dev = _upload(client, reviews_csv(40), "dev.csv")
        job = client.post("/api/optimize", json={"train_upload": train["upload_id"], "dev_upload": dev["upload_id"],
                                                 "yaml": GOOD_BAD_YAML, "budget": 2000}).json()
        assert backend.waiting.wait(60)
        running = client.get(f"/api/optimize/{job['opt_id']}").json()
        assert running["status"] == "running" and running["candidates"][0]["stage"] == "base"
        assert [s["state"] for s in running["stages"][:2]] == ["done", "running"]
        assert running["calls"] >= 25 and running["budget_left"] == 2000 - running["calls"]
        stopping = client.post(f"/api/optimize/{job['opt_id']}/stop").json()
        assert stopping["status"] == "stopping"
        backend.gate.set()
        out = _until(client, f"/api/optimize/{job['opt_id']}", lambda j: j["status"] != "stopping")
        assert out["status"] == "stopped" and out["calls"] < 100
        assert any("stopped" in n for n in out["result"]["notes"]) and "best_holdout" not in out["result"]["scores"]
        best = max((c for c in out["candidates"] if c["rows"] == 28), key=lambda c: c["score"])
        assert out["result"]["scores"]["best_select"] == pytest.approx(best["score"], abs=1e-4)
        assert out["stages"][0]["state"] == "done" and out["stages"][-1]["state"] == "skipped"
        saved = client.post(f"/api/optimize/{job['opt_id']}/save", json={"name": "verdict-opt"}).json()
        assert saved["saved"] and client.get("/api/pipelines/verdict-opt").json()["problems"] == []
        assert client.post(f"/api/optimize/{job['opt_id']}/save", json={"name": "../x"}).status_code == 400
        cmp = client.post(f"/api/optimize/{job['opt_id']}/compare").json()
        base_run, new_run = cmp["runs"]
        assert cmp["compare_url"] == f"/compare?runs={base_run}&runs={new_run}"
        for run_id in cmp["runs"]:
            assert wait_for_run(client, run_id)["status"] == "done"
        compared = client.get(f"/api/compare?runs={base_run}&runs={new_run}").json()
        assert [r["metrics"]["records"] for r in compared["runs"]] == [40, 40]  # both over the dev file


def test_optimizer_refuses_what_it_cannot_search(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        up = _upload(client, "review,stars\na good one,5\n")
        r = client.post("/api/optimize", json={"train_upload": up["upload_id"], "yaml": GOOD_BAD_YAML})
        assert r.status_code == 400 and "its columns are: review, stars" in r.json()["error"]["message"]
        good = _upload(client, reviews_csv(20))
        two = ("name: two\nsteps:\n  - {name: a, task: {template: 'R {text}', labels: [good, bad]}}\n"
               "  - {name: b, task: {template: 'R {text}', labels: [good, bad]}}\n")
        r = client.post("/api/optimize", json={"train_upload": good["upload_id"], "yaml": two})
        assert r.status_code == 400 and "single-task" in r.json()["error"]["message"]
        text_task = "name: t\ntask: {template: 'R {text}'}\n"
        assert client.post("/api/optimize", json={"train_upload": good["upload_id"], "yaml": text_task}).status_code == 400
        assert client.post("/api/optimize", json={"train_upload": "nope", "yaml": GOOD_BAD_YAML}).status_code == 404
        assert client.get("/api/optimize/opt-nope").status_code == 404
        assert client.post("/api/optimize", json={"train_upload": good["upload_id"]}).status_code == 400


# -- SQL ----------------------------------------------------------------------------------------------
@pytest.fixture()
def sql_client(tmp_path: Path) -> Any:
    from openautoglm.backends.fake import FakeBackend

    db = singers_db(tmp_path / "singers.db")
    app = make_app(tmp_path / "home", backend=FakeBackend(responses=SQL_ANSWERS),
                   sql_dbs={"singers": f"sqlite:///{db}", "gone": f"sqlite:///{tmp_path / 'missing.db'}"})
    with TestClient(app) as client:
        yield client, db


def test_sql_lists_only_operator_databases_without_urls(sql_client) -> None:  # type: ignore[no-untyped-def]
    client, db = sql_client
    r = client.get("/api/sql/databases")
    singers, gone = r.json()["databases"]
    assert singers == {"name": "singers", "dialect": "sqlite",
                       "tables": [{"name": "singer", "columns": ["name", "age", "country"]}]}
    assert gone["name"] == "gone" and "error" in gone
    assert str(db) not in r.text and "sqlite:///" not in r.text
    unknown = client.post("/api/sql/conversations", json={"database": "other"})
    assert unknown.status_code == 400 and "singers" in unknown.json()["error"]["message"]
    url = client.post("/api/sql/conversations", json={"database": f"sqlite:///{db}"})
    assert url.status_code == 400  # a URL is not a database name
    assert client.post("/api/sql/conversations/sql-nope/ask", json={"question": "x"}).status_code == 404


def test_sql_conversation_with_a_follow_up_and_a_correction(sql_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = sql_client
    conv = client.post("/api/sql/conversations", json={"database": "singers", "candidates": 1}).json()
    ask = f"/api/sql/conversations/{conv['conversation_id']}/ask"
    first = client.post(ask, json={"question": "Which singers are older than 28?"}).json()
    assert first["ok"] and first["sql"] == SQL_ANSWERS[1] and first["rows"] == [["Ann"], ["Bob"]]
    assert first["confidence"] == 1.0 and first["follow_up"] is False
    (attempts,) = first["attempts"]
    assert [a["ok"] for a in attempts] == [False, True] and attempts[0]["sql"] == SQL_ANSWERS[0]
    assert "nam" in attempts[0]["feedback"] and first["candidates"][0]["attempts"] == 2
    second = client.post(ask, json={"question": "And how old are they?"}).json()
    assert second["follow_up"] and second["columns"] == ["name", "age"] and second["rows"] == [["Ann", 30], ["Bob", 41]]
    assert [[a["ok"] for a in c] for c in second["attempts"]] == [[True]]  # no correction this time
    prompts = client.get(f"/api/traces?run_id={conv['conversation_id']}&q=Earlier&limit=50").json()["traces"]
    assert prompts, "the follow-up's prompt holds the earlier question"
    view = client.get(f"/api/sql/conversations/{conv['conversation_id']}").json()
    assert [t["question"] for t in view["turns"]] == ["Which singers are older than 28?", "And how old are they?"]


def test_sql_page_keeps_the_library_guards(tmp_path: Path) -> None:
    from openautoglm.backends.fake import FakeBackend

    db = singers_db(tmp_path / "s.db")
    app = make_app(tmp_path / "home", backend=FakeBackend(responses=["DELETE FROM singer", "DROP TABLE singer"]),
                   sql_dbs={"s": f"sqlite:///{db}"})
    with TestClient(app) as client:
        conv = client.post("/api/sql/conversations", json={"database": "s", "candidates": 1}).json()
        out = client.post(f"/api/sql/conversations/{conv['conversation_id']}/ask",
                          json={"question": "delete everyone"}).json()
    assert not out["ok"] and out["rows"] == [] and out["confidence"] == 0.0
    assert all(not a["ok"] for a in out["attempts"][0])
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM singer").fetchone()[0] == 3


# -- data ---------------------------------------------------------------------------------------------
@pytest.fixture()
def data_client(tmp_path: Path) -> Any:
    with TestClient(make_app(tmp_path)) as client:
        yield client, tmp_path


def test_profile_report_inline_and_downloads(data_client) -> None:  # type: ignore[no-untyped-def]
    client, home = data_client
    up = _upload(client, reviews_csv(40))
    rep = client.post("/api/data/profile", json={"upload_id": up["upload_id"], "label_column": "label"}).json()
    assert rep["kind"] == "profile" and rep["summary"]["rows"] == 40
    assert rep["summary"]["labels"] == {"bad": 20, "good": 20}
    html = client.get(rep["html_url"])
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert html.headers["content-security-policy"].startswith("sandbox") and "Content-Disposition" not in html.headers
    assert ">40<" in html.text.replace(" ", "")
    js = client.get(rep["downloads"]["profile.json"])
    assert js.headers["content-disposition"].startswith("attachment") and js.json()["stats"]["rows"] == 40
    assert (home / "data-reports" / rep["report_id"] / "report.html").is_file()
    assert str(home) not in html.text  # the report names the upload, never a server path
    listed = client.get("/api/data/reports").json()["reports"]
    assert [r["report_id"] for r in listed] == [rep["report_id"]]


def test_wrong_columns_name_the_columns_the_file_has(data_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = data_client
    up = _upload(client, "review,stars\nfine,5\n", "other.csv")
    for path, body in (("profile", {}), ("clean", {}), ("label-issues", {"text_column": "review"})):
        r = client.post(f"/api/data/{path}", json={"upload_id": up["upload_id"], **body})
        assert r.status_code == 400, path
        assert "has no column" in r.json()["error"]["message"] and "it has: review, stars" in r.json()["error"]["message"]


def test_clean_label_issues_and_drift(data_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = data_client
    rows = reviews_csv(40) + '"write to me at ann@example.com",good\n"a good film number 1",good\n'
    up = _upload(client, rows)
    cleaned = client.post("/api/data/clean", json={"upload_id": up["upload_id"]}).json()
    assert cleaned["summary"]["rows_in"] == 42 and cleaned["summary"]["rows_out"] == 41  # one exact duplicate
    assert cleaned["summary"]["pii"] == {"email": 1}
    body = client.get(cleaned["downloads"]["clean.csv"]).text
    assert "ann@example.com" not in body and body.count("\n") == 42
    audit = client.get(cleaned["downloads"]["audit.jsonl"]).text
    assert '"reason": "pii"' in audit or '"reason":"pii"' in audit
    noisy, flipped = noisy_labels_csv()
    labelled = _upload(client, noisy, "noisy.csv")
    issues = client.post("/api/data/label-issues", json={"upload_id": labelled["upload_id"], "embedder": "char-ngram",
                                                          "method": "cl"}).json()
    assert issues["summary"]["rows"] == 60 and issues["summary"]["method"] == "cl"
    found = [int(line.split(",")[0]) for line in client.get(issues["downloads"]["issues.csv"]).text.splitlines()[1:]]
    assert found and set(found) <= flipped and len(found) == issues["summary"]["flagged"]
    newer = _upload(client, "text,label\n" + "".join(f'"a good film {i}",good\n' for i in range(30)), "new.csv")
    drift = client.post("/api/data/drift", json={"upload_id": up["upload_id"], "current_upload_id": newer["upload_id"],
                                                  "label_column": "label", "embeddings": False}).json()
    assert drift["summary"]["metrics"]["label_psi"] > 0.1 and "label_psi" in drift["summary"]["failed"]


def test_report_files_only_by_their_listed_names(data_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = data_client
    up = _upload(client, reviews_csv(10))
    rep = client.post("/api/data/profile", json={"upload_id": up["upload_id"]}).json()
    rid = rep["report_id"]
    assert client.get(f"/api/data/reports/{rid}/manifest.json").status_code == 404
    assert client.get(f"/api/data/reports/{rid}/..%2F..%2Fstore.db").status_code == 404
    assert client.get("/api/data/reports/dr-0000000000000000/report.html").status_code == 404
    assert client.get("/api/data/reports/..%2F..%2F/report.html").status_code == 404
    assert client.post("/api/data/profile", json={"upload_id": "../../etc"}).status_code == 400
