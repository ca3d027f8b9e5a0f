"""GNN baselines in plain PyTorch: GCN (Kipf & Welling), GAT (Veličković et al.), GraphSAGE-mean.

Every model maps a :class:`GraphInputs` to ``(logits, aux_losses)``; the baselines have
no auxiliary losses.  Inputs are built once per graph with :func:`graph_inputs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .data import GraphData
from .ops import add_self_loops, edge_softmax, features_tensor, gcn_adjacency, normalize_edges, sparse_adj, \
    sparse_dropout, spmm

__all__ = ["GAT", "GCN", "GraphInputs", "GraphSAGE", "graph_inputs"]


@dataclass
class GraphInputs:
    """Tensors shared by all models for one graph."""

    x: torch.Tensor                 # N x F, sparse COO or dense
    edge_index: torch.Tensor        # 2 x E, no self loops (may be empty)
    edge_weight: torch.Tensor       # E
    n: int
    adj_gcn: torch.Tensor           # D^-1/2 (A+I) D^-1/2, sparse
    adj_mean: torch.Tensor          # D^-1 A (neighbour mean), sparse
    _dense_x: torch.Tensor | None = None
    _looped: torch.Tensor | None = None

    def edges_with_self_loops(self) -> torch.Tensor:
        """``edge_index`` plus one self loop per node (made once, for attention)."""
        if self._looped is None:
            self._looped = add_self_loops(self.edge_index, None, self.n)[0]
        return self._looped

    def dense_x(self) -> torch.Tensor:
        """The features as a dense tensor (made once, for the smoothness regularizer)."""
        if self._dense_x is None:
            self._dense_x = self.x.to_dense() if self.x.is_sparse else self.x
        return self._dense_x


def graph_inputs(graph: GraphData, edge_index=None) -> GraphInputs:  # type: ignore[no-untyped-def]
    """Tensors for ``graph`` (or for ``edge_index`` in place of its own edges)."""
    import numpy as np

    n = graph.num_nodes
    ei_np = graph.edge_index if edge_index is None else edge_index
    w_np = graph.edge_weight if edge_index is None else None
    if ei_np is None:
        ei = torch.zeros((2, 0), dtype=torch.long)
        w = torch.zeros(0)
    else:
        ei = torch.as_tensor(np.asarray(ei_np), dtype=torch.long)
        w = torch.ones(ei.shape[1]) if w_np is None else torch.as_tensor(w_np, dtype=torch.float32)
    adj_mean = sparse_adj(ei, normalize_edges(ei, w, n, "row"), n) if ei.shape[1] else \
        torch.sparse_coo_tensor(torch.zeros((2, 0), dtype=torch.long), torch.zeros(0), (n, n)).coalesce()
    return GraphInputs(x=features_tensor(graph.x), edge_index=ei, edge_weight=w, n=n,
                       adj_gcn=gcn_adjacency(ei_np, n, w_np), adj_mean=adj_mean)


class GCN(nn.Module):
    """Two-layer (or deeper) graph convolutional network."""

    def __init__(self, in_dim: int, hidden: int, n_classes: int, dropout: float = 0.5, layers: int = 2,
                 input_dropout: float | None = None) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [n_classes]
        self.lins = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = dropout
        self.input_dropout = dropout if input_dropout is None else input_dropout

    def forward(self, g: GraphInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.propagate(g.x, g.adj_gcn), {}

    def propagate(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        h = sparse_dropout(x, self.input_dropout, self.training)
        for i, lin in enumerate(self.lins):
            if i:
                h = F.dropout(F.relu(h), self.dropout, self.training)
            h = spmm(adj, _linear(h, lin))
        return h

    def first_layer_params(self) -> list[nn.Parameter]:
        return list(self.lins[0].parameters())


def _linear(h: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
    if h.is_sparse:
        out = torch.sparse.mm(h, lin.weight.t())
        return out if lin.bias is None else out + lin.bias
    return lin(h)


class GATLayer(nn.Module):
    """Multi-head graph attention over the input edges plus self loops."""

    def __init__(self, in_dim: int, out_dim: int, heads: int, concat: bool, dropout: float,
                 negative_slope: float = 0.2, feat_dropout: float = 0.0) -> None:
        super().__init__()
        self.lin = nn.Linear(in_dim, heads * out_dim, bias=False)
        self.att_src = nn.Parameter(torch.empty(heads, out_dim))
        self.att_dst = nn.Parameter(torch.empty(heads, out_dim))
        self.bias = nn.Parameter(torch.zeros(heads * out_dim if concat else out_dim))
        self.heads, self.out_dim, self.concat = heads, out_dim, concat
        self.dropout, self.slope, self.feat_dropout = dropout, negative_slope, feat_dropout
        nn.init.xavier_uniform_(self.lin.weight)
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, n: int) -> torch.Tensor:
        src, dst = edge_index
        z = (torch.sparse.mm(h, self.lin.weight.t()) if h.is_sparse else self.lin(h)).view(n, self.heads, self.out_dim)
        a_src = (z * self.att_src).sum(-1)
        a_dst = (z * self.att_dst).sum(-1)
        alpha = F.leaky_relu(a_src[src] + a_dst[dst], self.slope)
        alpha = edge_softmax(alpha, dst, n)
        alpha = F.dropout(alpha, self.dropout, self.training)
        if self.feat_dropout > 0:  # as in the reference implementation: dropout on W h before aggregation
            z = F.dropout(z, self.feat_dropout, self.training)
        out = torch.zeros(n, self.heads, self.out_dim).index_add_(0, dst, z[src] * alpha.unsqueeze(-1))
        out = out.reshape(n, -1) if self.concat else out.mean(1)
        return out + self.bias


class GAT(nn.Module):
    """Two-layer GAT (8 heads x 8 hidden, ELU; the output layer averages ``out_heads`` heads).

    ``feat_dropout`` is a dropout on the transformed features ``W h`` before aggregation, as the
    authors' TensorFlow code applies (there with the input dropout rate)."""

    def __init__(self, in_dim: int, hidden: int, n_classes: int, heads: int = 8, out_heads: int = 1,
                 dropout: float = 0.6, feat_dropout: float = 0.0) -> None:
        super().__init__()
        self.l1 = GATLayer(in_dim, hidden, heads, True, dropout, feat_dropout=feat_dropout)
        self.l2 = GATLayer(hidden * heads, n_classes, out_heads, False, dropout, feat_dropout=feat_dropout)
        self.dropout = dropout

    def forward(self, g: GraphInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ei = g.edges_with_self_loops()
        h = sparse_dropout(g.x, self.dropout, self.training)
        h = F.elu(self.l1(h, ei, g.n))
        h = F.dropout(h, self.dropout, self.training)
        return self.l2(h, ei, g.n), {}

    def first_layer_params(self) -> list[nn.Parameter]:
        return list(self.l1.parameters())


class GraphSAGE(nn.Module):
    """GraphSAGE with the mean aggregator (full-batch): ``h' = W_self h + W_neigh mean(h_N)``."""

    def __init__(self, in_dim: int, hidden: int, n_classes: int, dropout: float = 0.5, layers: int = 2) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [n_classes]
        self.self_lins = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.neigh_lins = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = dropout

    def forward(self, g: GraphInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = sparse_dropout(g.x, self.dropout, self.training)
        for i, (ls, ln) in enumerate(zip(self.self_lins, self.neigh_lins)):
            if i:
                h = F.dropout(F.relu(h), self.dropout, self.training)
            h = _linear(h, ls) + spmm(g.adj_mean, _linear_nobias(h, ln))
        return h, {}

    def first_layer_params(self) -> list[nn.Parameter]:
        return list(self.self_lins[0].parameters()) + list(self.neigh_lins[0].parameters())


def _linear_nobias(h: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
    return torch.sparse.mm(h, lin.weight.t()) if h.is_sparse else lin(h)
