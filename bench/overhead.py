"""Framework overhead per call with a no-op model: Open-AutoGLM vs DSPy vs LangChain-core.

Every system gets a model that answers instantly with a constant, so what is timed is
the framework itself: prompt building, request objects, caching, tracing, storage,
output parsing.  All systems run side by side in one process and one run.

    .venv/bin/python bench/overhead.py            # N=2000 calls x 3 repeats
    .venv/bin/python bench/overhead.py --quick    # N=300
    .venv/bin/python bench/overhead.py --json out/overhead.json
    .venv/bin/python bench/overhead.py --profile  # + cProfile of the tracing-on config

Method: each configuration is warmed up, then timed over N calls, 3 times; the repeats are
interleaved (repeat 1 of every row, then repeat 2, ...) so drift in machine load hits all
rows alike, and the table shows the median of the three µs/call figures.  Every call gets a distinct input text
(so no response cache can short-circuit a call).  Open-AutoGLM is measured with its
response cache on (the default: every call is a cache *miss* — a lookup plus a cache
write) and off (``cache=False``: pure tracing/storage overhead).  The SQLite store lives
in a fresh temporary directory (``--store-dir`` picks where, e.g. /dev/shm to take the
disk's fsync cost out); the store-on rows are bound by that disk and vary the most.

Needs ``pip install dspy langchain-core`` in the same environment; a missing one is
reported and skipped.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata as md
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

try:
    import openautoglm  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from openautoglm.backends.base import Backend, Completion, GenerationRequest, ScoreRequest, ScoreResult
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.task import Task

TARGET_RATIO = 0.10
REFERENCE_US = {"dspy": 638.0, "langchain-core": 634.0}


# -- the no-op model --------------------------------------------------------------------
class NoopBackend(Backend):
    """Answers every request at once with a constant (no model, no work)."""

    name = "noop"
    model = "noop"
    can_score = True
    max_context = 1_000_000

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return [Completion(texts=["positive"] * r.n, finish_reasons=["stop"] * r.n) for r in requests]

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        return [ScoreResult(logprobs=[-0.1] + [-2.3] * (len(r.continuations) - 1),
                            lengths=[1] * len(r.continuations)) for r in requests]


# -- inputs --------------------------------------------------------------------------------
class Texts:
    """An endless supply of distinct review texts (never the same prompt twice)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.i = 0

    def take(self, n: int) -> list[str]:
        start, self.i = self.i, self.i + n
        return [f"Review {self.tag}-{k}: the film was a pleasant surprise, well acted and paced."
                for k in range(start, start + n)]


# -- timing --------------------------------------------------------------------------------
@dataclass
class Bench:
    """One row of the table: a per-call function, or a batch function (timed per record)."""

    system: str
    config: str
    call: Callable[[str], Any] | None = None
    batch: Callable[[list[dict[str, Any]]], Sequence[Any]] | None = None
    context: Callable[[], ContextManager[Any]] = nullcontext
    runs: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.texts = Texts(f"{self.system}/{self.config}")

    def warm(self, n: int) -> None:
        with self.context():
            if self.call is not None:
                for text in self.texts.take(n):
                    self.call(text)
            else:
                assert self.batch is not None
                self.batch([{"text": t} for t in self.texts.take(min(n, 100))])

    def time_once(self, n: int) -> None:
        """Time ``n`` calls (or one batch of ``n`` records) on fresh texts; append µs per call."""
        texts = self.texts.take(n)
        records = [{"text": t} for t in texts]
        with self.context():
            gc.collect()
            if self.call is not None:
                call = self.call
                t0 = time.perf_counter_ns()
                for text in texts:
                    call(text)
                elapsed = time.perf_counter_ns() - t0
            else:
                assert self.batch is not None
                t0 = time.perf_counter_ns()
                out = self.batch(records)
                elapsed = time.perf_counter_ns() - t0
                assert len(out) == n
        self.runs.append(elapsed / 1e3 / n)

    def row(self) -> dict[str, Any]:
        return {"system": self.system, "config": self.config, "us_per_call": statistics.median(self.runs),
                "runs_us": [round(r, 2) for r in self.runs]}


