"""Losses: focal loss, uncertainty-weighted multi-task balancing, graph regularizers.

Graph regularizers act on a sparse learned graph given as ``(edge_index, weight)``:

* smoothness ``sum_ij w_ij ||x_i - x_j||^2 / N`` (features vary little along edges),
* connectivity ``-mean_i log(deg_i)`` (no node is cut off),
* sparsity ``sum_ij w_ij^2 / N`` (few strong edges rather than many weak ones).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["UncertaintyWeighting", "classification_loss", "connectivity", "focal_loss", "smoothness", "sparsity"]


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Focal loss (Lin et al.): cross-entropy scaled by ``(1 - p_t)^gamma``; ``gamma=0`` is CE."""
    logp = F.log_softmax(logits, -1)
    logp_t = logp.gather(1, target.unsqueeze(1)).squeeze(1)
    loss = -((1 - logp_t.exp()) ** gamma) * logp_t
    if weight is not None:
        loss = loss * weight[target]
        return loss.sum() / weight[target].sum()
    return loss.mean()


def classification_loss(logits: torch.Tensor, target: torch.Tensor, focal_gamma: float = 0.0,
                        class_weight: torch.Tensor | None = None) -> torch.Tensor:
    if focal_gamma > 0:
        return focal_loss(logits, target, focal_gamma, class_weight)
    return F.cross_entropy(logits, target, weight=class_weight)


def smoothness(x: torch.Tensor, edge_index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum_ij w_ij ||x_i - x_j||^2 / N`` without forming per-edge feature differences.

    Uses ``sum_ij w_ij (|x_i|^2 + |x_j|^2) - 2 sum(X * (A X))`` so memory is ``N x F``, not ``E x F``.
    """
    n = x.shape[0]
    row, col = edge_index
    sq = (x * x).sum(1)
    ax = torch.sparse.mm(torch.sparse_coo_tensor(edge_index, weight, (n, n), check_invariants=False), x)
    total = (weight * (sq[row] + sq[col])).sum() - 2 * (x * ax).sum()
    return total.clamp_min(0) / n


def connectivity(edge_index: torch.Tensor, weight: torch.Tensor, n: int) -> torch.Tensor:
    deg = torch.zeros(n, dtype=weight.dtype).index_add_(0, edge_index[0], weight)
    return -torch.log(deg + 1e-8).mean()


def sparsity(weight: torch.Tensor, n: int) -> torch.Tensor:
    return (weight * weight).sum() / n


class UncertaintyWeighting(nn.Module):
    """Kendall et al. (2018): ``sum_k exp(-s_k) L_k + s_k`` with a learned log-variance ``s_k`` per loss."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = list(names)
        self.log_vars = nn.Parameter(torch.zeros(len(names)))

    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        total = torch.zeros(())
        for i, name in enumerate(self.names):
            if name in losses:
                total = total + torch.exp(-self.log_vars[i]) * losses[name] + self.log_vars[i]
        return total

    def weights(self) -> dict[str, float]:
        return {n: float(torch.exp(-v)) for n, v in zip(self.names, self.log_vars.detach())}
