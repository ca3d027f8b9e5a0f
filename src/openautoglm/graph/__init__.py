"""Node classification with learned graph structure: GCN, GAT, GraphSAGE and an adaptive learner.

>>> from openautoglm.graph import load_planetoid, train_seeds
>>> runs = train_seeds(load_planetoid("cora"), "adaptive", seeds=10)
>>> f"{100 * runs.test_mean:.1f} ± {100 * runs.test_std:.1f}"

``import openautoglm.graph`` is cheap: torch, numpy and scipy load on first use of a name.
Needs the ``graph`` extra: ``pip install 'openautoglm[graph]'``.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY = {
    "GraphData": "openautoglm.graph.data",
    "load_planetoid": "openautoglm.graph.data",
    "load_graph_csv": "openautoglm.graph.data",
    "load_dataset": "openautoglm.graph.data",
    "knn_graph": "openautoglm.graph.data",
    "train_node_classifier": "openautoglm.graph.train",
    "train_seeds": "openautoglm.graph.train",
    "RunResult": "openautoglm.graph.train",
    "SeedsResult": "openautoglm.graph.train",
    "DEFAULTS": "openautoglm.graph.train",
    "MODELS": "openautoglm.graph.train",
    "NodeClassifier": "openautoglm.graph.estimator",
    "AdaptiveGraphLearner": "openautoglm.graph.estimator",
    "homophily": "openautoglm.graph.analysis",
    "graph_stats": "openautoglm.graph.analysis",
    "export_edges": "openautoglm.graph.analysis",
    "plot_graph_comparison": "openautoglm.graph.analysis",
    "safe_load": "openautoglm.graph.safe_pickle",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