# -- the systems -----------------------------------------------------------------------------
CLS_TASK = dict(name="cls", template="Classify: {text}", labels=["positive", "negative"])
GEN_TASK = dict(name="gen", template="Summarise in one word: {text}")


def openautoglm_benches(stack: ExitStack, tmp: Path, batch_n: int) -> list[Bench]:
    benches: list[Bench] = []
    dbs = iter(range(1_000))

    def pipe(task: dict[str, Any], **kwargs: Any) -> Pipeline:
        if kwargs.get("store", True) is not False:
            kwargs["store"] = str(tmp / f"store{next(dbs)}.db")
        p = stack.enter_context(Pipeline(model=NoopBackend(), task=Task(**task), **kwargs))
        check = p.run(text="A wonderful film")
        assert ("label" in check) if task is CLS_TASK else ("text" in check), check
        return p

    singles = [
        ("labels, trace+store, cache on (default)", CLS_TASK, {}),
        ("labels, trace+store, cache=False", CLS_TASK, {"cache": False}),
        ("labels, trace on, store=False", CLS_TASK, {"store": False}),
        ("labels, store=False, trace=False", CLS_TASK, {"store": False, "trace": False}),
        ("text/generate, trace+store, cache on", GEN_TASK, {}),
        ("text/generate, trace+store, cache=False", GEN_TASK, {"cache": False}),
    ]
    for label, task, kwargs in singles:
        p = pipe(task, **kwargs)
        benches.append(Bench("Open-AutoGLM", label, call=lambda t, p=p: p.run(text=t)))
    for label, kwargs in [
        (f"run_batch x{batch_n}, trace+store, cache on (per record)", {}),
        (f"run_batch x{batch_n}, trace+store, cache=False (per record)", {"cache": False}),
    ]:
        p = pipe(CLS_TASK, **kwargs)
        benches.append(Bench("Open-AutoGLM", label, batch=p.run_batch))
    return benches


def dspy_bench() -> Bench:
    import itertools

    import dspy
    from dspy.utils import DummyLM

    # DummyLM never consults dspy's response cache (_cache_responses = False); cache=False says it again.
    lm = DummyLM(itertools.repeat({"label": "positive"}))
    lm.cache = False
    predict = dspy.Predict("text -> label")
    with dspy.context(lm=lm):  # no global dspy.configure: nothing leaks out of this run
        check = predict(text="A wonderful film")
    assert check.label == "positive", check
    return Bench("DSPy", 'Predict("text -> label") + DummyLM, no cache',
                 call=lambda t: predict(text=t), context=lambda: dspy.context(lm=lm))


def langchain_bench() -> Bench:
    from langchain_core.language_models.fake import FakeListLLM
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import PromptTemplate

    llm = FakeListLLM(responses=["positive"], cache=False)
    chain = PromptTemplate.from_template("Classify: {text}") | llm | StrOutputParser()
    assert chain.invoke({"text": "A wonderful film"}) == "positive"
    return Bench("LangChain-core", "PromptTemplate | FakeListLLM | StrOutputParser",
                 call=lambda t: chain.invoke({"text": t}))


# -- profile -----------------------------------------------------------------------------------
def profile_openautoglm(tmp: Path, n: int, top: int = 25) -> str:
    import cProfile
    import io
    import pstats

    with Pipeline(model=NoopBackend(), task=Task(**CLS_TASK), store=str(tmp / "profile.db")) as p:
        texts = Texts("profile")
        for t in texts.take(200):
            p.run(text=t)
        batch = texts.take(n)
        prof = cProfile.Profile()
        prof.enable()
        for t in batch:
            p.run(text=t)
        prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    buf.write(f"cProfile: Open-AutoGLM labels, trace+store, cache on; {n} calls\n")
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


