"""A batch run killed with SIGKILL resumes: no record lost, none done twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _cmd(store: Path, out: Path) -> list[str]:
    exe = Path(sys.executable).with_name("openautoglm")
    return [str(exe), "run", str(ROOT / "examples/sentiment/pipeline.yaml"),
            "--input", str(ROOT / "examples/sentiment/reviews.csv"), "--output", str(out),
            "--store", str(store), "--batch-size", "8", "--limit", "96", "--no-progress"]


def _done(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM records WHERE status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_then_resume(tmp_path):
    store, out = tmp_path / "store.db", tmp_path / "out.jsonl"
    proc = subprocess.Popen(_cmd(store, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    deadline = time.time() + 300
    while _done(store) < 24 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "run finished before it could be killed: " + proc.stdout.read().decode()[-500:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _done(store)
    assert 24 <= killed_at < 96

    second = subprocess.run(_cmd(store, out), capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"resumed: {killed_at} records were already done" in second.stderr + second.stdout

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["idx"] for r in rows) == list(range(96))  # none lost, none twice
    assert all("label" in r["output"] for r in rows)
    with sqlite3.connect(store) as conn:
        per_record = conn.execute(
            "SELECT record_key, COUNT(*) FROM calls WHERE step = 'sentiment' GROUP BY record_key").fetchall()
        assert len(per_record) == 96
        assert {n for _, n in per_record} == {1}  # no record's model call was committed twice
        assert conn.execute("SELECT COUNT(*) FROM records WHERE status = 'done'").fetchone()[0] == 96
