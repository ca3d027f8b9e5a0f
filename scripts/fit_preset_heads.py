"""Fit the label heads the presets ship (``src/openautoglm/core/heads/NAME.json``).

    .venv/bin/python scripts/fit_preset_heads.py [--rows 1000] [--seed 0] [--cache feats.npz]

``sentiment.v1.zh.gemma3-270m``: a logistic regression over hidden states of the embedded
multilingual model (``local:gemma3-270m``) for the ``sentiment.v1`` preset's Chinese task.

* Fit data: ChnSentiCorp ``train.tsv`` only (``shared/data/chnsenticorp``): the rows are
  shuffled with ``--seed`` and the first ``--rows / 2`` of each label are taken (balanced).
  No row of ``dev.tsv`` is read, so the dev split stays unseen for evaluation
  (``bench/zh_sentiment_head.py``).
* Features: exactly what the task computes at run time: the record as the preset's task
  renders it for the local backend (template + the ``情感：`` answer cue,
  ``Task.head_input``), through ``backend.features`` (the hidden-state API a head's
  ``model`` features use), one pass for every block with mean and last-token pooling.
* Block(s), pooling and ``C`` are chosen by 5-fold stratified cross-validation on the fit
  rows alone (every block and pooling at ``C=0.01``, the best four over a ``C`` grid, pairs
  of the best three blocks); the winner is refitted on all of them.  The standardisation is folded into
  the coefficients, which are stored as float32 (base64), with the provenance.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from openautoglm.backends.registry import create_backend  # noqa: E402
from openautoglm.core.head import SHIPPED_DIR, backend_model  # noqa: E402
from openautoglm.core.task import Task  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "chnsenticorp"
NAME = "sentiment.v1.zh.gemma3-270m"
MODEL = "local:gemma3-270m"
TEMPLATE = "判断以下句子的情感倾向：{text}"
LABELS = {1: "正面", 0: "负面"}
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)
C_START = 0.01  # core.head.DEFAULT_C["model"]


def read_rows(path: Path) -> list[tuple[int, str, int]]:
    """``(row index, text, label)`` of a ChnSentiCorp TSV (row index: 0 = first data line)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    ti, li = header.index("text_a"), header.index("label")
    rows = []
    for i, line in enumerate(lines[1:]):
        cols = line.split("\t")
        if len(cols) > max(ti, li) and cols[li].strip() in ("0", "1"):
            rows.append((i, cols[ti].strip(), int(cols[li])))
    return rows


