"""Compare graphs: degree statistics, edge homophily, an edge-list export and a plot.

Edge homophily is the share of edges (weighted by their weight when given) whose two
ends have the same label, counted over edges between labelled nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import OpenAutoGLMError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["degrees", "export_edges", "graph_stats", "homophily", "plot_graph_comparison"]


def homophily(edge_index: "np.ndarray", y: "np.ndarray", weight: "np.ndarray | None" = None) -> float:
    """Weighted share of edges between labelled nodes that join nodes of the same label."""
    import numpy as np

    src, dst = np.asarray(edge_index)
    keep = (y[src] >= 0) & (y[dst] >= 0) & (src != dst)
    w = np.ones(len(src)) if weight is None else np.asarray(weight, dtype=np.float64)
    w = w[keep]
    if w.sum() <= 0:
        return float("nan")
    return float((w * (y[src[keep]] == y[dst[keep]])).sum() / w.sum())


def degrees(edge_index: "np.ndarray", n: int) -> "np.ndarray":
    """Unweighted number of distinct neighbours per node (self loops excluded)."""
    import numpy as np
    import scipy.sparse as sp

    src, dst = np.asarray(edge_index)
    keep = src != dst
    mat = sp.coo_matrix((np.ones(int(keep.sum())), (src[keep], dst[keep])), shape=(n, n)).tocsr()
    mat = ((mat + mat.T) > 0).astype(np.int64)
    return np.asarray(mat.sum(1)).ravel()


def graph_stats(edge_index: "np.ndarray", y: "np.ndarray", weight: "np.ndarray | None" = None) -> dict[str, Any]:
    """Nodes, undirected edges, degree summary, isolated nodes and edge homophily."""
    import numpy as np

    n = len(y)
    deg = degrees(edge_index, n)
    return {
        "nodes": n,
        "edges": int(deg.sum() // 2),
        "mean_degree": float(deg.mean()),
        "median_degree": float(np.median(deg)),
        "max_degree": int(deg.max()) if n else 0,
        "isolated": int((deg == 0).sum()),
        "homophily": homophily(edge_index, y, weight),
    }


def export_edges(path: str | Path, edge_index: "np.ndarray", weight: "np.ndarray | None" = None,
                 node_ids: Sequence[str] | None = None) -> Path:
    """Write ``source,target,weight`` rows (one per undirected pair, weights summed; node ids if given)."""
    import numpy as np
    import scipy.sparse as sp

    src, dst = np.asarray(edge_index)
    n = int(max(src.max(initial=-1), dst.max(initial=-1)) + 1) if node_ids is None else len(node_ids)
    w = np.ones(len(src)) if weight is None else np.asarray(weight, dtype=np.float64)
    mat = sp.coo_matrix((w, (src, dst)), shape=(n, n)).tocsr()
    mat = sp.triu(mat + mat.T, k=1).tocoo()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = (lambda i: node_ids[i]) if node_ids is not None else str  # noqa: E731
    with path.open("w", encoding="utf-8") as fh:
        fh.write("source,target,weight\n")
        for a, b, v in sorted(zip(mat.row.tolist(), mat.col.tolist(), mat.data.tolist())):
            fh.write(f"{names(a)},{names(b)},{v:.6g}\n")
    return path


def plot_graph_comparison(path: str | Path, input_graph: "tuple[np.ndarray, np.ndarray | None] | None",
                          learned_graph: "tuple[np.ndarray, np.ndarray | None]", y: "np.ndarray",
                          title: str = "") -> Path:
    """PNG: degree distributions of the input and learned graphs, and their homophily ratios."""
    import numpy as np

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is in the graph extra
        raise OpenAutoGLMError("matplotlib is not installed (needed for the graph plot)",
                               hint="pip install 'openautoglm[graph]'") from exc
    n = len(y)
    graphs = [("learned", learned_graph)] if input_graph is None else [("input", input_graph), ("learned", learned_graph)]
    fig, (ax_deg, ax_h) = plt.subplots(1, 2, figsize=(10, 4))
    names, homs = [], []
    for name, (ei, w) in graphs:
        deg = degrees(ei, n)
        bins = np.arange(0, min(int(deg.max()) + 2, 60))
        ax_deg.hist(np.clip(deg, 0, bins[-1]), bins=bins, alpha=0.6, label=f"{name} (mean {deg.mean():.1f})")
        names.append(name)
        homs.append(homophily(ei, y, w))
    ax_deg.set_xlabel("degree (clipped)")
    ax_deg.set_ylabel("nodes")
    ax_deg.set_title("degree distribution")
    ax_deg.legend()
    bars = ax_h.bar(names, homs, color=["tab:blue", "tab:orange"][: len(names)])
    for bar, h in zip(bars, homs):
        ax_h.text(bar.get_x() + bar.get_width() / 2, h, f"{h:.3f}", ha="center", va="bottom")
    ax_h.set_ylim(0, 1)
    ax_h.set_title("edge homophily")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
