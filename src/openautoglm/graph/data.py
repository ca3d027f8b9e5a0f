"""Graphs for node classification: Planetoid citation graphs, user CSVs, kNN graphs.

A :class:`GraphData` holds numpy/scipy containers (torch is not imported here):
features ``x`` (CSR or dense, ``N x F``), labels ``y`` (``-1`` = unlabelled), an
undirected ``edge_index`` (``2 x E``, both directions, no self loops; ``None`` when
the structure is to be learned from features alone) and boolean split masks.
"""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import InputDataError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["GraphData", "PLANETOID", "default_data_root", "knn_graph", "load_dataset", "load_graph_csv",
           "load_planetoid", "user_data_dir"]

PLANETOID = ("cora", "citeseer")


@dataclass
class GraphData:
    """A node-classification graph; see the module docstring for the fields."""

    x: Any
    y: "np.ndarray"
    edge_index: "np.ndarray | None"
    train_mask: "np.ndarray"
    val_mask: "np.ndarray"
    test_mask: "np.ndarray"
    classes: list[str] = field(default_factory=list)
    node_ids: list[str] | None = None
    edge_weight: "np.ndarray | None" = None
    name: str = "graph"

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_edges(self) -> int:
        """Undirected edges (each stored twice in ``edge_index``)."""
        return 0 if self.edge_index is None else int(self.edge_index.shape[1]) // 2

    def without_graph(self) -> "GraphData":
        """The same nodes and splits with no input edges (structure must be learned)."""
        return replace(self, edge_index=None, edge_weight=None, name=f"{self.name} (no input graph)")

    def summary(self) -> str:
        return (f"{self.name}: {self.num_nodes} nodes, {self.num_edges} edges, {self.num_features} features, "
                f"{self.num_classes} classes; split {int(self.train_mask.sum())}/{int(self.val_mask.sum())}/"
                f"{int(self.test_mask.sum())}")


#: names the folder that holds downloaded/copied data sets (Planetoid files in ``planetoid/``)
DATA_ENV = "OPENAUTOGLM_DATA"


def user_data_dir() -> Path:
    """Open-AutoGLM's data folder: ``$OPENAUTOGLM_DATA``, else ``$XDG_DATA_HOME/openautoglm``
    (``~/.local/share/openautoglm``; ``%LOCALAPPDATA%\\openautoglm`` on Windows)."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "openautoglm"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "openautoglm"


def default_data_root() -> Path:
    """Where the Planetoid files are looked for without ``root=`` / ``--root``:
    ``<user data folder>/planetoid`` (see :func:`user_data_dir`).  In a source checkout whose
    user folder has none, the project's ``../shared/data/planetoid`` beside the repository."""
    root = user_data_dir() / "planetoid"
    if root.is_dir():
        return root
    repo = Path(__file__).resolve().parents[3]
    beside = repo.parent / "shared" / "data" / "planetoid"
    if not os.environ.get(DATA_ENV) and (repo / "pyproject.toml").is_file() and beside.is_dir():
        return beside
    return root


