"""A sentiment task written the natural way, on the embedded model (issue 19 §2).

    .venv/bin/python bench/issue19_natural_task.py [--rows eval|dev|both] [--json out.json]

The task is the one a reader writes from the README and the articles::

    Task(name="sst", prompt_template="Is the sentiment of this movie review positive or negative?\\nReview: {text}",
         labels=["positive", "negative"])

Rows: SST-2 ``dev.tsv`` rows [472, 572) ("eval": the last 100, used by no other test or
bench for tuning; the prompt formats were chosen on rows [0, 300)) and rows [200, 300)
("dev": where the variants below were compared before looking at the eval rows).

One table: accuracy and the share predicted "positive" per prompt form (as the framework
builds it: chat with the label list, or plain text with an answer cue) and per calibration
(none; contextual calibration over Zhao et al.'s three content-free inputs; over the neutral
sentences ``openautoglm.core.outputs.content_free_inputs`` now gives an English task), and the framework's own result with the task's defaults
(``Pipeline(model="local", task=task).run_batch``) — the figure the slow test asserts.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"
ROWS = {"eval": (472, 572), "dev": (200, 300)}
NATURAL = "Is the sentiment of this movie review positive or negative?\nReview: {text}"
LABELS = ["positive", "negative"]
OLD_CONTENT_FREE = ("N/A", "", "[MASK]")


def load_rows(span: tuple[int, int]) -> list[tuple[str, str]]:
    lines = DATA.read_text(encoding="utf-8").splitlines()[1:]
    rows = [(s.strip(), "positive" if lab.strip() == "1" else "negative") for s, lab in (ln.split("\t") for ln in lines)]
    return rows[span[0]:span[1]]


def forms() -> dict[str, Any]:
    from openautoglm import Task

    return {
        "natural, chat (old default)": Task(name="sst", prompt_template=NATURAL, labels=LABELS, format="chat"),
        "natural, text + Answer:": Task(name="sst", prompt_template=NATURAL, labels=LABELS, format="text",
                                        answer_prefix="Answer:"),
        "natural, text + Sentiment:": Task(name="sst", prompt_template=NATURAL, labels=LABELS, format="text",
                                           answer_prefix="Sentiment:"),
        "demo form (Review:/Sentiment:)": Task(name="sst", prompt_template="Review: {text}", labels=LABELS,
                                              format="text", answer_prefix="Sentiment:"),
    }


def probs_of(backend: Any, task: Any, texts: list[str]) -> list[list[float]]:
    from openautoglm.backends.base import ScoreRequest
    from openautoglm.core.labels import distribution_from_logprobs

    reqs = [ScoreRequest(task.build_prompt({"text": t}), task.continuations()) for t in texts]
    return [distribution_from_logprobs(r.logprobs, r.lengths)[0] for r in backend.score_batch(reqs)]


def calibrated(probs: list[list[float]], cf: list[float]) -> list[list[float]]:
    from openautoglm.core.labels import calibrate

    return [calibrate(p, cf) for p in probs]


def mean(dists: list[list[float]]) -> list[float]:
    return [sum(d[i] for d in dists) / len(dists) for i in range(len(dists[0]))]


def summary(probs: list[list[float]], gold: list[str]) -> tuple[float, float]:
    pred = [LABELS[max(range(len(p)), key=p.__getitem__)] for p in probs]
    return sum(p == g for p, g in zip(pred, gold)) / len(gold), pred.count("positive") / len(pred)


def run(which: list[str]) -> list[dict[str, Any]]:
    from openautoglm import Pipeline, Task
    from openautoglm.backends.local import LocalBackend
    from openautoglm.core.outputs import content_free_inputs

    backend = LocalBackend()
    out: list[dict[str, Any]] = []
    for split in which:
        rows = load_rows(ROWS[split])
        texts, gold = [t for t, _ in rows], [g for _, g in rows]
        for name, task in ({} if args_pipeline_only else forms()).items():
            probs = probs_of(backend, task, texts)
            cf_old = mean(probs_of(backend, task, list(OLD_CONTENT_FREE)))
            neutral = content_free_inputs(task)
            cf_new = mean(probs_of(backend, task, list(neutral)))
            for calib, ps in (("none", probs), ("content-free x3", calibrated(probs, cf_old)),
                              (f"neutral x{len(neutral)} (new)", calibrated(probs, cf_new))):
                acc, pos = summary(ps, gold)
                out.append({"rows": split, "form": name, "calibration": calib, "accuracy": acc, "positive": pos})
                show(out[-1])
        natural = Task(name="sst", prompt_template=NATURAL, labels=LABELS)
        for calibrate in (False, True):
            task = natural.model_copy(update={"calibrate": True}) if calibrate else natural
            pipe = Pipeline(model=backend, task=task, store=False, cache=False)
            t0 = time.perf_counter()
            results = pipe.run_batch([{"text": t} for t in texts])
            dt = time.perf_counter() - t0
            pred = [r["label"] for r in results]
            out.append({"rows": split, "form": "natural, defaults (Pipeline)", "calibration":
                        "calibrate=True" if calibrate else "defaults", "accuracy":
                        sum(p == g for p, g in zip(pred, gold)) / len(gold), "positive": pred.count("positive") / len(pred),
                        "method": results[0]["method"], "seconds": round(dt, 1)})
            show(out[-1])
            if not args_pipeline:
                break
    backend.close()
    return out


def show(r: dict[str, Any]) -> None:
    print(f"{r['rows']:5} {r['form']:34} {r['calibration']:18} {r['accuracy']:5.2f} {r['positive']:5.2f}  "
          f"{r.get('method', '')}", flush=True)


args_pipeline = True
args_pipeline_only = False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", choices=["eval", "dev", "both"], default="eval")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-calibrated-pipeline", action="store_true", help="skip the calibrate=True pipeline run")
    ap.add_argument("--pipeline-only", action="store_true", help="only the framework's own runs (defaults, calibrate)")
    args = ap.parse_args()
    global args_pipeline, args_pipeline_only
    args_pipeline = not args.no_calibrated_pipeline
    args_pipeline_only = args.pipeline_only
    print(f"{'rows':5} {'prompt form':34} {'calibration':18} {'acc':>5} {'pos':>5}  method", flush=True)
    table = run(["dev", "eval"] if args.rows == "both" else [args.rows])
    if args.json:
        args.json.write_text(json.dumps(table, indent=1), encoding="utf-8")
    assert not any(math.isnan(r["accuracy"]) for r in table)


if __name__ == "__main__":
    main()
