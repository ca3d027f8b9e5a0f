"""``openautoglm run --engine ray`` as a user runs it, in subprocesses that join the test
cluster: kill -9 of the driver then resume, an empty input, an unreachable address, Ray not
installed, and ``import openautoglm`` without Ray."""

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

from .conftest import FAKE_PIPELINE, cli_env, read_marks, write_marked_pipeline

pytestmark = pytest.mark.ray
CLI = [sys.executable, "-m", "openautoglm.cli"]


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env or cli_env(), timeout=timeout)


def _done(store: Path) -> set[int]:
    if not store.exists():
        return set()
    try:
        with sqlite3.connect(store, timeout=5) as conn:
            return {r[0] for r in conn.execute("SELECT idx FROM records WHERE status = 'done'")}
    except sqlite3.OperationalError:  # the tables are not created yet
        return set()


def test_kill_9_of_the_driver_then_resume_loses_nothing_and_repeats_nothing(ray_address: str,
                                                                             tmp_path: Path) -> None:
    yaml = write_marked_pipeline(tmp_path)
    n = 240
    (tmp_path / "in.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(n)), encoding="utf-8")
    marks, store, out = tmp_path / "marks.txt", tmp_path / "proj" / "store.db", tmp_path / "out.jsonl"
    args = ["run", str(yaml), "-i", str(tmp_path / "in.csv"), "-o", str(out), "--store", str(store), "--engine",
            "ray", "--address", ray_address, "--workers", "2", "--batch-size", "8", "--no-progress"]
    first = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=cli_env(OPENAUTOGLM_TEST_MARKS=marks, OPENAUTOGLM_TEST_TAG="first",
                                         OPENAUTOGLM_TEST_SLEEP="0.02"))
    deadline = time.monotonic() + 240
    while len(_done(store)) < 40:
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        assert time.monotonic() < deadline, "the first run committed nothing"
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    committed = _done(store)
    assert 40 <= len(committed) < n  # killed mid-run
    assert not out.exists()  # the output is moved into place only when a run ends

    second = _cli(*args, env=cli_env(OPENAUTOGLM_TEST_MARKS=marks, OPENAUTOGLM_TEST_TAG="second"))
    assert second.returncode == 0, second.stderr
    assert f"resumed: {len(committed)} records were already done" in second.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["idx"] for r in rows] == list(range(n))  # nothing lost, each record once, in input order
    assert [r["output"]["value"] for r in rows] == list(range(n))
    assert _done(store) == set(range(n))
    again = {idx for tag, idx, _, _ in read_marks(marks) if tag == "second"}
    assert again and not again & committed  # what was committed before the kill did not run again
    ran = {idx for _, idx, _, _ in read_marks(marks)}
    assert ran == set(range(n))


def test_an_empty_input_works_with_allow_empty(ray_address: str, tmp_path: Path) -> None:
    yaml = tmp_path / "p.yaml"
    yaml.write_text(FAKE_PIPELINE.format(model="fake"), encoding="utf-8")
    (tmp_path / "empty.csv").write_text("text\n", encoding="utf-8")
    args = ["run", str(yaml), "-i", str(tmp_path / "empty.csv"), "-o", str(tmp_path / "o.jsonl"), "--store",
            str(tmp_path / "s.db"), "--engine", "ray", "--address", ray_address, "--no-progress"]
    refused = _cli(*args)
    assert refused.returncode == 2 and "0 records" in refused.stderr and "--allow-empty" in refused.stderr
    done = _cli(*args, "--allow-empty")
    assert done.returncode == 0, done.stderr
    assert "done: 0 ok, 0 failed" in done.stdout
    assert (tmp_path / "o.jsonl").read_text(encoding="utf-8") == ""


def test_an_unreachable_address_is_a_clear_error_within_30_s(tmp_path: Path) -> None:
    yaml = tmp_path / "p.yaml"
    yaml.write_text(FAKE_PIPELINE.format(model="fake"), encoding="utf-8")
    (tmp_path / "in.csv").write_text("text\ngood\n", encoding="utf-8")
    from ..backends.fault_server import closed_port

    t0 = time.monotonic()
    res = _cli("run", str(yaml), "-i", str(tmp_path / "in.csv"), "--store", str(tmp_path / "s.db"), "--engine", "ray",
               "--address", f"127.0.0.1:{closed_port()}", "--no-progress", timeout=60)
    assert time.monotonic() - t0 < 30
    assert res.returncode == 2
    assert "cannot reach the Ray cluster at 127.0.0.1:" in res.stderr and "Traceback" not in res.stderr


def test_without_ray_installed_one_line_names_the_extra(tmp_path: Path) -> None:
    yaml = tmp_path / "p.yaml"
    yaml.write_text(FAKE_PIPELINE.format(model="fake"), encoding="utf-8")
    (tmp_path / "in.csv").write_text("text\ngood\n", encoding="utf-8")
    code = ("import sys; sys.modules['ray'] = None\n"
            "from openautoglm.cli import main\n"
            f"sys.argv = ['openautoglm', 'run', {str(yaml)!r}, '-i', {str(tmp_path / 'in.csv')!r}, '--store', "
            f"{str(tmp_path / 's.db')!r}, '--engine', 'ray', '--no-progress']\n"
            "main()\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: the Ray engine needs Ray, which is not installed: pip install 'openautoglm[ray]'"]


def test_importing_openautoglm_does_not_import_ray() -> None:
    code = ("import sys, openautoglm, openautoglm.cli, openautoglm.core.batch, openautoglm.core.engines.driver, "
            "openautoglm.core.engines.sources, openautoglm.core.engines.ray_engine\n"
            "print('ray' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert res.stdout.strip() == "False", res.stderr


def test_unknown_engine_and_ray_options_without_it_are_refused(tmp_path: Path) -> None:
    yaml = tmp_path / "p.yaml"
    yaml.write_text(FAKE_PIPELINE.format(model="fake"), encoding="utf-8")
    (tmp_path / "in.csv").write_text("text\ngood\n", encoding="utf-8")
    base = ["run", str(yaml), "-i", str(tmp_path / "in.csv"), "--store", str(tmp_path / "s.db"), "--no-progress"]
    bad = _cli(*base, "--engine", "spark")
    assert bad.returncode == 2 and "unknown engine 'spark'" in bad.stderr
    stray = _cli(*base, "--workers", "2")
    assert stray.returncode == 2 and "need --engine ray" in stray.stderr