# -- Planetoid ---------------------------------------------------------------------------
def load_planetoid(name: str, root: str | Path | None = None, normalize_features: bool = True) -> GraphData:
    """Load Cora or CiteSeer with the standard public split (Kipf & Welling's preprocessing).

    Train = the first ``len(y)`` nodes (20 per class), validation = the next 500, test = the
    1,000 nodes of ``test.index``.  CiteSeer's isolated test nodes missing from ``tx`` get
    zero feature rows and are not in any split.  Features are row-normalised by default.
    """
    import numpy as np
    import scipy.sparse as sp

    from .safe_pickle import safe_load

    key = name.lower()
    if key not in PLANETOID:
        raise InputDataError(f"unknown Planetoid dataset {name!r}", hint=f"use one of {', '.join(PLANETOID)}")
    folder = Path(root) if root is not None else default_data_root()
    if not folder.is_dir():
        raise InputDataError(f"{folder}: Planetoid folder not found",
                             hint=f"copy the ind.<name>.* files into {user_data_dir() / 'planetoid'}, set "
                             f"${DATA_ENV} to a folder with a planetoid/ inside, or pass root= (--root)")
    parts = {}
    for part in ("x", "y", "tx", "ty", "allx", "ally", "graph"):
        path = folder / f"ind.{key}.{part}"
        if not path.is_file():
            raise InputDataError(f"{path}: missing Planetoid file", hint="copy all eight ind.<name>.* files")
        parts[part] = safe_load(path)
    index_path = folder / f"ind.{key}.test.index"
    try:
        test_idx = np.array([int(line) for line in index_path.read_text().split()], dtype=np.int64)
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{index_path}: cannot read the test index ({exc})",
                             hint="it must hold one integer node index per line") from exc
    test_sorted = np.sort(test_idx)
    tx, ty = parts["tx"], np.asarray(parts["ty"])
    if key == "citeseer":  # isolated test nodes are missing from tx: pad with zero rows
        span = test_sorted.max() - test_sorted.min() + 1
        tx_ext = sp.lil_matrix((span, tx.shape[1]), dtype=np.float32)
        tx_ext[test_sorted - test_sorted.min(), :] = tx
        ty_ext = np.zeros((span, ty.shape[1]))
        ty_ext[test_sorted - test_sorted.min(), :] = ty
        tx, ty = tx_ext.tocsr(), ty_ext
    features = sp.vstack((parts["allx"], tx)).tocsr()
    labels_1hot = np.vstack((np.asarray(parts["ally"]), ty))
    perm = np.arange(features.shape[0])  # test rows are stored sorted: put them at their ids
    perm[test_idx] = test_sorted
    features, labels_1hot = features[perm], labels_1hot[perm]
    x = sp.csr_matrix(features, dtype=np.float32)
    n = x.shape[0]
    y = labels_1hot.argmax(1).astype(np.int64)
    y[labels_1hot.sum(1) == 0] = -1
    graph = parts["graph"]
    rows, cols = [], []
    for src, dsts in graph.items():
        for dst in dsts:
            if src != dst and src < n and dst < n:
                rows.append(src)
                cols.append(dst)
    edge_index = _undirected(np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), n)
    n_train = len(np.asarray(parts["y"]))
    train = np.zeros(n, dtype=bool)
    train[:n_train] = True
    val = np.zeros(n, dtype=bool)
    val[n_train:n_train + 500] = True
    test = np.zeros(n, dtype=bool)
    test[test_idx] = True
    if normalize_features:
        x = _row_normalize(x)
    n_classes = labels_1hot.shape[1]
    return GraphData(x=x, y=y, edge_index=edge_index, train_mask=train, val_mask=val, test_mask=test,
                     classes=[str(c) for c in range(n_classes)], name=key)


def _row_normalize(x: Any) -> Any:
    import numpy as np
    import scipy.sparse as sp

    if sp.issparse(x):
        sums = np.asarray(x.sum(1)).ravel()
        inv = np.divide(1.0, sums, out=np.zeros_like(sums, dtype=np.float64), where=sums != 0)
        return sp.csr_matrix(sp.diags(inv.astype(np.float32)) @ x, dtype=np.float32)
    sums = np.abs(x).sum(1, keepdims=True)
    return (x / np.where(sums == 0, 1, sums)).astype(np.float32)


def _undirected(src: "np.ndarray", dst: "np.ndarray", n: int) -> "np.ndarray":
    """Symmetric, deduplicated edge index without self loops."""
    import numpy as np
    import scipy.sparse as sp

    keep = src != dst
    mat = sp.coo_matrix((np.ones(int(keep.sum())), (src[keep], dst[keep])), shape=(n, n)).tocsr()
    mat = ((mat + mat.T) > 0).tocoo()
    order = np.lexsort((mat.col, mat.row))
    return np.vstack((mat.row[order], mat.col[order])).astype(np.int64)


