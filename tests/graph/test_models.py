from __future__ import annotations

import numpy as np
import pytest
import torch

from openautoglm.graph.adaptive import AdaptiveGNN, GraphLearner, MixedAdjacency, topk_neighbours
from openautoglm.graph.losses import UncertaintyWeighting, connectivity, focal_loss, smoothness, sparsity
from openautoglm.graph.models import GAT, GCN, GraphSAGE, graph_inputs
from openautoglm.graph.ops import EdgeOperator, edge_softmax, gcn_adjacency
from openautoglm.graph.train import resolve_params


def test_gcn_adjacency_matches_dense_formula(sbm):
    a = np.zeros((sbm.num_nodes,) * 2)
    a[sbm.edge_index[0], sbm.edge_index[1]] = 1
    a += np.eye(sbm.num_nodes)
    d = a.sum(1) ** -0.5
    expected = d[:, None] * a * d[None, :]
    got = gcn_adjacency(sbm.edge_index, sbm.num_nodes).to_dense().numpy()
    assert np.allclose(got, expected, atol=1e-6)


def test_edge_softmax_sums_to_one_per_target():
    torch.manual_seed(0)
    index = torch.tensor([0, 0, 1, 2, 2, 2])
    scores = torch.randn(6, 3) * 50  # large values: the max shift must keep it finite
    alpha = edge_softmax(scores, index, 4)
    sums = torch.zeros(4, 3).index_add_(0, index, alpha)
    assert torch.allclose(sums[:3], torch.ones(3, 3), atol=1e-6) and torch.isfinite(alpha).all()
    assert torch.allclose(alpha[:2, 0], torch.softmax(scores[:2, 0], 0))


@pytest.mark.parametrize("cls,kwargs", [(GCN, {}), (GAT, {"heads": 2}), (GraphSAGE, {}),
                                        (AdaptiveGNN, {"k": 4, "propagation": "gcn"}),
                                        (AdaptiveGNN, {"k": 4, "propagation": "appnp"}),
                                        (AdaptiveGNN, {"k": 4, "eta": 0.5, "iterations": 2})])
def test_models_give_logits_and_gradients(sbm, cls, kwargs):
    torch.manual_seed(0)
    g = graph_inputs(sbm)
    net = cls(sbm.num_features, 8, sbm.num_classes, **kwargs)
    logits, aux = net(g)
    assert logits.shape == (sbm.num_nodes, sbm.num_classes) and torch.isfinite(logits).all()
    loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(sbm.y)) + sum(
        a.sum() * 0 if a.dim() > 1 else a for a in aux.values())
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert any(gr is not None and gr.abs().sum() > 0 for gr in grads)


def test_topk_chunked_equals_dense_and_candidates():
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(50, 6), dim=1)
    got = topk_neighbours(z, 5, chunk=7)
    sims = z @ z.t()
    sims.fill_diagonal_(float("-inf"))
    assert torch.equal(got.sort(1).values, sims.topk(5, 1).indices.sort(1).values)
    cand = topk_neighbours(z, 10, chunk=50)
    assert torch.equal(topk_neighbours(z, 5, candidates=cand).sort(1).values, got.sort(1).values)


def test_graph_learner_rows_are_a_softmax_and_learnable():
    torch.manual_seed(0)
    h = torch.randn(30, 6, requires_grad=True)
    learner = GraphLearner(6, heads=2, k=4, temperature=0.5)
    ei, w = learner(h)
    assert ei.shape[1] == 30 * 4 and (ei[0] != ei[1]).all()
    row_sums = torch.zeros(30).index_add_(0, ei[0], w)
    assert torch.allclose(row_sums, torch.ones(30), atol=1e-5)
    (w * torch.arange(len(w))).sum().backward()
    assert learner.weight.grad is not None and learner.weight.grad.abs().sum() > 0 and h.grad is not None


def test_graph_learner_epsilon_keeps_at_least_one_neighbour():
    torch.manual_seed(1)
    learner = GraphLearner(4, heads=1, k=5, epsilon=0.99)
    ei, w = learner(torch.randn(20, 4))
    assert set(ei[0].tolist()) == set(range(20)) and len(w) < 20 * 5


def test_mixed_adjacency_equals_dense_sum(sbm):
    torch.manual_seed(0)
    g = graph_inputs(sbm)
    n = sbm.num_nodes
    ei = torch.stack([torch.arange(n), torch.roll(torch.arange(n), 1)])
    w = torch.rand(n)
    mix = MixedAdjacency(g.adj_gcn, 0.7, n)
    mix.add(ei, w, 0.3)
    h = torch.randn(n, 3)
    a = torch.zeros(n, n)
    a[ei[0], ei[1]] += w
    a += torch.eye(n) * w.max()
    d = a.sum(1).pow(-0.5)
    dense = 0.7 * g.adj_gcn.to_dense() + 0.3 * d[:, None] * a * d[None, :]
    assert torch.allclose(mix @ h, dense @ h, atol=1e-5)


