"""A/B speed of the local backend: this checkout against another source tree, same machine, same run.

    python bench/ab_speed.py --baseline /tmp/old/src [--rows 200] [--rounds 3] [--threads 1]

Made for changes to ``backends/local.py`` / ``llama_lite.py`` whose cost must be
known as a ratio on a noisy shared machine: each measurement runs in a fresh
subprocess, alternating baseline and candidate ``--rounds`` times, and the best run of
each side is kept.  Speeds are per CPU-second of the process (``time.process_time``),
which other jobs on the machine disturb far less than wall time; ``--threads 1`` makes
them steadier still.  A baseline tree is e.g. ``git archive <commit> src | tar -x -C /tmp/old``.

Measures SST-2 dev label scoring through ``Pipeline.run_batch`` (64 records per batch,
as in ``sst2_throughput.py``) with ``precision=auto`` and ``fp32``, and greedy decode
(64 tokens) of 1 and of 8 prompts.  Prints one table: baseline, candidate, ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
kind, arg = sys.argv[1], sys.argv[2]
if kind == "score":
    sys.path.insert(0, %(bench)r)
    from sst2_throughput import load_rows
    from openautoglm import Pipeline, Task
    rows = load_rows(int(sys.argv[3]))
    task = Task(name="sst2", template="Review: {text}", labels=["positive", "negative"], format="text",
                answer_prefix="Sentiment:")
    pipe = Pipeline(model={"model": "local", "precision": arg}, task=task, store=False, cache=False, batch_size=64)
    pipe.run(text="warm up")
    t0, c0 = time.perf_counter(), time.process_time()
    out = pipe.run_batch([{"text": s} for s, _ in rows])
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    acc = sum(r["label"] == g for r, (_, g) in zip(out, rows)) / len(rows)
    print(json.dumps({"value": len(rows) / cpu, "wall": len(rows) / dt, "accuracy": acc}))
else:
    from openautoglm.backends.base import GenerationRequest
    from openautoglm.backends.local import LocalBackend
    backend = LocalBackend()
    topics = ["a cat who learns to fly", "the sea", "a lost key", "winter", "a robot", "two friends", "a city", "rain"]
    reqs = [GenerationRequest([{"role": "user", "content": f"Write a long story about {t}."}], max_tokens=64)
            for t in topics[: int(arg)]]
    backend.generate([GenerationRequest(reqs[0].prompt, max_tokens=4)])
    t0, c0 = time.perf_counter(), time.process_time()
    comps = backend.generate(reqs)
    n = sum(c.completion_tokens for c in comps)
    print(json.dumps({"value": n / (time.process_time() - c0), "wall": n / (time.perf_counter() - t0)}))
"""


def run(src: str, args: list[str], threads: int | None) -> dict:
    env = {**os.environ, "PYTHONPATH": src}
    if threads:
        env["OPENAUTOGLM_THREADS"] = str(threads)
    code = CHILD % {"bench": str(ROOT / "bench")}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True, help="the other tree's src/ directory")
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads in each child (default: torch's)")
    ap.add_argument("--only", default="", help="comma-separated case numbers to run (1-4), default all")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sides = {"baseline": str(Path(args.baseline).resolve()), "candidate": str(ROOT / "src")}
    cases = [("SST-2 scoring ex/CPU-s, precision=auto", ["score", "auto", str(args.rows)]),
             ("SST-2 scoring ex/CPU-s, precision=fp32", ["score", "fp32", str(args.rows)]),
             ("greedy decode tok/CPU-s, 1 prompt", ["decode", "1"]),
             ("greedy decode tok/CPU-s, 8 prompts", ["decode", "8"])]
    if args.only:
        cases = [cases[int(i) - 1] for i in args.only.split(",")]
    table = []
    for label, case in cases:
        best: dict[str, dict] = {}
        for _ in range(args.rounds):
            for side, src in sides.items():
                got = run(src, case, args.threads)
                if side not in best or got["value"] > best[side]["value"]:
                    best[side] = got
        table.append({"case": label, **{s: best[s] for s in sides}})
        print(f"{label:42s} baseline {best['baseline']['value']:8.2f}  candidate {best['candidate']['value']:8.2f}  "
              f"ratio {best['candidate']['value'] / best['baseline']['value']:.3f}"
              + (f"  (accuracy {best['baseline']['accuracy']:.3f} / {best['candidate']['accuracy']:.3f})"
                 if "accuracy" in best["baseline"] else ""), flush=True)
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
