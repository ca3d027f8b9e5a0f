"""Adaptive graph structure learning (IDGL-style), kept sparse.

The learned adjacency is ``A = softmax(ReLU(sim(H W, H W)))`` restricted to each node's
top-``k`` neighbours (and to similarities above ``epsilon``), where ``sim`` is a
multi-head weighted cosine and ``H`` are node representations.  Neighbour *indices* are
chosen in row chunks without gradients (memory ``chunk x N``, never ``N x N``); the
similarities of the chosen pairs are then recomputed with gradients, which gives the
same gradient as a differentiable top-k.

:class:`AdaptiveGNN` (one training step):

1. ``A_0``: the normalised input graph (a kNN graph of the features when there is none);
2. ``A_feat``: learned from the features (through a learned projection ``X W_g``);
3. for ``t = 1..iterations``: ``A_t`` learned from the previous node embeddings, and the
   propagation graph ``lam * A_0 + (1 - lam) * (eta * A_t + (1 - eta) * A_feat)``;
4. losses: classification on the last iteration (and on the input-graph pass), plus graph
   regularizers (smoothness, connectivity, sparsity) on the learned graphs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .losses import connectivity, smoothness, sparsity
from .models import GraphInputs, _linear
from .ops import EdgeOperator, normalize_edges, sparse_dropout, spmm

__all__ = ["AdaptiveGNN", "GraphLearner", "topk_neighbours"]


@torch.no_grad()
def topk_neighbours(z: torch.Tensor, k: int, chunk: int = 1024, candidates: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """Indices (``N x k``) of each row's ``k`` most similar rows by dot product, self excluded.

    Computed over row chunks (``chunk x N`` similarities at a time), or only among
    ``candidates`` (``N x m`` indices) when given.
    """
    n = z.shape[0]
    k = min(k, n - 1)
    if candidates is not None:
        sims = (z.unsqueeze(1) * z[candidates]).sum(-1)
        sims = sims.masked_fill(candidates == torch.arange(n).unsqueeze(1), float("-inf"))
        return candidates.gather(1, sims.topk(k, dim=1).indices)
    out = torch.empty((n, k), dtype=torch.long)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        sims = z[start:stop] @ z.t()
        sims[torch.arange(stop - start), torch.arange(start, stop)] = float("-inf")
        out[start:stop] = sims.topk(k, dim=1).indices
    return out


class GraphLearner(nn.Module):
    """Sparse metric learner: multi-head weighted cosine, top-k + epsilon, row softmax.

    Each node's ``k`` neighbours are picked (with gradients) among ``candidates x k``
    candidates; the candidates come from an exact chunked search over all nodes, run on
    the first call and again every ``refresh`` training calls (``0`` = never again).
    Per call the cost is ``O(N * candidates * k * dim)``; a refresh is ``O(N^2 * dim)``
    time but ``O(chunk * N)`` memory.
    """

    def __init__(self, dim: int, heads: int = 4, k: int = 10, epsilon: float = 0.0, temperature: float = 0.1,
                 refresh: int = 10, candidates: int = 2, chunk: int = 1024) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(heads, dim))
        self.heads, self.k, self.epsilon, self.temperature = heads, k, epsilon, temperature
        self.refresh, self.n_candidates, self.chunk = max(0, refresh), max(1, candidates), chunk
        self._calls = 0
        self._candidates: torch.Tensor | None = None

    def embed(self, h: torch.Tensor) -> torch.Tensor:
        """``N x (heads*dim)`` rows whose dot products are the mean per-head cosine."""
        z = F.normalize(h.unsqueeze(0) * self.weight.unsqueeze(1), dim=-1)  # heads x N x d
        return z.permute(1, 0, 2).reshape(h.shape[0], -1) / math.sqrt(self.heads)

    def reset(self) -> None:
        """Forget the candidate neighbours (the next call searches all nodes)."""
        self._calls, self._candidates = 0, None

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Directed learned edges ``(edge_index, weight)``: ``edge_index[0]`` aggregates from ``[1]``;
        each node's weights sum to 1 (a softmax over its neighbours)."""
        n = h.shape[0]
        z = self.embed(h)
        stale = self._candidates is None or self._candidates.shape[0] != n
        if stale or (self.training and self.refresh and self._calls % self.refresh == 0):
            self._candidates = topk_neighbours(z.detach(), self.n_candidates * self.k, self.chunk)
        if self.training:
            self._calls += 1
        cand = self._candidates
        assert cand is not None
        k = min(self.k, cand.shape[1])
        sims = (z.unsqueeze(1) * z[cand]).sum(-1)  # N x m, with gradients
        top, pos = sims.topk(k, dim=1)
        cols = cand.gather(1, pos).reshape(-1)
        rows = torch.arange(n).repeat_interleave(k)
        sim = F.relu(top)
        if self.epsilon > 0:
            mask = sim < self.epsilon
            mask[:, 0] = False  # keep each node's best neighbour
            sim = sim.masked_fill(mask, float("-inf"))
        weight = torch.softmax(sim / self.temperature, dim=1).reshape(-1)
        keep = weight > 0
        return torch.stack([rows[keep], cols[keep]]), weight[keep]


