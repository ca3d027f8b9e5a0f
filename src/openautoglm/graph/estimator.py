"""scikit-learn-style estimators over a :class:`~openautoglm.graph.data.GraphData`.

>>> clf = AdaptiveGraphLearner(k=10, random_state=0).fit(graph)
>>> clf.predict()[graph.test_mask], clf.score(mask=graph.test_mask)
>>> edge_index, weight = clf.learned_graph_

Transductive: ``fit`` trains on the graph's train nodes (validation nodes drive early
stopping); ``predict``/``predict_proba`` return one row per node of that graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import OpenAutoGLMError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .data import GraphData

__all__ = ["AdaptiveGraphLearner", "NodeClassifier"]


class NodeClassifier:
    """A GNN node classifier: ``model`` is ``gcn``, ``gat``, ``sage`` or ``adaptive``;
    ``params`` overrides :data:`~openautoglm.graph.train.DEFAULTS`."""

    def __init__(self, model: str = "gcn", params: dict[str, Any] | None = None, knn_k: int = 10,
                 random_state: int = 0) -> None:
        self.model = model
        self.params = params
        self.knn_k = knn_k
        self.random_state = random_state

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        del deep
        return {"model": self.model, "params": self.params, "knn_k": self.knn_k, "random_state": self.random_state}

    def set_params(self, **values: Any) -> "NodeClassifier":
        for key, value in values.items():
            if key not in self.get_params():
                raise ValueError(f"{type(self).__name__} has no parameter {key!r}")
            setattr(self, key, value)
        return self

    def _overrides(self) -> dict[str, Any]:
        return dict(self.params or {})

    def fit(self, graph: "GraphData", y: Any = None) -> "NodeClassifier":
        """Train on ``graph`` (``y`` is ignored: labels and splits come with the graph)."""
        del y
        from .train import train_node_classifier

        run = train_node_classifier(graph, self.model, seed=self.random_state, params=self._overrides(),
                                    knn_k=self.knn_k, export_graph=True)
        self.run_ = run
        self.classes_ = list(graph.classes)
        self.proba_ = run.proba
        self.learned_graph_ = run.learned_edges
        self.n_nodes_ = graph.num_nodes
        return self

    def _check(self) -> None:
        if not hasattr(self, "proba_"):
            raise OpenAutoGLMError(f"{type(self).__name__} is not fitted", hint="call fit(graph) first")

    def predict_proba(self, graph: "GraphData | None" = None) -> "np.ndarray":
        """Class probabilities per node of the fitted graph (``N x C``)."""
        self._check()
        if graph is not None and graph.num_nodes != self.n_nodes_:
            raise OpenAutoGLMError("predict works on the graph the model was fitted on (transductive)",
                                   hint="add the new nodes to the graph and fit again")
        return self.proba_

    def predict(self, graph: "GraphData | None" = None) -> "np.ndarray":
        """Predicted class index per node."""
        return self.predict_proba(graph).argmax(1)

    def score(self, graph: "GraphData | None" = None, mask: "np.ndarray | None" = None) -> float:
        """Accuracy over ``mask`` (default: the test nodes of ``graph``; needs one of them)."""
        if mask is None:
            if graph is None:
                raise ValueError("score needs graph= or mask=")
            mask = graph.test_mask
        labels = (graph.y if graph is not None else self._y_for_score)
        pred = self.predict()
        keep = mask & (labels >= 0)
        return float((pred[keep] == labels[keep]).mean())

    @property
    def _y_for_score(self) -> "np.ndarray":
        raise ValueError("score(mask=...) without graph= needs the graph for its labels: pass graph=")


class AdaptiveGraphLearner(NodeClassifier):
    """The adaptive structure learner as an estimator; keyword arguments override its defaults
    (``k``, ``lam``, ``temperature``, ``propagation``, ``epsilon``, regularizer weights, ...)."""

    def __init__(self, knn_k: int = 10, random_state: int = 0, **params: Any) -> None:
        super().__init__("adaptive", params or None, knn_k, random_state)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"knn_k": self.knn_k, "random_state": self.random_state, **(self.params or {})}

    def set_params(self, **values: Any) -> "AdaptiveGraphLearner":
        for key, value in values.items():
            if key in ("knn_k", "random_state"):
                setattr(self, key, value)
            else:
                self.params = {**(self.params or {}), key: value}
        return self
