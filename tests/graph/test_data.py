from __future__ import annotations

import numpy as np
import pytest

from openautoglm.errors import InputDataError
from openautoglm.graph.data import knn_graph, load_dataset, load_graph_csv, load_planetoid

from .conftest import planetoid_root


def test_cora_public_split():
    g = load_planetoid("cora", planetoid_root())
    assert (g.num_nodes, g.num_features, g.num_classes) == (2708, 1433, 7)
    assert (g.train_mask.sum(), g.val_mask.sum(), g.test_mask.sum()) == (140, 500, 1000)
    assert not (g.train_mask & g.val_mask).any() and not (g.val_mask & g.test_mask).any()
    assert np.bincount(g.y[g.train_mask]).tolist() == [20] * 7
    assert g.num_edges == 5278
    src, dst = g.edge_index
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert all((b, a) in pairs for a, b in pairs) and (src != dst).all()
    assert np.allclose(np.asarray(g.x.sum(1)).ravel(), 1.0, atol=1e-5)  # row-normalised


def test_citeseer_isolated_test_nodes_are_padded():
    g = load_planetoid("citeseer", planetoid_root())
    assert (g.num_nodes, g.num_features, g.num_classes) == (3327, 3703, 6)
    assert g.test_mask.sum() == 1000 and (g.y[g.test_mask] >= 0).all()
    assert (g.y < 0).sum() > 0  # the padded rows carry no label and are in no split
    assert not g.train_mask[g.y < 0].any()


def test_unknown_planetoid_name_and_missing_folder(tmp_path):
    with pytest.raises(InputDataError, match="pubmed"):
        load_planetoid("pubmed", tmp_path)
    with pytest.raises(InputDataError, match="not found"):
        load_planetoid("cora", tmp_path / "nowhere")
    with pytest.raises(InputDataError, match="missing Planetoid file"):
        load_planetoid("cora", tmp_path)


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_csv_graph_with_split_and_weights(tmp_path):
    nodes = _write(tmp_path / "nodes.csv", "id,label,split,a,b\nx,cat,train,1,0\ny,dog,train,0,1\nz,cat,test,1,1\nw,,,0,0\n")
    edges = _write(tmp_path / "edges.csv", "source,target,weight\nx,y,2\nz,x,0.5\nw,w,1\n")
    g = load_graph_csv(nodes, edges)
    assert g.classes == ["cat", "dog"] and g.y.tolist() == [0, 1, 0, -1]
    assert g.train_mask.tolist() == [True, True, False, False] and g.test_mask.tolist() == [False, False, True, False]
    assert g.num_edges == 2  # the self loop is dropped, both directions kept
    w = {(int(a), int(b)): float(v) for a, b, v in zip(*g.edge_index, g.edge_weight)}
    assert w[(0, 1)] == w[(1, 0)] == 2.0 and w[(2, 0)] == 0.5
    assert load_dataset(tmp_path).num_edges == 2  # a folder works too


def test_csv_random_split_is_stratified(tmp_path):
    rows = "\n".join(f"n{i},{'ab'[i % 2]},{i}" for i in range(50))
    g = load_graph_csv(_write(tmp_path / "n.csv", "id,label,f\n" + rows + "\n"), split=(0.6, 0.2, 0.2), seed=1)
    assert g.edge_index is None
    assert (g.train_mask.sum(), g.val_mask.sum(), g.test_mask.sum()) == (30, 10, 10)
    assert np.bincount(g.y[g.train_mask]).tolist() == [15, 15]


@pytest.mark.parametrize("nodes,edges,match", [
    ("node,label,f\na,x,1\n", None, "no 'id' column"),
    ("id,label,f\na,x,oops\n", None, "not a number"),
    ("id,label,f\na,x,1\na,y,2\n", None, "appears twice"),
    ("id,label,f\na,x,1\nb,y,2\n", "source,target\na,zz\n", "not in the node file"),
    ("id,label,f\na,x,1\nb,y,2\n", "from,to\na,b\n", "no 'source' column"),
    ("id,label,split,f\na,x,train,1\nb,y,later,2\n", None, "split 'later'"),
])
def test_csv_errors_name_the_problem(tmp_path, nodes, edges, match):
    n = _write(tmp_path / "nodes.csv", nodes)
    e = _write(tmp_path / "edges.csv", edges) if edges else None
    with pytest.raises(InputDataError, match=match):
        load_graph_csv(n, e)


def test_non_utf8_and_missing_files(tmp_path):
    n = _write(tmp_path / "nodes.csv", "id,label,f\nä,x,1\n", encoding="latin-1")
    with pytest.raises(InputDataError, match="not valid utf-8-sig"):
        load_graph_csv(n)
    assert load_graph_csv(n, encoding="latin-1", split=(1.0, 0.0, 0.0)).node_ids == ["ä"]
    with pytest.raises(InputDataError, match="file not found"):
        load_graph_csv(tmp_path / "none.csv")
    with pytest.raises(InputDataError, match="neither a known dataset"):
        load_dataset(tmp_path / "nothing-here")


def test_knn_graph_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(57, 5)).astype(np.float32)
    ei = knn_graph(x, k=4, chunk=10, symmetric=False)  # chunks smaller than N
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = xn @ xn.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.sort(np.argsort(-sims, axis=1)[:, :4], axis=1)
    got = np.sort(ei[1].reshape(57, 4), axis=1)
    assert np.array_equal(got, expected)
    sym = knn_graph(x, k=4)
    pairs = set(zip(*sym.tolist()))
    assert all((b, a) in pairs for a, b in pairs) and all(a != b for a, b in pairs)
    assert np.bincount(sym[0], minlength=57).min() >= 4


def test_labels_in_a_separate_file(tmp_path):
    nodes = _write(tmp_path / "nodes.csv", "id,f1,f2\na,1,0\nb,0,1\nc,1,1\n")
    labels = _write(tmp_path / "labels.csv", "id,label,split\na,x,train\nb,y,train\nc,x,test\n")
    g = load_graph_csv(nodes, labels=labels)
    assert g.y.tolist() == [0, 1, 0] and g.num_features == 2 and g.test_mask.tolist() == [False, False, True]
    bad = _write(tmp_path / "bad.csv", "node,label\na,x\n")
    with pytest.raises(InputDataError, match="labels file"):
        load_graph_csv(nodes, labels=bad)
