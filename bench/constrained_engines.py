"""Issue 18: llguidance vs xgrammar on the embedded model's tokenizer (SmolLM2, 49,152 tokens).

    .venv/bin/python bench/constrained_engines.py --xgrammar-path /tmp/xgr

xgrammar is not a dependency: install it anywhere for this comparison (``pip install
--target /tmp/xgr --no-deps xgrammar apache-tvm-ffi``; it imports the venv's torch) and pass
that folder.  Each engine runs in a fresh subprocess (clean memory figures), on 2 threads.
Per workload: compile time (fresh, median of 3), the mean and max time of one token mask
while walking a fixed valid answer token by token (fill the bitmask, then consume the
token; 5 walks), a 16-row batch mask step (16 matchers on the same walk), and the process's
resident memory growth for tokenizer + all compiled grammars + matchers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ENTITIES = {"type": "object", "properties": {k: {"type": "array", "items": {"type": "string"}}
                                             for k in ("persons", "organisations", "locations", "misc")},
            "required": ["persons", "organisations", "locations", "misc"]}
PERSON = {"type": "object", "properties": {
    "name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "role": {"type": "string", "enum": ["admin", "user", "guest"]},
    "emails": {"type": "array", "items": {"type": "string"}}}, "required": ["name", "age", "role", "emails"],
    "additionalProperties": False}
WORKLOADS = {
    "json: CoNLL entities": ("json", ENTITIES, json.dumps({"persons": ["Peter Blackburn"], "organisations": ["EU"],
                                                          "locations": ["Brussels"], "misc": ["German", "British"]})),
    "json: person (enum, bounds)": ("json", PERSON, json.dumps({"name": "Ann Lee", "age": 31, "role": "admin",
                                                                "emails": ["ann@example.com"]})),
    "regex: date": ("regex", "[0-9]{4}-[0-9]{2}-[0-9]{2}", "1989-11-09"),
    "choice: 3 labels": ("choice", ["positive", "negative", "neutral"], "negative"),
}
THREADS = 2


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def model_dir() -> Path:
    from openautoglm.backends.weights import resolve_model_files

    return resolve_model_files(None).directory


def sql_workload() -> tuple[str, str] | None:
    """A Spider database's schema grammar (Lark, llguidance only) and a gold query."""
    spider = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "spider"
    db = spider / "database" / "concert_singer" / "concert_singer.sqlite"
    if not db.is_file():
        return None
    from openautoglm.sql.database import Database
    from openautoglm.sql.grammar import build_grammar

    with Database(f"sqlite:///{db}") as handle:
        grammar = build_grammar(handle.schema(), database="concert_singer", dialect=handle.dialect)
    return grammar.text, "SELECT T2.Name, count(*) FROM concert AS T1 JOIN stadium AS T2 ON T1.Stadium_ID = " \
                         "T2.Stadium_ID GROUP BY T1.Stadium_ID"


