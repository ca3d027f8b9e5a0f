"""Resumable batch runs against a real SQLite store in tmp_path: ordering, call logging,
the response cache, resume after an interruption, and full-text search of calls."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Sequence

import pytest

from openautoglm.backends.base import ScoreRequest, ScoreResult
from openautoglm.backends.fake import FakeBackend
from openautoglm.core.batch import run_batch
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.task import Task
from openautoglm.errors import BackendError, EndpointUnavailable, OpenAutoGLMError
from openautoglm.store.sqlite import Store

TASK = dict(name="sentiment", template="Review: {text}", labels=["positive", "negative"], format="text")
RECORDS = [{"text": f"{'positive' if i % 2 == 0 else 'negative'} film number {i}"} for i in range(6)]
EXPECTED = ["positive" if i % 2 == 0 else "negative" for i in range(6)]


class CountingFake(FakeBackend):
    """Counts score requests (records scored), and can fail on the Nth score_batch call."""

    def __init__(self, fail_on_batch: int | None = None, reject: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_on_batch = fail_on_batch
        self.reject = reject  # requests whose prompt contains this fail (like an HTTP 400 content filter)
        self.batches = 0
        self.scored: list[str] = []

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        self.batches += 1
        if self.fail_on_batch is not None and self.batches == self.fail_on_batch:
            raise EndpointUnavailable("endpoint went away", hint="check the server")
        if self.reject is not None and any(self.reject in str(r.prompt) for r in requests):
            raise BackendError("HTTP 400: the content filter refused this input", hint="rephrase it")
        self.scored += [str(r.prompt) for r in requests]
        return super().score_batch(requests)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "proj" / "store.db") as st:
        yield st


def pipeline(backend: Any, store: Store, **kw: Any) -> Pipeline:
    return Pipeline(model=backend, task=Task(**TASK), store=store, **kw)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_store_is_sqlite_in_wal_mode(store: Store) -> None:
    assert store.path.exists()
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode.lower() == "wal"


def test_run_batch_results_in_order_and_logged_per_record(store: Store, tmp_path: Path) -> None:
    backend = CountingFake()
    out = tmp_path / "out" / "results.jsonl"
    res = run_batch(pipeline(backend, store), RECORDS, run_id="r1", output=out, batch_size=4, input_name="in.csv")
    assert [r["label"] for r in res.results] == EXPECTED
    assert (res.done, res.failed, res.skipped) == (6, 0, 0)
    assert res.run_id == "r1"
    calls = store.recent_calls(limit=100, run_id="r1")
    assert len(calls) == 6
    assert {c["run_id"] for c in calls} == {"r1"}
    assert {c["step"] for c in calls} == {"sentiment"}
    assert sorted(int(c["record_key"]) for c in calls) == list(range(6))
    assert all(c["kind"] == "score" and c["cached"] == 0 and c["model"] == "fake" for c in calls)
    by_key = {c["record_key"]: c for c in calls}
    assert "number 3" in by_key["3"]["prompt"]
    assert store.call_counts("r1") == {str(i): 1 for i in range(6)}
    run = store.get_run("r1")
    assert run is not None
    assert (run["status"], run["done"], run["failed"], run["total"], run["input"]) == ("done", 6, 0, 6, "in.csv")
    rows = read_jsonl(out)
    assert [r["idx"] for r in rows] == list(range(6))
    assert [r["output"]["label"] for r in rows] == EXPECTED
    assert rows[2]["input"] == RECORDS[2]
    stored = list(store.iter_records("r1"))
    assert [s["output"]["label"] for s in stored] == EXPECTED


def test_second_identical_run_is_served_from_the_cache(store: Store) -> None:
    backend = CountingFake()
    first = run_batch(pipeline(backend, store), RECORDS, run_id="a")
    calls_after_first = backend.calls
    assert calls_after_first == 6
    second = run_batch(pipeline(backend, store), RECORDS, run_id="b")
    assert backend.calls == calls_after_first  # no backend call at all
    assert second.results == first.results
    rows = store.recent_calls(limit=100, run_id="b")
    assert len(rows) == 6 and all(r["cached"] == 1 for r in rows)
    assert store.call_counts("b") == {}  # only uncached calls are counted


def test_cache_disabled_calls_the_backend_again(store: Store) -> None:
    backend = CountingFake()
    run_batch(pipeline(backend, store, cache=False), RECORDS, run_id="a")
    run_batch(pipeline(backend, store, cache=False), RECORDS, run_id="b")
    assert backend.calls == 12
    assert store.call_counts("b") == {str(i): 1 for i in range(6)}


def test_sampled_requests_are_not_cached(store: Store) -> None:
    backend = FakeBackend(responses=["positive"], can_score=False)
    pipe = pipeline(backend, store)
    pipe.run_batch(RECORDS[:2], run_id="a")
    before = backend.calls
    assert before == 2 * 5  # n_votes samples per record
    pipe.run_batch(RECORDS[:2], run_id="b")
    assert backend.calls == 2 * before
    assert all(r["cached"] == 0 for r in store.recent_calls(run_id="b"))


def test_resume_after_interruption(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    flaky = CountingFake(fail_on_batch=3)  # chunks of 2: the third chunk (records 4, 5) fails
    with pytest.raises(BackendError) as info:
        run_batch(pipeline(flaky, store), RECORDS, run_id="job", output=out, batch_size=2)
    msg = str(info.value)
    assert "endpoint went away" in msg
    assert "4 of 6 records are saved" in msg and "job" in msg
    assert "rerun" in (info.value.hint or "")
    assert store.get_run("job")["status"] == "interrupted"  # type: ignore[index]
    assert store.done_indices("job") == {0, 1, 2, 3}
    assert [r["idx"] for r in read_jsonl(out)] == [0, 1, 2, 3]
    with out.open("a", encoding="utf-8") as fh:  # a crash mid-append leaves a torn line behind
        fh.write('{"idx": 4, "outp')

    healthy = CountingFake()
    res = run_batch(pipeline(healthy, store), RECORDS, run_id="job", output=out, batch_size=2)
    assert (res.skipped, res.done, res.failed) == (4, 2, 0)
    assert len(healthy.scored) == 2 and all("number 4" in p or "number 5" in p for p in healthy.scored)
    assert [r["label"] for r in res.results] == EXPECTED
    assert store.call_counts("job") == {str(i): 1 for i in range(6)}  # no record repeated
    rows = read_jsonl(out)
    assert [r["idx"] for r in rows] == list(range(6))
    assert [r["output"]["label"] for r in rows] == EXPECTED
    assert store.get_run("job")["status"] == "done"  # type: ignore[index]

    assert not out.with_name(out.name + ".partial").exists()
    # a third run of the same command has nothing left to do
    again = CountingFake()
    res = run_batch(pipeline(again, store), RECORDS, run_id="job", output=out, batch_size=2)
    assert res.skipped == 6 and res.done == 0 and again.batches == 0
    assert [r["idx"] for r in read_jsonl(out)] == list(range(6))


def test_fresh_run_ignores_earlier_progress(store: Store) -> None:
    run_batch(pipeline(CountingFake(), store), RECORDS, run_id="job")
    res = run_batch(pipeline(CountingFake(), store), RECORDS, run_id="job", resume=False)
    assert res.skipped == 0 and res.done == 6


def test_per_record_errors_are_saved_and_changed_records_rerun(store: Store, tmp_path: Path) -> None:
    records = [{"text": "positive"}, {"review": "no text column"}, {"text": "negative"}]
    out = tmp_path / "o.jsonl"
    res = run_batch(pipeline(CountingFake(), store), records, run_id="e", output=out, batch_size=10)
    assert (res.done, res.failed) == (2, 1)
    assert res.errors[0][0] == 1 and "missing variable 'text'" in res.errors[0][1]
    assert "error" in res.results[1] and res.results[0]["label"] == "positive"
    assert store.get_run("e")["status"] == "done-with-errors"  # type: ignore[index]
    rows = read_jsonl(out)
    assert [r["idx"] for r in rows] == [0, 1, 2] and "error" in rows[1] and "output" not in rows[1]
    # a resumed run redoes only the record whose content changed
    backend = CountingFake()
    fixed = [records[0], {"text": "positive again"}, records[2]]
    res = run_batch(pipeline(backend, store), fixed, run_id="e", output=out, batch_size=10)
    assert res.skipped == 2 and res.done == 1 and len(backend.scored) == 1
    rows = read_jsonl(out)
    assert [r["idx"] for r in rows] == [0, 1, 2]  # input order, each record once
    assert rows[1]["output"]["label"] == "positive" and "error" not in rows[1]
    assert not out.with_name(out.name + ".tmp").exists()


def test_systematic_failure_stops_the_batch(store: Store) -> None:
    records = [{"review": str(i)} for i in range(6)]
    backend = CountingFake()
    with pytest.raises(OpenAutoGLMError, match="the first 2 records all failed") as info:
        run_batch(pipeline(backend, store), records, run_id="bad", batch_size=2)
    assert "missing variable" in str(info.value)
    assert store.done_indices("bad") == set()
    assert len(list(store.iter_records("bad", status="error"))) == 2  # stopped after the first chunk
    assert store.get_run("bad")["status"] == "failed"  # type: ignore[index]


def test_pipeline_run_logs_calls_and_uses_cache(store: Store) -> None:
    backend = CountingFake()
    pipe = pipeline(backend, store)
    pipe.log_interval_s = 1e9
    first = pipe.run(text="a positive zebra")
    second = pipe.run(text="a positive zebra")
    assert first == second and backend.calls == 1  # the second answer came from the (unflushed) cache
    assert store.recent_calls(search="zebra") == []  # single-run traces are written behind...
    pipe.flush()
    rows = store.recent_calls(search="zebra")  # ...and land on flush()/close()/exit
    assert [r["cached"] for r in rows] == [1, 0]  # newest first
    assert rows[0]["run_id"] is None


def test_write_behind_flushes_every_n_calls(store: Store) -> None:
    pipe = pipeline(CountingFake(), store)
    pipe.log_every, pipe.log_interval_s = 3, 1e9
    for word in ("alpha", "beta"):
        pipe.run(text=f"a positive {word}")
    assert store.recent_calls() == []
    pipe.run(text="a positive gamma")  # third call reaches log_every
    assert len(store.recent_calls()) == 3


def test_full_text_search_of_calls(store: Store) -> None:
    records = [{"text": "an okapi appears"}, {"text": "a positive film"}, {"text": "negative film"}]
    run_batch(pipeline(CountingFake(), store), records, run_id="fts")
    [hit] = store.recent_calls(search="okapi")
    assert hit["record_key"] == "0" and "okapi" in hit["prompt"]
    assert len(store.recent_calls(search="film", limit=10)) == 2
    assert len(store.recent_calls(search="film", limit=1)) == 1
    assert store.recent_calls(search="film okapi") == []  # all terms must match
    assert len(store.recent_calls(search="film", run_id="nope")) == 0
    assert len(store.recent_calls(search='"okapi"')) == 1
    # FTS5 syntax in user text must neither raise nor change the meaning
    for query in ['"', "OR", "okapi OR", "OR okapi", "NEAR(okapi", "okapi*", "(", "-okapi", "a:b", "AND NOT", "'"]:
        rows = store.recent_calls(search=query)
        assert isinstance(rows, list)
    assert store.recent_calls(search="okapi OR film") == []  # "OR" is a literal word here, not an operator


def test_text_search_without_fts_falls_back_to_like(store: Store) -> None:
    run_batch(pipeline(CountingFake(), store), [{"text": "an okapi appears"}, {"text": "x"}], run_id="like")
    store.has_fts = False
    [hit] = store.recent_calls(search="okap")
    assert hit["record_key"] == "0"
    assert store.recent_calls(search="zzz") == []


def test_list_runs_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as st:
        run_batch(pipeline(CountingFake(), st), RECORDS[:2], run_id="one")
        run_batch(pipeline(CountingFake(), st), RECORDS[:2], run_id="two")
    with Store(path) as st:
        runs = st.list_runs()
        assert {r["run_id"] for r in runs} == {"one", "two"}
        assert st.get_run("nope") is None
        assert st.done_indices("one") == {0, 1}


def test_default_store_path_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from openautoglm.store.sqlite import default_store_path

    monkeypatch.setenv("OPENAUTOGLM_HOME", str(tmp_path / "home"))
    assert default_store_path() == tmp_path / "home" / "store.db"
    monkeypatch.delenv("OPENAUTOGLM_HOME")
    monkeypatch.chdir(tmp_path)
    assert default_store_path() == tmp_path / ".openautoglm" / "store.db"


def test_store_query_and_extension_schema(tmp_path):
    from openautoglm.store.sqlite import Store

    with Store(tmp_path / "s.db") as store:
        store.add_schema("CREATE TABLE IF NOT EXISTS ext (k TEXT PRIMARY KEY, v INTEGER);")
        store.add_schema("CREATE TABLE IF NOT EXISTS ext (k TEXT PRIMARY KEY, v INTEGER);")  # idempotent
        store.query("INSERT INTO ext VALUES (?, ?)", ("a", 1))
        assert store.query("SELECT k, v FROM ext WHERE v > ?", (0,)) == [{"k": "a", "v": 1}]
        assert store.query("UPDATE ext SET v = 2") == []


def test_one_rejected_request_fails_its_record_only(store: Store, tmp_path: Path) -> None:
    records = [{"text": f"positive film {i}"} for i in range(10)]
    records[3] = {"text": "FORBIDDEN words"}
    backend = CountingFake(reject="FORBIDDEN")
    out = tmp_path / "o.jsonl"
    res = run_batch(pipeline(backend, store), records, run_id="f", output=out, batch_size=4)
    assert (res.done, res.failed) == (9, 1)
    assert res.errors == [(3, "HTTP 400: the content filter refused this input\n  hint: rephrase it")]
    assert res.failure_reasons == [("HTTP 400: the content filter refused this input", 1)]
    # the other three records of the failed batch were answered once, then replayed, not re-sent
    assert sorted(backend.scored) == sorted(f"Review: positive film {i}\nAnswer:" for i in range(10) if i != 3)
    rows = read_jsonl(out)
    assert [r["idx"] for r in rows] == list(range(10)) and "content filter" in rows[3]["error"]
    calls = store.recent_calls(limit=100, run_id="f")
    assert sum(1 for c in calls if c["error"]) == 1 and len(calls) == 10
    assert store.get_run("f")["status"] == "done-with-errors"  # type: ignore[index]

    # rerunning the same command does not call the model again: failed records are final...
    again = CountingFake()
    res = run_batch(pipeline(again, store), records, run_id="f", output=out, batch_size=4)
    assert (res.skipped, res.done, res.failed, again.calls) == (10, 0, 0, 0)
    assert res.errors and res.errors[0][0] == 3
    # ...until asked to retry them: then only they run
    fixed = CountingFake()
    res = run_batch(pipeline(fixed, store), records, run_id="f", output=out, batch_size=4, retry_failed=True)
    assert (res.skipped, res.done, res.failed) == (9, 1, 0) and fixed.scored == ["Review: FORBIDDEN words\nAnswer:"]
    assert [r["idx"] for r in read_jsonl(out)] == list(range(10))
    assert all("output" in r for r in read_jsonl(out))


def test_max_errors_stops_a_broken_run(store: Store) -> None:
    records = [{"text": f"FORBIDDEN {i}" if i % 2 else f"positive {i}"} for i in range(20)]
    with pytest.raises(OpenAutoGLMError, match="more than max_errors=2") as info:
        run_batch(pipeline(CountingFake(reject="FORBIDDEN"), store), records, run_id="m", batch_size=4, max_errors=2)
    assert "content filter" in str(info.value) and "--retry-failed" in (info.value.hint or "")
    assert store.get_run("m")["status"] == "failed"  # type: ignore[index]
    assert len(list(store.iter_records("m"))) == 8  # stopped after the chunk that crossed the limit


def test_edited_input_under_the_same_run_id_is_not_answered_by_position(store: Store) -> None:
    records = [{"text": f"{'positive' if i < 3 else 'negative'} film {i}"} for i in range(6)]
    first = run_batch(pipeline(CountingFake(), store), records, run_id="same")
    backend = CountingFake()
    second = run_batch(pipeline(backend, store), list(reversed(records)), run_id="same")
    assert second.changed == 6 and second.skipped == 0 and backend.calls == 0  # all six from the cache
    assert [r["label"] for r in second.results] == [r["label"] for r in reversed(first.results)]


def test_edited_pipeline_under_the_same_run_id_reruns(store: Store) -> None:
    run_batch(pipeline(CountingFake(), store), RECORDS, run_id="cfg")
    other = Pipeline(model=CountingFake(), task=Task(**{**TASK, "labels": ["negative", "positive"]}), store=store)
    res = run_batch(other, RECORDS, run_id="cfg")
    assert (res.changed, res.skipped, res.done) == (6, 0, 6)


def test_a_second_run_of_the_same_job_is_refused_while_the_first_holds_it(store: Store, tmp_path: Path) -> None:
    from openautoglm.store.lock import RunLock, RunLocked

    out = tmp_path / "o.jsonl"
    with RunLock(store.path.parent / "locks", ["run:busy"], "run busy"):
        with pytest.raises(RunLocked, match="already running") as info:
            run_batch(pipeline(CountingFake(), store), RECORDS, run_id="busy", output=out)
        assert "wait for it" in (info.value.hint or "")
        # another run writing the same output file is refused too
        with RunLock(store.path.parent / "locks", [f"output:{out.resolve()}"], "writer"):
            with pytest.raises(RunLocked):
                run_batch(pipeline(CountingFake(), store), RECORDS, run_id="other", output=out)
    assert not out.exists() and store.get_run("busy") is None
    res = run_batch(pipeline(CountingFake(), store), RECORDS, run_id="busy", output=out)
    assert res.done == 6 and not out.with_name(out.name + ".partial").exists()
    assert list((store.path.parent / "locks").glob("*.lock")) == []  # released and removed


def test_buffered_traces_are_written_when_the_pipeline_is_collected(store: Store) -> None:
    import gc

    pipe = pipeline(CountingFake(), store)
    pipe.log_interval_s = 1e9
    pipe.run(text="a positive giraffe")
    assert store.recent_calls(search="giraffe") == []
    del pipe
    gc.collect()
    assert len(store.recent_calls(search="giraffe")) == 1


def test_run_counters_follow_records_rewritten_in_later_chunks(store: Store) -> None:
    """The run's done/failed counts move by each chunk's change: a record retried from error to
    done, or rewritten with the same status, is counted once, and they match a recount."""
    store.start_run("c", name="p", config_hash="h", input=None, output=None, total=4)
    store.commit_chunk("c", [(0, "0", "done", {"v": 1}, None), (1, "1", "error", None, "boom")], [], {})
    store.commit_chunk("c", [(2, "2", "error", None, "boom"), (2, "2", "done", {"v": 2}, None)], [], {})
    store.commit_chunk("c", [(1, "1", "done", {"v": 3}, None), (0, "0", "done", {"v": 1}, None)], [], {})
    store.commit_chunk("c", [(3, "3", "error", None, "x"), (2, "2", "error", None, "y")], [], {})
    run = store.get_run("c")
    assert run is not None and (run["done"], run["failed"]) == (2, 2)
    statuses = [r["status"] for r in store.iter_records("c")]
    assert (statuses.count("done"), statuses.count("error")) == (run["done"], run["failed"])
