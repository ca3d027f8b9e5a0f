"""Reliability under failure: kill -9 and resume, concurrent runs, a fault-injecting endpoint,
hostile SQL (SQLite and PostgreSQL) and a server fuzz, in one table.

Each batch scenario runs ``openautoglm run`` in subprocesses, exactly as a user would, on
this checkout and (with ``--baseline REV``) on an earlier revision's source extracted with
``git archive`` into a temporary folder, side by side in the same run.

    .venv/bin/python bench/reliability.py                       # this checkout only
    .venv/bin/python bench/reliability.py --baseline 7e752d8    # + the pre-hardening main
    .venv/bin/python bench/reliability.py --skip sql,server     # batch scenarios only

Scenarios
    kill9       400 records on a slowed fake model; ``kill -9`` at random moments 4 times,
                then the command runs to the end: records lost, duplicated in the output,
                and model calls made twice for one record.
    concurrent  the same command started twice at once on 150 records: output lines,
                duplicates, extra model calls, exit codes.
    faults      200 records against the project's own OpenAI-compatible server behind a
                fault layer that answers 500/429/garbage/truncated/hang at the given rate,
                and HTTP 400 for 2 % of the records (a content filter): records saved, failed
                with a reason, failed without one, wall time, reruns needed.
    sql         ``bench/reliability_sql.py``: hostile SQL on SQLite and PostgreSQL.
    server      ``bench/reliability_server.py``: schemathesis + attack list on the server.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.backends.fault_server: the fault layer the tests use too

PIPELINE = """\
name: rel
model: {model}
steps:
  - name: sentiment
    task: {{template: "Review: {{text}}", labels: [positive, negative], format: text}}
"""


# -- running a version of the CLI -------------------------------------------------------------
class Version:
    """The CLI of one source tree (this checkout's, or a revision extracted to a folder)."""

    def __init__(self, name: str, src: Path) -> None:
        self.name, self.src = name, src

    def cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "openautoglm.cli", "run", *args]

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": f"{self.src}{os.pathsep}{ROOT}", "NO_COLOR": "1", "COLUMNS": "200"}

    def run(self, workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd(*args), cwd=workdir, env=self.env(), capture_output=True, text=True,
                              timeout=timeout)

    def start(self, workdir: Path, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.cmd(*args), cwd=workdir, env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)


