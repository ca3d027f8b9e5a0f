"""The seed's one-line Chinese sentiment task on unseen ChnSentiCorp rows, with and without
the label head the ``sentiment.v1`` preset ships for the embedded gemma-3-270m (issue 19 §3).

    .venv/bin/python bench/zh_sentiment_head.py [--rows 300] [--smollm-rows 60] [--json out.json]

The task is the seed's, with every default and no model named:
``Task(name="sentiment_analysis", prompt_template="判断以下句子的情感倾向：{text}")``, run with
``Pipeline(task=task).run_batch`` (``store=False``: nothing is cached between the runs).
A mostly-Chinese task picks ``local:gemma3-270m``; the preset supplies the labels 正面/负面
and the shipped head ``sentiment.v1.zh.gemma3-270m``.

* ``shipped head``: the task as the user writes it (the head answers alone);
* ``label scores``: the same task with ``head=None`` (gemma's length-normalised label
  log-probabilities after the ``情感：`` cue);
* ``SmolLM2``: the same one-liner with ``model="local"`` (the head does not apply there: the
  method says ``+head-skipped``), on the first ``--smollm-rows`` rows only (it is slow on Chinese).

Rows: the first ``--rows`` rows of ChnSentiCorp ``dev.tsv`` whose text does not occur anywhere in
``train.tsv`` (the split repeats some texts; those dev rows are passed over and counted), whole
texts.  The head was fitted on ``train.tsv`` rows only (``scripts/fit_preset_heads.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "data" / "chnsenticorp"
TEMPLATE = "判断以下句子的情感倾向：{text}"
GOLD = {"1": "正面", "0": "负面"}


def read(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    ti, li = header.index("text_a"), header.index("label")
    rows = []
    for line in lines[1:]:
        cols = line.split("\t")
        if len(cols) > max(ti, li) and cols[li].strip() in GOLD:
            rows.append((cols[ti].strip(), GOLD[cols[li].strip()]))
    return rows


def eval_rows(n: int) -> tuple[list[tuple[str, str]], int, int]:
    """The first ``n`` dev rows whose text is not in train.tsv (ChnSentiCorp repeats some
    texts across its splits), how many were passed over, and how many dev rows were read."""
    train = {text for text, _ in read(DATA / "train.tsv")}
    kept, read_rows = [], 0
    for row in read(DATA / "dev.tsv"):
        if len(kept) == n:
            break
        read_rows += 1
        if row[0] not in train:
            kept.append(row)
    return kept, read_rows - len(kept), read_rows


def measure(name: str, rows: list[tuple[str, str]], **task_fields) -> dict:
    from openautoglm import Pipeline, Task

    model = task_fields.pop("model", None)
    task = Task(name="sentiment_analysis", prompt_template=TEMPLATE, **task_fields)
    pipe = Pipeline(model=model, task=task, store=False, cache=False)
    pipe.run_batch([{"text": rows[0][0]}])  # load the model outside the timing
    t0 = time.perf_counter()
    results = pipe.run_batch([{"text": text} for text, _ in rows])
    seconds = time.perf_counter() - t0
    predicted = [r["label"] for r in results]
    acc = sum(p == gold for p, (_, gold) in zip(predicted, rows)) / len(rows)
    methods = Counter(str(r.get("method")) for r in results)
    out = {"name": name, "rows": len(rows), "accuracy": round(acc, 4), "rows_per_s": round(len(rows) / seconds, 2),
           "positive_share": round(predicted.count("正面") / len(rows), 3), "methods": dict(methods),
           "description": task.description}
    print(json.dumps(out, ensure_ascii=False), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--smollm-rows", type=int, default=60, help="0 skips SmolLM2")
    ap.add_argument("--skip-label-scores", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows, dropped, seen = eval_rows(args.rows)
    print(f"dev rows 0..{seen}: {len(rows)} kept, {dropped} passed over (text also in train.tsv); "
          f"{sum(g == '正面' for _, g in rows) / len(rows):.3f} 正面", flush=True)
    report = [measure("shipped head (gemma-3-270m)", rows)]
    if not args.skip_label_scores:
        report.append(measure("label scores (gemma-3-270m, head=None)", rows, head=None))
    if args.smollm_rows:
        report.append(measure("SmolLM2-135M (model='local')", rows[: args.smollm_rows], model="local"))
        report.append(measure("shipped head (gemma-3-270m), same rows", rows[: args.smollm_rows]))
    print(f"\n| run | rows | accuracy | 正面 share | rows/s | method |\n|---|---:|---:|---:|---:|---|")
    for r in report:
        print(f"| {r['name']} | {r['rows']} | {r['accuracy']:.3f} | {r['positive_share']:.2f} | {r['rows_per_s']} | "
              f"{', '.join(r['methods'])} |")
    if args.json:
        args.json.write_text(json.dumps({"dropped": dropped, "runs": report}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