def test_regularizers_match_brute_force():
    torch.manual_seed(0)
    x = torch.randn(6, 3)
    ei = torch.tensor([[0, 1, 2, 5], [1, 0, 4, 3]])
    w = torch.tensor([0.5, 0.5, 1.0, 2.0])
    brute = sum(w[e] * (x[ei[0, e]] - x[ei[1, e]]).pow(2).sum() for e in range(4)) / 6
    assert torch.allclose(smoothness(x, ei, w), brute, atol=1e-5)
    assert torch.allclose(sparsity(w, 6), (w ** 2).sum() / 6)
    assert connectivity(ei, w, 6) > connectivity(ei, w * 10, 6)  # more weight, less penalty


def test_focal_loss_reduces_to_ce_and_downweights_easy_examples():
    torch.manual_seed(0)
    logits, target = torch.randn(8, 3), torch.randint(0, 3, (8,))
    assert torch.allclose(focal_loss(logits, target, gamma=0.0), torch.nn.functional.cross_entropy(logits, target))
    assert focal_loss(logits, target, gamma=2.0) < torch.nn.functional.cross_entropy(logits, target)


def test_uncertainty_weighting_learns_to_downweight_a_large_loss():
    bal = UncertaintyWeighting(["a", "b"])
    opt = torch.optim.SGD(bal.parameters(), lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        bal({"a": torch.tensor(10.0), "b": torch.tensor(0.1)}).backward()
        opt.step()
    weights = bal.weights()
    assert weights["a"] < 0.5 < weights["b"]


def test_edge_operator_matches_dense_product_and_gradients():
    torch.manual_seed(0)
    n = 12
    ei = torch.randint(0, n, (2, 40))
    w = torch.rand(40, requires_grad=True)
    h = torch.randn(n, 3, requires_grad=True)
    a = torch.zeros(n, n).index_put((ei[0], ei[1]), w, accumulate=True)  # duplicates add up
    g_out = torch.randn(n, 3)
    ((a @ h) * g_out).sum().backward()
    w_ref, h_ref = w.grad.clone(), h.grad.clone()
    w.grad, h.grad = None, None
    op = EdgeOperator(ei, w, n, grad_from=10)
    out = op @ (op.detach() @ h)  # two steps; the detached one sends no gradient to w
    assert torch.allclose(op.detach() @ h, a @ h, atol=1e-5)
    (((op @ h) * g_out).sum()).backward()
    assert torch.allclose(h.grad, h_ref, atol=1e-5)
    assert torch.allclose(w.grad[10:], w_ref[10:], atol=1e-5) and (w.grad[:10] == 0).all()
    assert out.shape == (n, 3)


def test_grand_propagation_augments_learns_the_graph_and_restores_it(sbm):
    torch.manual_seed(0)
    g = graph_inputs(sbm)
    net = AdaptiveGNN(sbm.num_features, 8, sbm.num_classes, k=4, samples=3, graph_every=2)
    assert net.propagation == "grand"
    logits, aux = net(g)  # step 0: the graph is learned, with gradients
    assert aux["augs"].shape == (2, sbm.num_nodes, sbm.num_classes) and aux["consistency"] > 0
    (logits.sum() + aux["consistency"]).backward()
    assert net.emb_learner.weight.grad is not None and net.emb_learner.weight.grad.abs().sum() > 0
    net.zero_grad()
    logits, aux = net(g)  # step 1: the cached graph, no gradient to the learner
    logits.sum().backward()
    assert net.emb_learner.weight.grad is None or net.emb_learner.weight.grad.abs().sum() == 0
    net.eval()
    with torch.no_grad():
        ref = net(g)[0]
        ei, w = net.mixed_graph(g)
    assert ei.shape[1] == len(w) == 2 * 4 * sbm.num_nodes
    state = net.state_dict()
    other = AdaptiveGNN(sbm.num_features, 8, sbm.num_classes, k=4, samples=3, graph_every=2)
    other.load_state_dict(state)
    other.eval()
    with torch.no_grad():
        assert torch.allclose(other(g)[0], ref, atol=1e-5)  # the learned graph came back with the weights


def test_grand_consistency_is_zero_for_identical_confident_predictions():
    net = AdaptiveGNN(4, 4, 2, sharpen=1.0)
    z = torch.tensor([[3.0, -1.0], [0.0, 2.0]])
    assert float(net._consistency([z, z])) == pytest.approx(0.0, abs=1e-7)
    assert float(net._consistency([z, -z])) > 0.1


def test_lam_one_means_no_learned_graph(sbm):
    g = graph_inputs(sbm)
    net = AdaptiveGNN(sbm.num_features, 8, sbm.num_classes, lam=1.0)
    net(g)
    ei, w = net.mixed_graph(g)
    assert ei.shape == (2, 0) and len(w) == 0


def test_dataset_presets_apply_and_overrides_win():
    assert resolve_params("adaptive")["order"] == 8
    assert resolve_params("adaptive", dataset="CiteSeer")["order"] == 2
    assert resolve_params("adaptive", {"order": 5}, dataset="citeseer")["order"] == 5
    assert resolve_params("gcn", dataset="citeseer") == resolve_params("gcn")


def test_gat_feature_dropout_only_in_training(sbm):
    torch.manual_seed(0)
    g = graph_inputs(sbm)
    net = GAT(sbm.num_features, 4, sbm.num_classes, heads=2, dropout=0.0, feat_dropout=0.5)
    net.eval()
    assert torch.equal(net(g)[0], net(g)[0])
    net.train()
    assert not torch.allclose(net(g)[0], net(g)[0])