class LLGuidance:
    name = "llguidance"

    def __init__(self, directory: Path) -> None:
        import llguidance
        from llguidance import LLExecutor, LLTokenizer

        self.version = llguidance.__version__
        self.tok = LLTokenizer((directory / "tokenizer.json").read_text(encoding="utf-8"), eos_token=[2])
        self.executor = LLExecutor(num_threads=THREADS)
        self.vocab = self.tok.vocab_size

    def tokenize(self, text: str) -> list[int]:
        return self.tok.tokenize_str(text)

    def compile(self, kind: str, value: Any) -> Any:
        from llguidance import LLMatcher

        from openautoglm.backends.base import Constraint
        from openautoglm.backends.constrained import grammar_text

        constraint = {"json": Constraint.json, "regex": Constraint.regex, "choice": Constraint.choice,
                      "lark": Constraint.grammar}[kind](value)
        matcher = LLMatcher(self.tok, grammar_text(constraint), log_level=0)
        assert not matcher.is_error(), matcher.get_error()
        return matcher

    def matcher(self, compiled: Any) -> Any:
        return compiled.deep_copy()

    def bitmask(self, rows: int) -> Any:
        import numpy as np

        return np.full((rows, (self.vocab + 31) // 32), -1, dtype=np.int32)

    def fill(self, matcher: Any, mask: Any) -> None:
        from llguidance.numpy import fill_next_token_bitmask

        fill_next_token_bitmask(matcher, mask, 0)

    def fill_batch(self, matchers: list[Any], mask: Any) -> None:
        from llguidance.numpy import fill_next_token_bitmask_par

        fill_next_token_bitmask_par(self.executor, [(m, i) for i, m in enumerate(matchers)], mask)

    def accept(self, matcher: Any, token: int) -> None:
        assert matcher.consume_token(token), matcher.get_error()


class XGrammar:
    name = "xgrammar"

    def __init__(self, directory: Path) -> None:
        import xgrammar as xgr
        from transformers import AutoTokenizer

        self.xgr = xgr
        from importlib.metadata import version

        self.version = version("xgrammar")
        self.hf = AutoTokenizer.from_pretrained(directory)
        self.info = xgr.TokenizerInfo.from_huggingface(self.hf, vocab_size=len(self.hf), stop_token_ids=[2])
        self.vocab = self.info.vocab_size
        self.batch = xgr.BatchGrammarMatcher(max_threads=THREADS)

    def tokenize(self, text: str) -> list[int]:
        return self.hf(text, add_special_tokens=False).input_ids

    def compile(self, kind: str, value: Any) -> Any:
        compiler = self.xgr.GrammarCompiler(self.info, max_threads=THREADS, cache_enabled=False)
        if kind == "json":
            return compiler.compile_json_schema(json.dumps(value), any_whitespace=False, separators=(", ", ": "))
        if kind == "regex":
            return compiler.compile_regex(value)
        if kind == "choice":
            return compiler.compile_grammar("root ::= " + " | ".join(json.dumps(v) for v in value))
        raise NotImplementedError("xgrammar reads EBNF, not Lark")

    def matcher(self, compiled: Any) -> Any:
        return self.xgr.GrammarMatcher(compiled)

    def bitmask(self, rows: int) -> Any:
        return self.xgr.allocate_token_bitmask(rows, self.vocab)

    def fill(self, matcher: Any, mask: Any) -> None:
        matcher.fill_next_token_bitmask(mask, 0)

    def fill_batch(self, matchers: list[Any], mask: Any) -> None:
        self.batch.batch_fill_next_token_bitmask(matchers, mask)

    def accept(self, matcher: Any, token: int) -> None:
        assert matcher.accept_token(token)


def run_engine(name: str) -> dict[str, Any]:
    os.environ.setdefault("RAYON_NUM_THREADS", str(THREADS))
    directory = model_dir()
    workloads = dict(WORKLOADS)
    sql = sql_workload()
    if sql is not None:
        workloads["lark: Spider SQL (concert_singer)"] = ("lark", sql[0], sql[1])
    before = rss_mb()
    t0 = time.perf_counter()
    engine = LLGuidance(directory) if name == "llguidance" else XGrammar(directory)
    setup = time.perf_counter() - t0
    rows, keep = {}, []
    for label, (kind, value, answer) in workloads.items():
        try:
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                compiled = engine.compile(kind, value)
                times.append(time.perf_counter() - t0)
        except NotImplementedError as exc:
            rows[label] = {"error": str(exc)}
            continue
        keep.append(compiled)
        tokens = engine.tokenize(answer)
        one, mask = [], engine.bitmask(1)
        for _ in range(5):
            m = engine.matcher(compiled)
            for tok in tokens:
                t0 = time.perf_counter()
                engine.fill(m, mask)
                one.append(time.perf_counter() - t0)
                engine.accept(m, tok)
        batch, mask16 = [], engine.bitmask(16)
        matchers = [engine.matcher(compiled) for _ in range(16)]
        keep += matchers
        for tok in tokens:
            t0 = time.perf_counter()
            engine.fill_batch(matchers, mask16)
            batch.append(time.perf_counter() - t0)
            for m in matchers:
                engine.accept(m, tok)
        rows[label] = {"compile_ms": statistics.median(times) * 1e3, "mask_us": statistics.mean(one) * 1e6,
                       "mask_max_us": max(one) * 1e6, "batch16_us": statistics.mean(batch) * 1e6,
                       "tokens": len(tokens)}
    return {"engine": name, "version": engine.version, "setup_s": setup, "rss_mb": rss_mb() - before, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["llguidance", "xgrammar"], help=argparse.SUPPRESS)
    ap.add_argument("--xgrammar-path", default=None, help="a folder holding xgrammar (pip install --target)")
    args = ap.parse_args()
    if args.engine:
        print(json.dumps(run_engine(args.engine)))
        return
    results = []
    for name in ("llguidance", "xgrammar"):
        env = dict(os.environ)
        if name == "xgrammar" and args.xgrammar_path:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.xgrammar_path, env.get("PYTHONPATH")]))
        proc = subprocess.run([sys.executable, __file__, "--engine", name], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name} failed:\n{proc.stderr[-2000:]}")
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"\nConstraint engines on SmolLM2's tokenizer, {THREADS} threads, {os.cpu_count()} CPUs visible\n")
    for r in results:
        print(f"{r['engine']} {r['version']}: tokenizer setup {r['setup_s']:.2f} s, resident memory "
              f"+{r['rss_mb']:.0f} MB (import, tokenizer, all grammars, 17 matchers each)")
    print("\n| workload | engine | compile ms | mask µs/token (mean / max) | 16-row mask µs/step | answer tokens |")
    print("|---|---|---|---|---|---|")
    for label in results[0]["rows"] if results else []:
        for r in results:
            row = r["rows"].get(label, {"error": "n/a"})
            if "error" in row:
                print(f"| {label} | {r['engine']} | {row['error']} | | | |")
                continue
            print(f"| {label} | {r['engine']} | {row['compile_ms']:.1f} | {row['mask_us']:.0f} / "
                  f"{row['mask_max_us']:.0f} | {row['batch16_us']:.0f} | {row['tokens']} |")


if __name__ == "__main__":
    main()
