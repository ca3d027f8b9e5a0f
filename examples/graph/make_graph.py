"""Generate the example graph: a 3-community stochastic block model with noisy features.

    python examples/graph/make_graph.py   # rewrites nodes.csv and edges.csv next to this file

300 nodes (100 per class), 16 features (class mean + Gaussian noise, so features alone
are only moderately informative), edges inside a class with p=0.05 and across with
p=0.004.  Split column: 20 train nodes per class, 100 validation, the rest test.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def make(n_per_class: int = 100, n_classes: int = 3, dim: int = 16, p_in: float = 0.05, p_out: float = 0.004,
         noise: float = 2.0, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    means = rng.normal(0, 1, (n_classes, dim))
    x = means[y] + rng.normal(0, noise, (len(y), dim))
    same = y[:, None] == y[None, :]
    prob = np.where(same, p_in, p_out)
    upper = np.triu(rng.random((len(y), len(y))) < prob, k=1)
    src, dst = np.nonzero(upper)
    split = np.array(["test"] * len(y), dtype=object)
    for c in range(n_classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        split[idx[:20]] = "train"
        split[idx[20:20 + 100 // n_classes]] = "val"
    return x, y, np.vstack([src, dst]), list(split)


def main() -> None:
    here = Path(__file__).resolve().parent
    x, y, edges, split = make()
    names = ["alpha", "beta", "gamma"]
    with (here / "nodes.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "label", "split"] + [f"f{j}" for j in range(x.shape[1])])
        for i in range(len(y)):
            w.writerow([f"n{i}", names[y[i]], split[i]] + [f"{v:.4f}" for v in x[i]])
    with (here / "edges.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "target"])
        for a, b in edges.T:
            w.writerow([f"n{a}", f"n{b}"])
    print(f"wrote {len(y)} nodes, {edges.shape[1]} edges to {here}")


if __name__ == "__main__":
    main()
