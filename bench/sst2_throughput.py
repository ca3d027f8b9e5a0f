"""SST-2 classification and decoding speed of the embedded model, and its start times.

    python bench/sst2_throughput.py [--quick] [--rows N] [--json out.json]

Prints one table: examples/s and accuracy (batched vs sequential, Open-AutoGLM vs
llama-cpp-python on the same GGUF when it is installed), decode tokens/s (our loop vs
transformers ``model.generate``), and cold/warm start of the embedded model (each
start in a fresh subprocess; cold = empty conversion cache).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"
TEMPLATE = "Review: {text}"
PREFIX = "Sentiment:"
# the prompt format was chosen on dev rows [0, 300); rows [300, 572) were never looked at
TUNE_ROWS = 300


def load_rows(n: int | None) -> list[tuple[str, str]]:
    lines = DATA.read_text(encoding="utf-8").splitlines()[1:]
    rows = [(s.strip(), "positive" if lab == "1" else "negative") for s, lab in (ln.split("\t") for ln in lines)]
    return rows[:n] if n else rows


def bench_openautoglm(rows: list[tuple[str, str]], batch_size: int, precision: str = "auto") -> dict[str, float]:
    from openautoglm import Pipeline, Task

    task = Task(name="sst2", template=TEMPLATE, labels=["positive", "negative"], format="text", answer_prefix=PREFIX)
    model = {"model": "local", "precision": precision}
    pipe = Pipeline(model=model, task=task, store=False, cache=False, batch_size=batch_size)
    pipe.run(text="warm up")
    t0 = time.perf_counter()
    results = pipe.run_batch([{"text": s} for s, _ in rows])
    dt = time.perf_counter() - t0
    correct = [r["label"] == gold for r, (_, gold) in zip(results, rows)]
    held = correct[TUNE_ROWS:]
    pipe.close()
    return {"ex_per_s": len(rows) / dt, "accuracy": sum(correct) / len(rows),
            "accuracy_untuned_rows": sum(held) / len(held) if held else float("nan"), "seconds": dt}


def bench_llama_cpp(rows: list[tuple[str, str]]) -> dict[str, float] | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    from openautoglm.backends.weights import default_gguf_path

    llm = Llama(model_path=str(default_gguf_path()), n_ctx=512, logits_all=False, verbose=False, n_threads=2)
    pos, neg = llm.tokenize(b" positive", add_bos=False)[0], llm.tokenize(b" negative", add_bos=False)[0]
    t0 = time.perf_counter()
    correct = 0
    for s, gold in rows:
        llm.reset()
        llm.eval(llm.tokenize(f"{TEMPLATE.format(text=s)}\n{PREFIX}".encode(), add_bos=False))
        logits = llm.scores[llm.n_tokens - 1]
        correct += ("positive" if logits[pos] > logits[neg] else "negative") == gold
    dt = time.perf_counter() - t0
    return {"ex_per_s": len(rows) / dt, "accuracy": correct / len(rows), "seconds": dt}


def bench_decode(max_tokens: int) -> dict[str, float]:
    from openautoglm.backends.base import GenerationRequest
    from openautoglm.backends.local import LocalBackend

    backend = LocalBackend()
    prompt = [{"role": "user", "content": "Write a long story about a cat who learns to fly."}]
    backend.generate([GenerationRequest(prompt, max_tokens=4)])
    t0 = time.perf_counter()
    comp = backend.generate([GenerationRequest(prompt, max_tokens=max_tokens)])[0]
    ours = comp.completion_tokens / (time.perf_counter() - t0)
    out = {"ours_tok_per_s": ours}
    try:
        import torch
        from transformers import AutoModelForCausalLM

        hf = AutoModelForCausalLM.from_pretrained(str(backend.files.directory), dtype=torch.float32)
        ids = torch.tensor([backend.tokenizer.encode(backend.tokenizer.render(prompt))])
        hf.generate(ids, max_new_tokens=4, do_sample=False)
        t0 = time.perf_counter()
        gen = hf.generate(ids, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False)
        out["hf_generate_tok_per_s"] = (gen.shape[1] - ids.shape[1]) / (time.perf_counter() - t0)
    except ImportError:
        pass
    return out


def start_time(cache_dir: str) -> float:
    code = ("import time; t=time.perf_counter(); from openautoglm.backends.local import LocalBackend; "
            "LocalBackend(); print(time.perf_counter()-t)")
    env = {**os.environ, "OPENAUTOGLM_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="200 rows, skip the sequential run's full length")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = load_rows(args.rows or (200 if args.quick else None))
    seq_rows = rows[:100] if args.quick else rows
    figures: dict[str, object] = {"rows": len(rows), "date": time.strftime("%Y-%m-%d")}

    with tempfile.TemporaryDirectory() as cold_dir:
        figures["cold_start_s"] = start_time(cold_dir)
        figures["warm_start_s_first_after_cold"] = start_time(cold_dir)
    figures["warm_start_s"] = min(start_time(os.environ.get("OPENAUTOGLM_CACHE_DIR", "")
                                             or str(Path.home() / ".cache" / "openautoglm")) for _ in range(3))
    figures["batched"] = bench_openautoglm(rows, batch_size=64)
    figures["batched_fp32"] = bench_openautoglm(rows, batch_size=64, precision="fp32")
    figures["sequential"] = bench_openautoglm(seq_rows, batch_size=1)
    figures["llama_cpp"] = bench_llama_cpp(rows)
    figures["decode"] = bench_decode(64 if args.quick else 128)

    b, s, lc = figures["batched"], figures["sequential"], figures["llama_cpp"]
    print(f"\nSST-2 dev ({len(rows)} rows; prompt format chosen on rows < {TUNE_ROWS}), 2-core CPU")
    print(f"{'system':38s} {'ex/s':>8s} {'accuracy':>9s} {'acc rows>=300':>14s}")
    print(f"{'openautoglm batched (64/chunk)':38s} {b['ex_per_s']:8.2f} {b['accuracy']:9.3f} {b['accuracy_untuned_rows']:14.3f}")
    f32 = figures["batched_fp32"]
    print(f"{'openautoglm batched, precision=fp32':38s} {f32['ex_per_s']:8.2f} {f32['accuracy']:9.3f} {f32['accuracy_untuned_rows']:14.3f}")
    print(f"{'openautoglm sequential (1/chunk)':38s} {s['ex_per_s']:8.2f} {s['accuracy']:9.3f} {'':>14s}")
    if lc:
        print(f"{'llama-cpp-python, same GGUF':38s} {lc['ex_per_s']:8.2f} {lc['accuracy']:9.3f}")
    else:
        print(f"{'llama-cpp-python':38s} {'not installed (optional; ~12 min build)':>34s}")
    print(f"batched / sequential throughput: {b['ex_per_s'] / s['ex_per_s']:.2f}x")
    d = figures["decode"]
    print(f"decode: ours {d['ours_tok_per_s']:.1f} tok/s", end="")
    if "hf_generate_tok_per_s" in d:
        print(f", transformers generate {d['hf_generate_tok_per_s']:.1f} tok/s "
              f"({d['ours_tok_per_s'] / d['hf_generate_tok_per_s']:.2f}x)")
    else:
        print()
    print(f"start: cold {figures['cold_start_s']:.1f} s (GGUF dequantise + convert), "
          f"warm {figures['warm_start_s']:.2f} s (best of 3)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