# -- reporting -------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform(),
           "cpus": str(os.cpu_count())}
    for dist in ("openautoglm", "dspy", "langchain-core", "pydantic"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    headers = ("system", "config", "µs/call", "ratio vs DSPy")
    body = []
    for r in rows:
        ratio = f"{r['ratio_vs_dspy']:.3f}" if r.get("ratio_vs_dspy") is not None else "-"
        body.append((r["system"], r["config"], f"{r['us_per_call']:.1f}", ratio))
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    print("  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    print(line)
    for b in body:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(b, widths))))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--calls", type=int, default=2000, help="timed calls per repeat (default 2000)")
    ap.add_argument("--quick", action="store_true", help="300 calls per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000, help="records per run_batch (default 1000)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--store-dir", metavar="DIR", help="where the temporary SQLite stores go (default: $TMPDIR)")
    ap.add_argument("--profile", action="store_true", help="cProfile Open-AutoGLM (trace+store) afterwards")
    args = ap.parse_args(argv)
    n = 300 if args.quick else args.calls
    warmup = max(50, n // 10)

    t_start = time.perf_counter()
    vers = versions()
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="oaglm-bench-", dir=args.store_dir) as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        benches = openautoglm_benches(stack, tmp, args.batch)
        for system, make in (("DSPy", dspy_bench), ("LangChain-core", langchain_bench)):
            try:
                benches.append(make())
            except ImportError as exc:
                skipped[system] = f"not installed ({exc})"
        for b in benches:
            b.warm(warmup)
        # interleaved: repeat r of every row runs before repeat r+1 of any row, so drift in
        # machine load (shared CPUs, disk flushes) hits all systems alike
        for _ in range(args.repeats):
            for b in benches:
                b.time_once(args.batch if b.batch is not None else n)
        rows = [b.row() for b in benches]
        profile = profile_openautoglm(tmp, n) if args.profile else None

    dspy_us = next((r["us_per_call"] for r in rows if r["system"] == "DSPy"), None)
    for r in rows:
        r["ratio_vs_dspy"] = r["us_per_call"] / dspy_us if dspy_us else None
    headline = next(r for r in rows if r["system"] == "Open-AutoGLM")  # trace+store, default cache
    in_memory = next((r for r in rows if r["config"] == "labels, trace on, store=False"), None)
    elapsed = time.perf_counter() - t_start

    print(f"Framework overhead per call, no-op model; N={n} calls x {args.repeats} repeats "
          f"(median µs/call), warm-up {warmup}; run_batch of {args.batch} records per repeat")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    print()
    print_table(rows)
    print()
    for system, why in skipped.items():
        print(f"skipped {system}: {why}")
    if dspy_us:
        ratio = headline["ratio_vs_dspy"]
        verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
        print(f"Open-AutoGLM (tracing on: {headline['config']}) / DSPy = {ratio:.3f}  "
              f"-> {verdict} the target <= {TARGET_RATIO:.2f}")
        if in_memory is not None:
            print(f"  for comparison, tracing kept in memory only ({in_memory['config']}) / DSPy = "
                  f"{in_memory['ratio_vs_dspy']:.3f}")
    print(f"reference figures: DSPy {REFERENCE_US['dspy']:.0f} µs/call, "
          f"LangChain-core {REFERENCE_US['langchain-core']:.0f} µs/call")
    print("notes: every call has a distinct input; 'cache on' = Open-AutoGLM default (each call is a cache miss:"
          " lookup + write), 'cache=False' = pure overhead; DSPy DummyLM bypasses dspy's cache; "
          "FakeListLLM(cache=False).")
    print(f"stores in {args.store_dir or tempfile.gettempdir()} (store-on rows are bound by that disk's I/O)")
    print(f"total wall time {elapsed:.1f}s")
    if profile:
        print()
        print(profile)

    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "n_calls": n, "repeats": args.repeats, "store_dir": args.store_dir or tempfile.gettempdir(), "warmup": warmup, "batch_records": args.batch,
            "versions": vers, "rows": rows, "skipped": skipped,
            "headline": {"config": headline["config"], "ratio_vs_dspy": headline["ratio_vs_dspy"],
                         "target": TARGET_RATIO, "meets_target": bool(headline["ratio_vs_dspy"] is not None
                                                                      and headline["ratio_vs_dspy"] <= TARGET_RATIO)},
            "reference_us": REFERENCE_US, "seconds": round(elapsed, 1),
        }, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