def fit_rows(n: int, seed: int) -> list[tuple[int, str, int]]:
    """The first ``n / 2`` rows of each label of ``train.tsv`` after a seeded shuffle."""
    rows = read_rows(DATA / "train.tsv")
    random.Random(seed).shuffle(rows)
    out = []
    for label in (1, 0):
        out += [r for r in rows if r[2] == label][: n // 2]
    return sorted(out)


def seed_task() -> Task:
    """The preset's Chinese task without its head (the head is what is being fitted)."""
    return Task(name="sentiment_analysis", prompt_template=TEMPLATE, head=None)


def cv_accuracy(x: np.ndarray, y: np.ndarray, C: float, folds: int = 5, seed: int = 0) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    scores = []
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        scaler = StandardScaler().fit(x[tr])
        model = LogisticRegression(C=C, max_iter=3000).fit(scaler.transform(x[tr]), y[tr])
        scores.append(float((model.predict(scaler.transform(x[te])) == y[te]).mean()))
    return float(np.mean(scores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1000, help="fit rows, half of each label")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, help="keep the extracted features here (re-runs skip the model pass)")
    ap.add_argument("--out", type=Path, default=SHIPPED_DIR / f"{NAME}.json")
    args = ap.parse_args()

    rows = fit_rows(args.rows, args.seed)
    y = np.array([r[2] for r in rows])
    backend = create_backend(MODEL)
    task = seed_task().for_backend(backend)
    texts = [task.head_input({"text": text}, "model") for _, text, _ in rows]
    layers = list(range(backend.num_layers))
    if args.cache and args.cache.is_file():
        feats = np.load(args.cache)["feats"]
        speed = None
    else:
        t0, parts = time.perf_counter(), []
        for start in range(0, len(texts), 100):
            parts.append(backend.features(texts[start:start + 100], layers, "mean,last"))
            print(f"features {start + len(parts[-1])}/{len(texts)} {time.perf_counter() - t0:.0f}s", flush=True)
        feats = np.concatenate(parts)  # [N, layers, 2H]: mean then last
        speed = len(texts) / (time.perf_counter() - t0)
        if args.cache:
            np.savez(args.cache, feats=feats)
    hidden = feats.shape[2] // 2
    pooled = {"mean": feats[:, :, :hidden], "last": feats[:, :, hidden:]}

    def select(blocks: list[int], pooling: str) -> np.ndarray:
        return pooled[pooling][:, blocks, :].reshape(len(rows), -1)

    results = []  # (cv accuracy, blocks, pooling, C)
    # 1. every block, both poolings, at the default strength
    for pooling in ("mean", "last"):
        for block in layers[1:]:
            results.append((cv_accuracy(select([block], pooling), y, C_START), [block], pooling, C_START))
    ranked = sorted(results, key=lambda r: -r[0])
    print("cv, single blocks at C=%g: %s" % (C_START, [(r[1][0], r[2], round(r[0], 3)) for r in ranked[:6]]), flush=True)
    # 2. the four best (block, pooling) over the C grid
    for _, blocks, pooling, _ in ranked[:4]:
        for C in C_GRID:
            if C != C_START:
                results.append((cv_accuracy(select(blocks, pooling), y, C), blocks, pooling, C))
    # 3. pairs of the three best blocks of the best pooling, at that setting's best C
    best = max(results, key=lambda r: r[0])
    tops = [r[1][0] for r in ranked if r[2] == best[2]][:3]
    for i, a in enumerate(tops):
        for b in tops[i + 1:]:
            results.append((cv_accuracy(select(sorted([a, b]), best[2]), y, best[3]), sorted([a, b]), best[2], best[3]))
    # the best; ties go to fewer blocks (a smaller file), then the stronger regularisation
    acc, blocks, pooling, C = max(results, key=lambda r: (round(r[0], 4), -len(r[1]), -r[3]))
    print(f"chosen: blocks {blocks}, pooling {pooling}, C {C}: 5-fold CV accuracy {acc:.3f}", flush=True)

    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = select(blocks, pooling)
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=C, max_iter=3000).fit(scaler.transform(x), y)
    coef = model.coef_ / scaler.scale_  # standardisation folded in: w·(x-m)/s + b = (w/s)·x + b - (w/s)·m
    intercept = model.intercept_ - coef @ scaler.mean_
    coef32 = coef.astype(np.float32)
    classes = [LABELS[int(c)] for c in model.classes_]
    train_acc = float((model.predict(scaler.transform(x)) == y).mean())
    ids = ",".join(str(r[0]) for r in rows)
    data = {
        "name": NAME, "format": 1, "preset": "sentiment.v1", "language": "zh",
        "model": MODEL, "model_label": backend_model(backend),
        "labels": [LABELS[1], LABELS[0]], "classes": classes,
        "features": "model", "layers": blocks, "pooling": pooling,
        "template": TEMPLATE, "cue": task.answer_prefix,
        "C": C, "cv_accuracy": round(acc, 4), "train_accuracy": round(train_acc, 4),
        "fit": {"dataset": "ChnSentiCorp", "file": "chnsenticorp/train.tsv", "split": "train", "rows": len(rows),
                "per_label": {LABELS[k]: int((y == k).sum()) for k in (1, 0)}, "seed": args.seed,
                "selection": f"train.tsv data rows shuffled with random.Random({args.seed}), the first "
                             f"{args.rows // 2} of each label",
                "row_ids_sha256": hashlib.sha256(ids.encode()).hexdigest(),
                "selected_by": f"5-fold stratified CV on the fit rows: each block 1..{layers[-1]} with mean and "
                               f"last pooling at C={C_START}, the best four over C in {list(C_GRID)}, pairs of "
                               "the best three blocks",
                "script": "scripts/fit_preset_heads.py", "date": date.today().isoformat()},
        "dtype": "float32", "shape": list(coef32.shape),
        "coef": base64.b64encode(coef32.tobytes()).decode(),
        "intercept": [float(v) for v in intercept],
    }
    if speed is not None:
        data["fit"]["feature_rows_per_s"] = round(speed, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
