"""The two embedded models side by side: SmolLM2-135M-Instruct vs gemma-3-270m (issue 19).

    python bench/chinese_models.py [--rows 200] [--train 400] [--json out.json]

For ChnSentiCorp (Chinese) and SST-2 (English), per model, in one run:

* zero-shot: label scores (length-normalised log-probabilities of the label continuations)
  after a plain-text cue prompt; accuracy at the raw argmax, accuracy after batch
  calibration (the mean score difference over the run's own unlabeled inputs is
  subtracted: no labels used) and AUROC (threshold-free separation);
* few-shot: the same with four demonstrations (two per label, short training rows);
* probe: logistic regression on mean-pooled hidden states (``backend.features()``) of
  ``--train`` training rows; the block is chosen by 5-fold cross-validation on those
  training rows only, then accuracy on the test rows;
* speed: load seconds, scored rows/s (zero-shot), feature rows/s, greedy decode tokens/s.

Test rows: ChnSentiCorp dev.tsv, SST-2 dev.tsv rows 300.. (rows the project's prompt
format was never tuned on); a seeded sample of ``--rows`` each.  Texts are cut to
``MAX_CHARS`` characters.  Prints one table.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MAX_CHARS = 96
MODELS = {"SmolLM2-135M": "local", "gemma-3-270m": "local:gemma3-270m"}
TASKS = {
    "ChnSentiCorp": {"cue": "评论：{text}\n情感：", "labels": ("正面", "负面"), "sep": "\n\n"},
    "SST-2": {"cue": "Review: {text}\nSentiment:", "labels": (" positive", " negative"), "sep": "\n\n"},
}


def read_tsv(path: Path, text_col: str) -> list[tuple[str, int]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    ti, li = header.index(text_col), header.index("label")
    rows = []
    for line in lines[1:]:
        cols = line.split("\t")
        if len(cols) > max(ti, li):
            rows.append((cols[ti].strip()[:MAX_CHARS], int(cols[li])))
    return rows


def datasets(n_test: int, n_train: int, seed: int = 0) -> dict[str, dict[str, list[tuple[str, int]]]]:
    rng = random.Random(seed)
    out = {}
    for name, folder, col, skip in (("ChnSentiCorp", "chnsenticorp", "text_a", 0), ("SST-2", "sst2", "sentence", 300)):
        test = read_tsv(DATA / folder / "dev.tsv", col)[skip:]
        train = read_tsv(DATA / folder / "train.tsv", col)
        rng.shuffle(train)
        shots = [next(r for r in train if r[1] == lab and len(r[0]) < 60) for lab in (1, 0, 1, 0)]
        probe = [r for r in train if r not in shots][:n_train]
        out[name] = {"test": rng.sample(test, min(n_test, len(test))), "train": probe, "shots": shots}
    return out


def auroc(scores: list[float], gold: list[int]) -> float:
    pos = [s for s, g in zip(scores, gold) if g == 1]
    neg = [s for s, g in zip(scores, gold) if g == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / max(1, len(pos) * len(neg))


def label_scores(backend, prompts: list[str], labels: tuple[str, str]) -> tuple[list[float], float]:
    """Per prompt: normalised score(positive) - score(negative); and the seconds it took."""
    from openautoglm.backends.base import ScoreRequest

    t0 = time.perf_counter()
    results = backend.score_batch([ScoreRequest(p, labels) for p in prompts])
    dt = time.perf_counter() - t0
    diffs = [r.logprobs[0] / r.lengths[0] - r.logprobs[1] / r.lengths[1] for r in results]
    return diffs, dt


def prompt_metrics(diffs: list[float], gold: list[int]) -> dict[str, float]:
    mean = sum(diffs) / len(diffs)
    acc = sum((d > 0) == (g == 1) for d, g in zip(diffs, gold)) / len(gold)
    cal = sum((d > mean) == (g == 1) for d, g in zip(diffs, gold)) / len(gold)
    return {"acc": acc, "acc_cal": cal, "auroc": auroc(diffs, gold)}


def probe(backend, train: list[tuple[str, int]], test: list[tuple[str, int]]) -> dict[str, float]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = backend.num_layers
    layers = sorted({n // 3, n // 2, (2 * n) // 3})  # the pass stops at the deepest
    t0 = time.perf_counter()
    x_train = backend.features([t for t, _ in train], layers)
    x_test = backend.features([t for t, _ in test], layers)
    dt = time.perf_counter() - t0
    y_train, y_test = np.array([g for _, g in train]), np.array([g for _, g in test])

    def model():  # type: ignore[no-untyped-def]
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000))

    cv = [cross_val_score(model(), x_train[:, j], y_train, cv=5).mean() for j in range(len(layers))]
    best = int(np.argmax(cv))
    clf = model().fit(x_train[:, best], y_train)
    return {"acc": float(clf.score(x_test[:, best], y_test)), "layer": layers[best],
            "feat_rows_s": (len(train) + len(test)) / dt}


def decode_speed(backend) -> float:
    from openautoglm.backends.base import GenerationRequest

    req = GenerationRequest("Once upon a time, in a small village by the sea,", max_tokens=32)
    backend.generate([GenerationRequest(req.prompt, max_tokens=2)])
    t0 = time.perf_counter()
    out = backend.generate([req])[0]
    return out.completion_tokens / (time.perf_counter() - t0)


def run(n_test: int, n_train: int, models: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    from openautoglm.backends.registry import create_backend

    data = datasets(n_test, n_train)
    report: dict[str, dict[str, dict[str, float]]] = {}
    for model_name, spec in MODELS.items():
        if model_name not in models:
            continue
        t0 = time.perf_counter()
        backend = create_backend(spec)
        load = time.perf_counter() - t0
        report[model_name] = {"speed": {"load_s": load, "decode_tok_s": decode_speed(backend)}}
        for task_name, task in TASKS.items():
            d = data[task_name]
            gold = [g for _, g in d["test"]]
            cue, labels = task["cue"], task["labels"]
            zs_prompts = [cue.format(text=t) for t, _ in d["test"]]
            diffs, dt = label_scores(backend, zs_prompts, labels)
            row = {f"zs_{k}": v for k, v in prompt_metrics(diffs, gold).items()}
            row["score_rows_s"] = len(zs_prompts) / dt
            demos = "".join(cue.format(text=t) + labels[1 - g] + task["sep"] for t, g in d["shots"])
            diffs, _ = label_scores(backend, [demos + p for p in zs_prompts], labels)
            row.update({f"fs_{k}": v for k, v in prompt_metrics(diffs, gold).items()})
            row.update({f"probe_{k}": v for k, v in probe(backend, d["train"], d["test"]).items()})
            report[model_name][task_name] = row
            print(model_name, task_name, json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
        backend.close()
    return report


def table(report: dict[str, dict[str, dict[str, float]]], n_test: int, n_train: int) -> str:
    lines = [f"| model | data | zero-shot acc / calibrated / AUROC | 4-shot acc / calibrated / AUROC | "
             f"probe acc ({n_train} train rows; block) | scored rows/s | feature rows/s |",
             "|---|---|---|---|---|---|---|"]
    for model, parts in report.items():
        for task in TASKS:
            r = parts[task]
            lines.append(
                f"| {model} | {task} ({n_test} rows) | {r['zs_acc']:.3f} / {r['zs_acc_cal']:.3f} / {r['zs_auroc']:.3f} "
                f"| {r['fs_acc']:.3f} / {r['fs_acc_cal']:.3f} / {r['fs_auroc']:.3f} "
                f"| {r['probe_acc']:.3f} ({int(r['probe_layer'])}) | {r['score_rows_s']:.1f} | {r['probe_feat_rows_s']:.1f} |")
    lines.append("")
    lines.append("| model | load s | greedy decode tok/s |")
    lines.append("|---|---|---|")
    for model, parts in report.items():
        lines.append(f"| {model} | {parts['speed']['load_s']:.1f} | {parts['speed']['decode_tok_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200, help="test rows per dataset")
    parser.add_argument("--train", type=int, default=400, help="training rows for the linear probe")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS),
                        help="run only these (e.g. one per process, side by side on a busy machine)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    report = run(args.rows, args.train, args.models)
    print(table(report, args.rows, args.train))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
