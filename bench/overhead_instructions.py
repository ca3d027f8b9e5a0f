"""Framework overhead per call as CPU instructions, counted under valgrind: a figure that
does not move with the machine's load (timings on a shared 2-core machine drift by 30 %).

Each configuration of ``bench/overhead.py`` (and DSPy's ``Predict`` with ``DummyLM``) runs
in a child process under ``valgrind --tool=cachegrind --cache-sim=no`` twice, with ``N``
and ``N + M`` calls after the same warm-up; the difference of the two instruction totals
divided by ``M`` is the instructions of one call (start-up and imports cancel out).
Instructions are not time (SQLite's disk writes and cache misses are not counted), but
the ratio to DSPy tracks the timed ratio of ``bench/overhead.py`` within a few percent.

    .venv/bin/python bench/overhead_instructions.py            # M = 2048 calls
    .venv/bin/python bench/overhead_instructions.py --calls 512

Needs ``valgrind`` on PATH (and ``pip install dspy`` for the DSPy row).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = {
    "labels, trace+store, cache on (default)": {},
    "labels, trace+store, cache=False": {"cache": False},
    "labels, trace on, store=False": {"store": False},
    "labels, store=False, trace=False": {"store": False, "trace": False},
}
DSPY = 'DSPy Predict("text -> label") + DummyLM'
WARM = 256


def child(config: str, calls: int) -> None:
    """Run ``WARM`` + ``calls`` calls of one configuration (what valgrind counts)."""
    if config == DSPY:
        import dspy
        from dspy.utils import DummyLM

        lm = DummyLM(itertools.repeat({"label": "positive"}))
        lm.cache = False
        predict = dspy.Predict("text -> label")
        with dspy.context(lm=lm):
            for i in range(WARM + calls):
                predict(text=f"Review {i}: the film was a pleasant surprise, well acted and paced.")
        return
    sys.path.insert(0, str(HERE))
    from overhead import CLS_TASK, NoopBackend, Texts

    from openautoglm.core.pipeline import Pipeline
    from openautoglm.core.task import Task

    kwargs = dict(CONFIGS[config])
    with tempfile.TemporaryDirectory() as tmp:
        if kwargs.get("store", True) is not False:
            kwargs["store"] = str(Path(tmp) / "store.db")
        with Pipeline(model=NoopBackend(), task=Task(**CLS_TASK), **kwargs) as pipe:
            pipe.log_interval_s = 1e9  # flush by count only: the same flushes in every run
            texts = Texts("x")
            for text in texts.take(WARM + calls):
                pipe.run(text=text)


def instructions(config: str, calls: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, __file__, "--child", config, str(calls)],
        capture_output=True, text=True, check=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_call(config: str, calls: int) -> float:
    with ThreadPoolExecutor(2) as pool:  # the two runs of a row side by side
        short, long = pool.map(lambda n: instructions(config, n), (256, 256 + calls))
    return (long - short) / calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2048, help="calls counted per row (default 2048)")
    ap.add_argument("--child", nargs=2, metavar=("CONFIG", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind (or use bench/overhead.py's timings)")
        return 2
    rows = list(CONFIGS)
    try:
        import dspy  # noqa: F401

        rows.append(DSPY)
    except ImportError:
        print("dspy is not installed: no DSPy row (pip install dspy)")
    counts = {row: per_call(row, args.calls) for row in rows}
    reference = counts.get(DSPY)
    print(f"instructions per call, {args.calls} calls counted (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    for row, count in counts.items():
        ratio = f"{count / reference:.3f}" if reference else "-"
        print(f"{row:45s} {count:12,.0f}   ratio vs DSPy {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