def _symmetric(edge_index: torch.Tensor, weight: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A + A^T) / 2`` as an edge list (duplicates are summed by the propagation)."""
    del n
    return torch.cat([edge_index, edge_index.flip(0)], 1), torch.cat([weight, weight]) / 2


class MixedAdjacency:
    """``lam * A_0 + sum_i c_i * norm(A_i + I)`` as one sparse operator (:class:`EdgeOperator`).

    The learned parts keep their gradients per edge: ``torch.sparse.mm``'s backward for a
    sparse COO operand with gradients would materialise a dense ``N x N`` matrix.
    """

    def __init__(self, base: torch.Tensor, base_coef: float, n: int) -> None:
        self.base, self.base_coef, self.n = base.coalesce(), base_coef, n
        self.parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._op: EdgeOperator | None = None

    def add(self, edge_index: torch.Tensor, weight: torch.Tensor, coef: float) -> None:
        loop_w = weight.detach().max() if weight.numel() else torch.tensor(1.0)
        loops = torch.arange(self.n)
        ei = torch.cat([edge_index, torch.stack([loops, loops])], 1)
        w = torch.cat([weight, loop_w.expand(self.n)])
        self.parts.append((ei, normalize_edges(ei, w, self.n, "sym") * coef))
        self._op = None

    def operator(self) -> EdgeOperator:
        """The whole mixture as one :class:`EdgeOperator` (built once, then cached)."""
        if self._op is None:
            ei = torch.cat([self.base.indices()] + [p[0] for p in self.parts], 1)
            w = torch.cat([self.base.values() * self.base_coef] + [p[1] for p in self.parts])
            self._op = EdgeOperator(ei, w, self.n, grad_from=self.base.values().numel())
        return self._op

    def detach(self) -> EdgeOperator:
        """The mixture with constant weights (no gradient to the learned edges; shares the operator)."""
        return self.operator().detach()

    def __matmul__(self, h: torch.Tensor) -> torch.Tensor:
        return self.operator() @ h


class AdaptiveGNN(nn.Module):
    """Node classifier that learns its propagation graph jointly with the node embeddings.

    ``propagation``: ``gcn`` (two graph convolutions), ``appnp`` (an MLP followed by
    ``appnp_steps`` personalised-PageRank steps with teleport ``appnp_alpha``) or ``grand``
    (GRAND-style random propagation: ``samples`` DropNode augmentations of ``X W``, each
    propagated with the mixed-order mean ``sum_{t<=order} A^t / (order + 1)`` over the mixed
    graph, then ReLU, ``hidden_dropout`` and a linear layer; a consistency loss pulls every
    augmentation towards their sharpened mean).  ``lam`` is the weight of the input graph,
    ``eta`` that of the embedding graph against the feature graph.
    """

    def __init__(self, in_dim: int, hidden: int, n_classes: int, *, dropout: float = 0.5,
                 input_dropout: float | None = None, k: int = 5, heads: int = 4, epsilon: float = 0.0,
                 temperature: float = 0.1, lam: float = 0.9, eta: float = 1.0, iterations: int = 1,
                 graph_dim: int = 64, refresh: int = 10, candidates: int = 2, propagation: str = "grand",
                 appnp_steps: int = 10,
                 appnp_alpha: float = 0.1, smooth_weight: float = 0.2, conn_weight: float = 0.0,
                 sparse_weight: float = 0.0, init_loss_weight: float = 1.0, chunk: int = 1024, order: int = 8,
                 samples: int = 4, dropnode: float = 0.5, hidden_dropout: float | None = None,
                 consistency: float = 1.0, sharpen: float = 0.5, graph_every: int = 5) -> None:
        super().__init__()
        if propagation not in ("gcn", "appnp", "grand"):
            raise ValueError(f"propagation must be 'gcn', 'appnp' or 'grand', not {propagation!r}")
        self.lin1 = nn.Linear(in_dim, hidden)
        self.lin2 = nn.Linear(hidden, n_classes)
        self.feat_proj = nn.Linear(in_dim, graph_dim, bias=False)
        self.feat_learner = GraphLearner(graph_dim, heads, k, epsilon, temperature, refresh, candidates, chunk)
        emb_dim = hidden if propagation == "gcn" else n_classes
        self.emb_proj = nn.Linear(emb_dim, graph_dim, bias=False) if emb_dim > graph_dim else nn.Identity()
        self.emb_learner = GraphLearner(min(emb_dim, graph_dim), heads, k, epsilon, temperature, refresh, candidates,
                                        chunk)
        self.dropout = dropout
        self.input_dropout = dropout if input_dropout is None else input_dropout
        self.lam, self.eta, self.iterations = lam, eta, iterations
        self.propagation, self.appnp_steps, self.appnp_alpha = propagation, appnp_steps, appnp_alpha
        self.reg = {"smooth": smooth_weight, "conn": conn_weight, "sparse": sparse_weight}
        self.init_loss_weight = init_loss_weight
        self.order, self.samples, self.dropnode = order, max(1, samples), dropnode
        self.hidden_dropout = dropout if hidden_dropout is None else hidden_dropout
        self.consistency, self.sharpen = consistency, sharpen
        self.graph_every = max(1, graph_every)
        self._steps = 0
        self._parts: list[tuple[torch.Tensor, torch.Tensor, float]] | None = None
        self._cached: tuple[torch.Tensor, Any] | None = None
        self.learned_graph_: tuple[torch.Tensor, torch.Tensor] | None = None

    def first_layer_params(self) -> list[nn.Parameter]:
        return list(self.lin1.parameters())

    # -- propagation ---------------------------------------------------------------------
    def _propagate(self, xw: torch.Tensor, adj: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, embedding the next graph is learned from)."""
        if self.propagation == "gcn":
            h = F.relu(_apply(adj, xw))
            out = _apply(adj, self.lin2(F.dropout(h, self.dropout, self.training)))
            return out, h
        h0 = self.lin2(F.dropout(F.relu(xw), self.dropout, self.training))
        z = h0
        for _ in range(self.appnp_steps):
            z = (1 - self.appnp_alpha) * _apply(adj, z) + self.appnp_alpha * h0
        return z, z

    def _xw(self, g: GraphInputs, augment: bool) -> torch.Tensor:
        """``X W`` without the bias, after input dropout when ``augment`` (redrawn per call)."""
        x = sparse_dropout(g.x, self.input_dropout, augment)
        return torch.sparse.mm(x, self.lin1.weight.t()) if x.is_sparse else x @ self.lin1.weight.t()

    def _grand(self, xw: torch.Tensor, adj: Any, augment: bool) -> torch.Tensor:
        """Logits of one GRAND pass: DropNode on ``X W`` (rows), mixed-order propagation, MLP head."""
        h = xw
        if augment and self.dropnode > 0:
            keep = torch.bernoulli(torch.full((h.shape[0], 1), 1 - self.dropnode))
            h = h * keep / (1 - self.dropnode)
        acc = h
        for _ in range(self.order):
            h = _apply(adj, h)
            acc = acc + h
        h = F.relu(acc / (self.order + 1) + self.lin1.bias)
        return self.lin2(F.dropout(h, self.hidden_dropout, augment))

    def _consistency(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """GRAND's consistency loss: mean squared distance of each augmentation's probabilities
        to the sharpened (temperature ``sharpen``), detached mean prediction."""
        ps = [torch.softmax(z, 1) for z in logits]
        avg = torch.stack(ps).mean(0)
        sharp = avg.pow(1 / self.sharpen)
        sharp = (sharp / sharp.sum(1, keepdim=True)).detach()
        return sum(((p - sharp) ** 2).sum(1).mean() for p in ps) / len(ps)

    def _learn_graphs(self, g: GraphInputs) -> tuple["MixedAdjacency", list[tuple[torch.Tensor, torch.Tensor]]]:
        """Learn the graphs (``iterations`` refinements, each from the clean class scores of a pass
        over the previous graph, starting at ``A_0``) and mix them with ``A_0``; with gradients."""
        n = g.n
        graphs: list[tuple[torch.Tensor, torch.Tensor]] = []
        feat_graph = None
        if self.eta < 1:
            feat_graph = _symmetric(*self.feat_learner(_linear(g.x, self.feat_proj)), n)
            graphs.append(feat_graph)
        adj: Any = g.adj_gcn
        parts: list[tuple[torch.Tensor, torch.Tensor, float]] = []
        for _ in range(max(1, self.iterations)):
            with torch.no_grad():
                emb = self._grand(self._xw(g, False), adj.detach() if isinstance(adj, MixedAdjacency) else adj, False)
            emb_graph = _symmetric(*self.emb_learner(self.emb_proj(emb)), n)
            graphs.append(emb_graph)
            parts = [(*emb_graph, self.eta)] + ([(*feat_graph, 1 - self.eta)] if feat_graph is not None else [])
            adj = self._mix(g, parts)
        self._parts = [(ei.detach(), w.detach(), c) for ei, w, c in parts]
        self._cached = (g.adj_gcn, adj.detach())
        return adj, graphs

    def _forward_grand(self, g: GraphInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        aux: dict[str, torch.Tensor] = {}
        aug = self.training
        adj: Any = g.adj_gcn
        graphs: list[tuple[torch.Tensor, torch.Tensor]] = []
        if self.lam < 1:
            cached = self._cached is not None and self._cached[0] is g.adj_gcn
            if not cached and self._parts is not None and self._parts[0][0].max() < g.n:
                self._cached = (g.adj_gcn, self._mix(g, self._parts).detach())  # restored by load_state_dict
                cached = True
            if not cached or (self.training and self._steps % self.graph_every == 0):
                adj, graphs = self._learn_graphs(g)
            else:
                assert self._cached is not None
                adj = self._cached[1]
            assert self._parts is not None
            self.learned_graph_ = (self._parts[0][0], self._parts[0][1])
        if self.training:
            self._steps += 1
        logits = self._grand(self._xw(g, aug), adj, aug)
        if self.training:
            # on refresh steps the learned edge weights get gradients through the first
            # augmentation only (per-edge gradients are the expensive part)
            adj_c = adj.detach() if isinstance(adj, MixedAdjacency) else adj
            outs = [logits] + [self._grand(self._xw(g, True), adj_c, True) for _ in range(self.samples - 1)]
            if len(outs) > 1:
                aux["augs"] = torch.stack(outs[1:])
            if self.consistency > 0 and len(outs) > 1:
                aux["consistency"] = self.consistency * self._consistency(outs)
            self._regularize(g, graphs, aux)
        return logits, aux

    def get_extra_state(self) -> Any:
        """The learned graph currently in use (``grand``): saved and restored with the weights."""
        return {"parts": self._parts}

    def set_extra_state(self, state: Any) -> None:
        self._parts = state.get("parts") if isinstance(state, dict) else None
        self._cached = None

    def _regularize(self, g: GraphInputs, graphs: list[tuple[torch.Tensor, torch.Tensor]],
                    aux: dict[str, torch.Tensor]) -> None:
        """Add the weighted graph regularizers of the learned ``graphs`` to ``aux``."""
        xf = g.dense_x() if self.reg["smooth"] else None
        for ei, w in graphs:
            if xf is not None:
                aux["smooth"] = aux.get("smooth", 0) + self.reg["smooth"] * smoothness(xf, ei, w)
            if self.reg["conn"]:
                aux["conn"] = aux.get("conn", 0) + self.reg["conn"] * connectivity(ei, w, g.n)
            if self.reg["sparse"]:
                aux["sparse"] = aux.get("sparse", 0) + self.reg["sparse"] * sparsity(w, g.n)

    def _mix(self, g: GraphInputs, learned: list[tuple[torch.Tensor, torch.Tensor, float]]) -> MixedAdjacency:
        """``lam * A_0 + (1 - lam) * sum_i c_i * norm(A_i + I)``."""
        adj = MixedAdjacency(g.adj_gcn, self.lam, g.n)
        for ei, w, coef in learned:
            if coef > 0:
                adj.add(ei, w, (1 - self.lam) * coef)
        return adj

    def forward(self, g: GraphInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(logits, aux)``; in training ``aux`` holds the auxiliary losses, ``init`` (logits of the
        input-graph pass) and, for ``grand``, ``augs`` (the other augmentations' logits, ``S-1 x N x C``)."""
        if self.propagation == "grand":
            return self._forward_grand(g)
        n = g.n
        x = sparse_dropout(g.x, self.input_dropout, self.training)
        xw = _linear(x, self.lin1)
        logits0, emb = self._propagate(xw, g.adj_gcn)
        aux: dict[str, torch.Tensor] = {}
        if self.training and self.init_loss_weight > 0:
            aux["init"] = logits0  # classification loss on the input-graph pass (added by the trainer)
        graphs = []
        feat_graph = None
        if self.eta < 1:  # the feature graph (skipped when it has no weight)
            xp = _linear(g.x, self.feat_proj)
            feat_graph = _symmetric(*self.feat_learner(xp), n)
            graphs.append(feat_graph)
        logits = logits0
        for _ in range(self.iterations):
            emb_graph = _symmetric(*self.emb_learner(self.emb_proj(emb)), n)
            graphs.append(emb_graph)
            parts = [(*emb_graph, self.eta)] + ([(*feat_graph, 1 - self.eta)] if feat_graph is not None else [])
            adj = self._mix(g, parts)
            logits, emb = self._propagate(xw, adj)
        self.learned_graph_ = (graphs[-1][0].detach(), graphs[-1][1].detach())
        if self.training:
            self._regularize(g, graphs, aux)
        return logits, aux

    def mixed_graph(self, g: GraphInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The learned graph of the last iteration (run in eval mode), as ``(edge_index, weight)``
        (empty when ``grand`` runs with ``lam=1``, i.e. without a learned graph)."""
        was = self.training
        self.eval()
        with torch.no_grad():
            self.forward(g)
        self.train(was)
        if self.learned_graph_ is None:  # lam = 1 with ``grand``: no learned graph
            return torch.zeros((2, 0), dtype=torch.long), torch.zeros(0)
        return self.learned_graph_


def _apply(adj: Any, h: torch.Tensor) -> torch.Tensor:
    return adj @ h if isinstance(adj, (MixedAdjacency, EdgeOperator)) else spmm(adj, h)