# -- user CSVs ---------------------------------------------------------------------------
def load_graph_csv(
    nodes: str | Path,
    edges: str | Path | None = None,
    labels: str | Path | None = None,
    *,
    id_column: str = "id",
    label_column: str = "label",
    split_column: str = "split",
    split: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    normalize_features: bool = False,
    encoding: str = "utf-8-sig",
) -> GraphData:
    """Load a graph from CSVs.

    * ``nodes``: one row per node: ``id_column``, numeric feature columns, optionally
      ``label_column`` and ``split_column`` (``train``/``val``/``test``).
    * ``edges`` (optional): ``source,target[,weight]`` node ids; treated as undirected.
      Without it the graph has no input edges (learn it with the adaptive model, or
      build a kNN graph with :func:`knn_graph`).
    * ``labels`` (optional): ``id_column,label_column[,split_column]`` when labels live apart.

    Without a split column, labelled nodes are split at random (stratified) by ``split``.
    """
    import numpy as np

    header, rows = _read_csv(nodes, encoding)
    if id_column not in header:
        raise InputDataError(f"{nodes}: no {id_column!r} column (columns: {', '.join(header)})",
                             hint="name the node-id column 'id' or pass id_column=/--id-column")
    label_of: dict[str, str] = {}
    split_of: dict[str, str] = {}
    if labels is not None:
        lheader, lrows = _read_csv(labels, encoding)
        for col in (id_column, label_column):
            if col not in lheader:
                raise InputDataError(f"{labels}: no {col!r} column (columns: {', '.join(lheader)})",
                                     hint="the labels file needs the node id and label columns")
        for r in lrows:
            label_of[r[id_column]] = r[label_column]
            if split_column in lheader:
                split_of[r[id_column]] = r[split_column]
    skip = {id_column, label_column, split_column}
    feat_cols = [c for c in header if c not in skip]
    if not feat_cols:
        raise InputDataError(f"{nodes}: no feature columns besides {sorted(skip & set(header))}",
                             hint="add numeric feature columns to the node file")
    ids: list[str] = []
    x = np.zeros((len(rows), len(feat_cols)), dtype=np.float32)
    for i, r in enumerate(rows):
        node = r[id_column]
        ids.append(node)
        for j, c in enumerate(feat_cols):
            try:
                x[i, j] = float(r[c]) if r[c] not in ("", None) else 0.0
            except ValueError:
                raise InputDataError(f"{nodes}: row {i + 2}, column {c!r}: {r[c]!r} is not a number",
                                     hint="feature columns must be numeric (one-hot encode categories)") from None
        if labels is None and label_column in header and r[label_column] not in ("", None):
            label_of[node] = r[label_column]
        if labels is None and split_column in header and r.get(split_column):
            split_of[node] = r[split_column]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputDataError(f"{nodes}: node id {dup!r} appears twice", hint="node ids must be unique")
    index = {node: i for i, node in enumerate(ids)}
    classes = sorted(set(label_of.values()))
    y = np.full(len(ids), -1, dtype=np.int64)
    for node, lab in label_of.items():
        if node in index:
            y[index[node]] = classes.index(lab)
    if not classes:
        raise InputDataError(f"{nodes}: no labels found", hint=f"add a {label_column!r} column or pass labels=")
    train, val, test = _masks(ids, y, split_of, split, seed, str(nodes))
    edge_index = edge_weight = None
    if edges is not None:
        edge_index, edge_weight = _read_edges(edges, index, encoding)
    if normalize_features:
        x = _row_normalize(x)
    return GraphData(x=x, y=y, edge_index=edge_index, edge_weight=edge_weight, train_mask=train, val_mask=val,
                     test_mask=test, classes=classes, node_ids=ids, name=Path(nodes).stem)


def _read_csv(path: str | Path, encoding: str) -> tuple[list[str], list[dict[str, str]]]:
    p = Path(path)
    if not p.is_file():
        raise InputDataError(f"{p}: file not found", hint="check the path")
    try:
        with p.open(newline="", encoding=encoding) as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except UnicodeDecodeError as exc:
        raise InputDataError(f"{p}: not valid {encoding} text (byte {exc.start})",
                             hint="save the file as UTF-8 or pass encoding=/--encoding") from exc
    except csv.Error as exc:
        raise InputDataError(f"{p}: broken CSV ({exc})", hint="check quoting and delimiters") from exc
    if not header:
        raise InputDataError(f"{p}: empty file", hint="the first line must be a header")
    if any(None in r for r in rows):
        bad = next(i for i, r in enumerate(rows) if None in r)
        raise InputDataError(f"{p}: row {bad + 2} has more fields than the header",
                             hint="check for unquoted commas")
    return [h.strip() for h in header], [{k.strip(): (v or "").strip() for k, v in r.items()} for r in rows]


def _read_edges(path: str | Path, index: dict[str, int], encoding: str) -> tuple["np.ndarray", "np.ndarray"]:
    import numpy as np
    import scipy.sparse as sp

    header, rows = _read_csv(path, encoding)
    for col in ("source", "target"):
        if col not in header:
            raise InputDataError(f"{path}: no {col!r} column (columns: {', '.join(header)})",
                                 hint="the edge list needs 'source' and 'target' columns (and optional 'weight')")
    src, dst, w = [], [], []
    for i, r in enumerate(rows):
        for col in ("source", "target"):
            if r[col] not in index:
                raise InputDataError(f"{path}: row {i + 2}: node {r[col]!r} is not in the node file",
                                     hint="every edge endpoint must be a node id")
        if r["source"] == r["target"]:
            continue
        src.append(index[r["source"]])
        dst.append(index[r["target"]])
        try:
            w.append(float(r["weight"]) if "weight" in header and r["weight"] else 1.0)
        except ValueError:
            raise InputDataError(f"{path}: row {i + 2}: weight {r['weight']!r} is not a number",
                                 hint="weights must be numeric") from None
    n = len(index)
    mat = sp.coo_matrix((np.array(w, dtype=np.float64), (np.array(src, dtype=np.int64),
                                                         np.array(dst, dtype=np.int64))), shape=(n, n)).tocsr()
    mat = mat.maximum(mat.T).tocoo()
    order = np.lexsort((mat.col, mat.row))
    edge_index = np.vstack((mat.row[order], mat.col[order])).astype(np.int64)
    return edge_index, mat.data[order].astype(np.float32)