def extract_revision(rev: str, into: Path) -> Path:
    """``src/`` of git revision ``rev``, extracted under ``into`` (the repository is untouched)."""
    data = subprocess.run(["git", "archive", "--format=tar", rev, "src"], cwd=ROOT, capture_output=True,
                          check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def _workdir(base: Path, name: str, n: int, model: str) -> Path:
    folder = base / name
    folder.mkdir(parents=True)
    (folder / "p.yaml").write_text(PIPELINE.format(model=model), encoding="utf-8")
    lines = ["text"] + [f"{'a wonderful' if i % 2 == 0 else 'a dreadful'} film number {i}" for i in range(n)]
    (folder / "in.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _args(out: str = "out.jsonl", *extra: str) -> list[str]:
    return ["p.yaml", "-i", "in.csv", "-o", out, "--store", "store.db", "--no-progress", "--batch-size", "16", *extra]


def _output_stats(path: Path, n: int) -> dict[str, int]:
    idx = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                idx.append(json.loads(line)["idx"])
            except (ValueError, KeyError):
                pass  # a torn line counts as missing
    return {"lines": len(idx), "lost": n - len(set(idx)), "duplicated": len(idx) - len(set(idx))}


def _calls_twice(store: Path) -> int:
    """Records whose (uncached) model call was made more than once."""
    if not store.exists():
        return 0
    with sqlite3.connect(store) as conn:
        rows = conn.execute("SELECT record_key, COUNT(*) FROM calls WHERE cached = 0 AND error IS NULL"
                            " GROUP BY record_key").fetchall()
    return sum(1 for _, count in rows if count > 1)


# -- scenarios -------------------------------------------------------------------------------
def scenario_kill9(version: Version, base: Path, kills: int = 4, n: int = 400) -> dict[str, Any]:
    folder = _workdir(base, f"kill9-{version.name}", n, "{model: fake, delay_s: 0.004}")
    rng = random.Random(0)
    t0 = time.perf_counter()
    killed_at = []
    for k in range(kills):  # kill when a random share of the records is committed: mid-run, every time
        target = int(n * (k + rng.uniform(0.3, 0.9)) / (kills + 1))
        proc = version.start(folder, *_args())
        while _saved(folder / "store.db")[0] < target and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at.append(_saved(folder / "store.db")[0])
    final = version.run(folder, *_args())
    stats = _output_stats(folder / "out.jsonl", n)
    return {"scenario": f"kill -9 at {killed_at} done, then resume", "version": version.name, "records": n, **stats,
            "calls twice": _calls_twice(folder / "store.db"), "exit": final.returncode,
            "seconds": round(time.perf_counter() - t0, 1)}


def scenario_concurrent(version: Version, base: Path, n: int = 150) -> dict[str, Any]:
    folder = _workdir(base, f"concurrent-{version.name}", n, "{model: fake, delay_s: 0.01}")
    t0 = time.perf_counter()
    procs = [version.start(folder, *_args()) for _ in range(2)]
    codes = [p.wait(timeout=600) for p in procs]
    texts = [p.stdout.read() if p.stdout else "" for p in procs]
    stats = _output_stats(folder / "out.jsonl", n)
    refused = sum("already running" in t for t in texts)
    return {"scenario": "2 identical runs at once", "version": version.name, "records": n, **stats,
            "calls twice": _calls_twice(folder / "store.db"), "exit": "/".join(map(str, codes)),
            "refused": refused, "seconds": round(time.perf_counter() - t0, 1)}


def scenario_faults(version: Version, base: Path, rate: float, n: int = 200, max_reruns: int = 5) -> dict[str, Any]:
    from tests.backends.fault_server import Fault, FaultController, FaultMiddleware, ServerThread, TopLogprobFake

    from openautoglm.serve.openai_api import create_openai_app

    controller = FaultController()
    controller.random_faults(rate, [Fault("status", status=500), Fault("status", status=429),
                                    Fault("malformed"), Fault("close"), Fault("sleep", seconds=3.0)], seed=1)
    controller.reject_marker = "[filtered]"
    app = FaultMiddleware(create_openai_app(TopLogprobFake(["wonderful", "dreadful"], model="fake"),
                                            model_name="fake"), controller)
    with ServerThread(app) as server:
        model = ("{model: 'openai:fake', base_url: '%s', timeout_s: 1.0, max_retries: 4, backoff_s: 0.05, "
                 "max_backoff_s: 0.5, concurrency: 8}" % server.base_url)
        folder = _workdir(base, f"faults{int(rate * 100)}-{version.name}", n, model)
        lines = (folder / "in.csv").read_text().splitlines()
        for i in range(1, n + 1, 50):  # 2 % of the records trip the content filter, every time
            lines[i] += " [filtered]"
        (folder / "in.csv").write_text("\n".join(lines) + "\n")
        t0 = time.perf_counter()
        first = version.run(folder, *_args(), timeout=900)
        first_s = time.perf_counter() - t0
        saved_first = _saved(folder / "store.db")
        reruns = 0
        while _saved(folder / "store.db")[0] < n - n // 50 and reruns < max_reruns:
            version.run(folder, *_args("out.jsonl", "--retry-failed"), timeout=900)
            reruns += 1
        ok, failed_reason, failed_silent = _saved(folder / "store.db")
    return {"scenario": f"endpoint faults {rate:.0%} + 2% HTTP 400", "version": version.name, "records": n,
            "saved (1st run)": saved_first[0], "failed w/ reason (1st run)": saved_first[1],
            "saved (end)": ok, "failed w/ reason (end)": failed_reason, "failed silently": failed_silent,
            "reruns": reruns, "exit (1st run)": first.returncode, "seconds (1st run)": round(first_s, 1),
            "faults injected": sum(controller.injected.values())}


def _saved(store: Path) -> tuple[int, int, int]:
    """(records done, records failed with a reason, records failed without one)."""
    if not store.exists():
        return 0, 0, 0
    try:
        with sqlite3.connect(store, timeout=5) as conn:
            rows = conn.execute("SELECT status, error FROM records").fetchall()
    except sqlite3.OperationalError:  # the run has not created its tables yet
        return 0, 0, 0
    done = sum(1 for s, _ in rows if s == "done")
    reasoned = sum(1 for s, e in rows if s == "error" and e)
    return done, reasoned, sum(1 for s, e in rows if s == "error" and not e)


# -- report ----------------------------------------------------------------------------------
def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    cols: list[str] = []
    for row in rows:
        cols += [c for c in row if c not in cols]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print(f"\n### {title}\n")
    print("| " + " | ".join(c.ljust(widths[c]) for c in cols) + " |")
    print("|" + "|".join("-" * (widths[c] + 2) for c in cols) + "|")
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) + " |")


def _section(name: str, load: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    try:
        return load()
    except Exception as exc:  # noqa: BLE001 - report a section that could not run, keep the others
        return [{"section": name, "error": f"{type(exc).__name__}: {exc}"[:300]}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", help="also run the batch scenarios on this git revision's source")
    ap.add_argument("--skip", default="", help="comma-separated: kill9,concurrent,faults,sql,server")
    ap.add_argument("--rates", default="0.3,0.4", help="fault rates for the endpoint scenario")
    ap.add_argument("--json", type=Path, help="write all rows here")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="oag-reliability-") as tmp:
        base = Path(tmp)
        versions = [Version("this checkout", ROOT / "src")]
        if args.baseline:
            versions.append(Version(f"baseline {args.baseline}", extract_revision(args.baseline, base / "baseline")))
        batch: list[dict[str, Any]] = []
        for version in versions:
            if "kill9" not in skip:
                batch.append(scenario_kill9(version, base))
            if "concurrent" not in skip:
                batch.append(scenario_concurrent(version, base))
        results["batch runs"] = batch
        faults: list[dict[str, Any]] = []
        if "faults" not in skip:
            for rate in (float(r) for r in args.rates.split(",")):
                for version in versions:
                    faults.append(scenario_faults(version, base, rate))
        results["fault-injecting endpoint"] = faults
    if "sql" not in skip:
        sys.path.insert(0, str(ROOT / "bench"))
        results["hostile SQL"] = _section("sql", lambda: __import__("reliability_sql").run_sql_section())
    if "server" not in skip:
        sys.path.insert(0, str(ROOT / "bench"))
        results["server fuzz"] = _section("server", lambda: __import__("reliability_server").run_server_section())
    for title, rows in results.items():
        print_table(title, rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
