from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openautoglm.graph.data import GraphData, _undirected

PLANETOID = Path(__file__).resolve().parents[2] / "../shared/data/planetoid"


def planetoid_root() -> Path:
    if not (PLANETOID / "ind.cora.x").is_file():
        pytest.skip(f"Planetoid data not found at {PLANETOID}")
    return PLANETOID


def sbm_graph(n_per_class: int = 40, n_classes: int = 3, dim: int = 8, p_in: float = 0.15, p_out: float = 0.01,
              noise: float = 1.5, seed: int = 0) -> GraphData:
    """A small stochastic block model with noisy class-mean features and a 10/10/rest split per class."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = (rng.normal(0, 1, (n_classes, dim))[y] + rng.normal(0, noise, (len(y), dim))).astype(np.float32)
    upper = np.triu(rng.random((len(y), len(y))) < np.where(y[:, None] == y[None, :], p_in, p_out), k=1)
    src, dst = np.nonzero(upper)
    n = len(y)
    masks = [np.zeros(n, dtype=bool) for _ in range(3)]
    for c in range(n_classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        masks[0][idx[:10]] = True
        masks[1][idx[10:20]] = True
        masks[2][idx[20:]] = True
    return GraphData(x=x, y=y, edge_index=_undirected(src, dst, n), train_mask=masks[0], val_mask=masks[1],
                     test_mask=masks[2], classes=[f"c{i}" for i in range(n_classes)], name="sbm")


@pytest.fixture
def sbm() -> GraphData:
    return sbm_graph()