def _masks(ids: list[str], y: "np.ndarray", split_of: dict[str, str], split: Sequence[float], seed: int,
           source: str) -> tuple["np.ndarray", "np.ndarray", "np.ndarray"]:
    import numpy as np

    n = len(ids)
    masks = {name: np.zeros(n, dtype=bool) for name in ("train", "val", "test")}
    if split_of:
        for i, node in enumerate(ids):
            s = split_of.get(node, "").lower()
            if s in ("", "none"):
                continue
            if s not in masks:
                raise InputDataError(f"{source}: node {node!r} has split {s!r}",
                                     hint="split values must be train, val or test (or empty)")
            masks[s][i] = True
        if (masks["train"] & (y < 0)).any():
            raise InputDataError(f"{source}: a train node has no label", hint="label every train node")
    else:
        if len(split) != 3 or abs(sum(split) - 1) > 1e-6:
            raise InputDataError(f"{source}: split {tuple(split)} must be three fractions summing to 1",
                                 hint="e.g. split=(0.6, 0.2, 0.2)")
        rng = np.random.default_rng(seed)
        for c in np.unique(y[y >= 0]):
            idx = rng.permutation(np.flatnonzero(y == c))
            n_tr = max(1, int(round(split[0] * len(idx))))
            n_va = int(round(split[1] * len(idx)))
            masks["train"][idx[:n_tr]] = True
            masks["val"][idx[n_tr:n_tr + n_va]] = True
            masks["test"][idx[n_tr + n_va:]] = True
    if not masks["train"].any():
        raise InputDataError(f"{source}: no training nodes", hint="label some nodes and mark them train")
    return masks["train"], masks["val"], masks["test"]


# -- kNN graphs --------------------------------------------------------------------------
def knn_graph(x: Any, k: int = 10, chunk: int = 1024, symmetric: bool = True) -> "np.ndarray":
    """Cosine k-nearest-neighbour edge index (``2 x E``, no self loops), computed in row chunks.

    Memory is ``chunk x N`` at a time, never ``N x N``.
    """
    import numpy as np
    import scipy.sparse as sp

    n = x.shape[0]
    k = max(1, min(k, n - 1))
    if sp.issparse(x):
        norms = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
        xn = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ x, dtype=np.float32)
    else:
        xd = np.asarray(x, dtype=np.float32)
        xn = xd / np.maximum(np.linalg.norm(xd, axis=1, keepdims=True), 1e-12)
    rows, cols = [], []
    for start in range(0, n, chunk):
        block = xn[start:start + chunk] @ xn.T
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        idx = np.arange(start, min(start + chunk, n))
        block[np.arange(len(idx)), idx] = -np.inf
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        rows.append(np.repeat(idx, k))
        cols.append(top.ravel())
    src, dst = np.concatenate(rows), np.concatenate(cols)
    if symmetric:
        return _undirected(src, dst, n)
    return np.vstack((src, dst)).astype(np.int64)


def load_dataset(dataset: str | Path, *, data_root: str | Path | None = None, **csv_options: Any) -> GraphData:
    """``cora``/``citeseer`` (Planetoid), or a path: a folder with ``nodes.csv`` [+ ``edges.csv``,
    ``labels.csv``], or a nodes CSV file (an ``edges.csv`` beside it is used when present)."""
    text = str(dataset)
    if text.lower() in PLANETOID:
        return load_planetoid(text, data_root)
    path = Path(text)
    if path.is_dir():
        nodes = path / "nodes.csv"
        if not nodes.is_file():
            raise InputDataError(f"{path}: no nodes.csv in the folder",
                                 hint="a graph folder holds nodes.csv (id, features, label[, split]) and edges.csv")
        edges = path / "edges.csv"
        labels = path / "labels.csv"
        graph = load_graph_csv(nodes, edges if edges.is_file() else None, labels if labels.is_file() else None,
                               **csv_options)
        graph.name = path.resolve().name
        return graph
    if path.is_file():
        edges = path.with_name("edges.csv")
        return load_graph_csv(path, edges if edges.is_file() and edges != path else None, **csv_options)
    raise InputDataError(f"{dataset}: neither a known dataset ({', '.join(PLANETOID)}) nor an existing path",
                         hint="pass cora, citeseer, a graph folder or a nodes CSV")
