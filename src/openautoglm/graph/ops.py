"""Torch helpers: features and adjacencies as tensors, sparse products, edge softmax.

Everything is plain PyTorch on CPU (no compiled graph extensions): adjacencies are
``torch.sparse_coo`` tensors multiplied with ``torch.sparse.mm``; per-edge operations
use ``index_add_`` / ``scatter_reduce``.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import torch

__all__ = ["EdgeOperator", "add_self_loops", "edge_softmax", "features_tensor", "normalize_edges", "sparse_adj",
           "sparse_dropout",
           "spmm"]


def features_tensor(x: Any) -> torch.Tensor:
    """A float32 tensor of the features: sparse COO for a scipy matrix, dense otherwise."""
    import scipy.sparse as sp

    if sp.issparse(x):
        coo = x.tocoo()
        idx = torch.from_numpy(np.vstack((coo.row, coo.col)).astype(np.int64))
        val = torch.from_numpy(coo.data.astype(np.float32))
        return torch.sparse_coo_tensor(idx, val, coo.shape, check_invariants=False).coalesce()
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


def dense_features(x: torch.Tensor) -> torch.Tensor:
    return x.to_dense() if x.is_sparse else x


def sparse_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout on a dense tensor or on the stored values of a sparse one."""
    if not training or p <= 0:
        return x
    if x.is_sparse:
        vals = torch.nn.functional.dropout(x.values(), p, True)
        return torch.sparse_coo_tensor(x.indices(), vals, x.shape, is_coalesced=True, check_invariants=False)
    return torch.nn.functional.dropout(x, p, True)


def spmm(adj: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``adj @ h`` for a sparse or dense ``adj``."""
    return torch.sparse.mm(adj, h) if adj.is_sparse else adj @ h


def add_self_loops(edge_index: torch.Tensor, weight: torch.Tensor | None, n: int, fill: float = 1.0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Append one self loop per node (weight ``fill``); existing self loops are dropped first."""
    keep = edge_index[0] != edge_index[1]
    edge_index = edge_index[:, keep]
    w = torch.ones(edge_index.shape[1]) if weight is None else weight[keep]
    loop = torch.arange(n)
    return (torch.cat([edge_index, torch.stack([loop, loop])], 1),
            torch.cat([w, torch.full((n,), fill, dtype=w.dtype)]))


def normalize_edges(edge_index: torch.Tensor, weight: torch.Tensor, n: int, mode: str = "sym") -> torch.Tensor:
    """Edge weights of ``D^-1/2 A D^-1/2`` (``sym``) or ``D^-1 A`` (``row``); differentiable in ``weight``."""
    row, col = edge_index
    deg = torch.zeros(n, dtype=weight.dtype).index_add_(0, row, weight)
    if mode == "sym":
        inv = deg.clamp_min(1e-12).pow(-0.5)
        return inv[row] * weight * inv[col]
    if mode == "row":
        return weight / deg.clamp_min(1e-12)[row]
    raise ValueError(f"unknown normalisation {mode!r}: use 'sym' or 'row'")


def sparse_adj(edge_index: torch.Tensor, weight: torch.Tensor, n: int) -> torch.Tensor:
    """A coalesced ``n x n`` sparse COO adjacency (rows = targets that aggregate)."""
    return torch.sparse_coo_tensor(edge_index, weight, (n, n), check_invariants=False).coalesce()


def gcn_adjacency(edge_index: np.ndarray | None, n: int, weight: np.ndarray | None = None,
                  mode: str = "sym") -> torch.Tensor:
    """The normalised GCN propagation matrix ``D^-1/2 (A + I) D^-1/2`` as sparse COO."""
    if edge_index is None:
        ei = torch.zeros((2, 0), dtype=torch.long)
    else:
        ei = torch.as_tensor(edge_index, dtype=torch.long)
    w = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
    ei, w = add_self_loops(ei, w, n)
    return sparse_adj(ei, normalize_edges(ei, w, n, mode), n)


def edge_softmax(scores: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax of per-edge ``scores`` (``E`` or ``E x H``) over the edges sharing ``index``."""
    shape = (n,) + tuple(scores.shape[1:])
    expand = index.view(-1, *([1] * (scores.dim() - 1))).expand_as(scores)
    smax = torch.full(shape, float("-inf"), dtype=scores.dtype).scatter_reduce(
        0, expand, scores.detach(), reduce="amax", include_self=True)
    ex = (scores - smax[index]).exp()
    denom = torch.zeros(shape, dtype=scores.dtype).index_add_(0, index, ex)
    return ex / denom[index].clamp_min(1e-16)


class EdgeOperator:
    """``A @ h`` for ``A`` given as an edge list whose weights may need gradients.

    The product runs as one CSR sparse-dense product; the backward gives ``A^T g`` for ``h``
    and the per-edge ``(g[row] * h[col]).sum(1)`` for the weights (never a dense ``N x N``
    gradient).  Duplicate edges add up.  Build it once per graph and reuse it across steps.
    """

    def __init__(self, edge_index: torch.Tensor, weight: torch.Tensor, n: int, grad_from: int = 0) -> None:
        self.row, self.col, self.weight, self.n = edge_index[0], edge_index[1], weight, n
        self.grad_from = grad_from  # edges before this index get a zero gradient (constant weights)
        w = weight.detach()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            self.csr = torch.sparse_coo_tensor(edge_index, w, (n, n), check_invariants=False).coalesce().to_sparse_csr()
        self._csr_t: torch.Tensor | None = None

    def detach(self) -> "EdgeOperator":
        """The same operator without gradients for the weights (shares the sparse matrices)."""
        op = copy.copy(self)
        op.weight = self.weight.detach()
        return op

    def transposed(self) -> torch.Tensor:
        if self._csr_t is None:
            ei = torch.stack([self.col, self.row])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._csr_t = torch.sparse_coo_tensor(ei, self.weight.detach(), (self.n, self.n),
                                                      check_invariants=False).coalesce().to_sparse_csr()
        return self._csr_t

    def __matmul__(self, h: torch.Tensor) -> torch.Tensor:
        return _EdgeSpmm.apply(self.weight, h, self)


class _EdgeSpmm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, h: torch.Tensor, op: EdgeOperator) -> torch.Tensor:  # noqa: D102
        ctx.op = op
        ctx.save_for_backward(h)
        return op.csr @ h

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # noqa: D102
        (h,) = ctx.saved_tensors
        op: EdgeOperator = ctx.op
        grad_w = None
        if ctx.needs_input_grad[0]:
            k = op.grad_from
            grad_w = torch.cat([grad.new_zeros(k), (grad[op.row[k:]] * h[op.col[k:]]).sum(1)])
        grad_h = op.transposed() @ grad if ctx.needs_input_grad[1] else None
        return grad_w, grad_h, None
