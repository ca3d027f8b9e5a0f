"""The prompt optimizer's logic on the deterministic fake backend.

The fake backend scores a label word higher when it occurs in the prompt, so a task
whose verbalizers never occur in the texts is at chance, and one that scores the
label names (which do occur) is right: the search must find that.
"""

from __future__ import annotations

import json
import random

import pytest
import yaml
from typer.testing import CliRunner

from openautoglm.backends.fake import FakeBackend
from openautoglm.cli import app
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.task import Task
from openautoglm.errors import ConfigError
from openautoglm.optimize.search import Optimizer, fit_label_bias, score

LABELS = ["sports", "politics"]
TOPICS = {"sports": ["match", "goal", "team"], "politics": ["vote", "senate", "law"]}


def rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lab = LABELS[i % 2]
        out.append({"text": f"{lab} news {seed}-{i}: the {rng.choice(TOPICS[lab])} today", "label": lab})
    return out


def blind_task() -> Task:
    return Task(name="topic", template="Text: {text}", labels=LABELS, format="text", answer_prefix="Topic:",
                verbalizers={"sports": "alpha", "politics": "beta"})


def test_search_finds_verbalizers_and_never_decides_on_holdout_rows(monkeypatch):
    seen: list[list[str]] = []
    original = Optimizer.predict

    def spy(self, task, rows_):
        seen.append([r["text"] for r in rows_])
        return original(self, task, rows_)

    monkeypatch.setattr(Optimizer, "predict", spy)
    opt = Optimizer(FakeBackend(), blind_task(), rows(40, 1), rows(40, 2), budget=5000, retrieval=False,
                    rewrites=0, first_slice=8)
    result = opt.optimize()
    assert result.scores["base_select"] < 0.6  # ties go to the first label: chance level
    assert result.scores["best_select"] == 1.0 and result.scores["best_holdout"] == 1.0
    assert result.task.verbalizers == {"sports": "sports", "politics": "politics"}
    holdout = {r["text"] for r in opt.holdout}
    assert len(holdout) == 12
    # the task as given is measured there right after its selection pass, the chosen one last
    base_select, base_holdout, *search, best_holdout = seen
    assert all(not holdout & set(batch) for batch in [base_select, *search])
    assert set(base_holdout) == set(best_holdout) == holdout
    stages = {t.stage for t in result.trials}
    assert {"base", "prompt", "verbalizers", "demos", "calibration"} <= stages


@pytest.mark.parametrize("budget", [60, 90, 150, 300])
def test_the_budget_is_an_upper_bound_held_out_measurement_included(budget):
    opt = Optimizer(FakeBackend(), blind_task(), rows(40, 1), rows(40, 2), budget=budget, retrieval=False,
                    rewrites=0, first_slice=8)
    result = opt.optimize()
    assert result.calls <= budget  # issue 19: `--budget 150` used to spend 162 (held-out rows on top)
    assert result.holdout_calls >= len(opt.holdout)  # the held-out rows were still measured
    assert "base_holdout" in result.scores
    assert f"{result.calls}/{budget} model calls ({result.holdout_calls} of them on held-out rows)" in result.summary()


def test_a_budget_that_leaves_the_search_room_still_finds_and_measures_the_best():
    result = Optimizer(FakeBackend(), blind_task(), rows(40, 1), rows(40, 2), budget=300, retrieval=False,
                       rewrites=0, first_slice=8).optimize()
    assert result.scores["best_select"] == 1.0 and result.scores["best_holdout"] == 1.0


def test_too_small_a_budget_is_refused_before_the_search():
    with pytest.raises(ConfigError, match="does not cover one pass"):
        Optimizer(FakeBackend(), blind_task(), rows(40, 1), rows(40, 2), budget=5, retrieval=False).optimize()
    with pytest.raises(ConfigError, match="selection and 12 held-out rows"):
        Optimizer(FakeBackend(), blind_task(), rows(40, 1), rows(40, 2), budget=30, retrieval=False).optimize()


def test_rows_with_unknown_labels_are_reported_not_used():
    dev = rows(30, 2) + [{"text": "x", "label": "1"}]
    opt = Optimizer(FakeBackend(), blind_task(), rows(20, 1), dev, budget=2000, retrieval=False, rewrites=0)
    assert any("1 dev rows skipped" in n for n in opt.notes)
    with pytest.raises(ConfigError, match="no train row has a gold label"):
        Optimizer(FakeBackend(), blind_task(), [{"text": "x", "label": "0"}], dev)


def test_fit_label_bias_matches_the_prior():
    probs = [[0.9, 0.1]] * 8 + [[0.6, 0.4]] * 2  # a model that always leans to label 0
    bias = fit_label_bias(probs, [0.5, 0.5])
    import math

    def shifted(row):
        logs = [math.log(p) + b for p, b in zip(row, bias)]
        z = sum(math.exp(v) for v in logs)
        return [math.exp(v) / z for v in logs]

    mean = [sum(shifted(r)[j] for r in probs) / len(probs) for j in range(2)]
    assert mean == pytest.approx([0.5, 0.5], abs=0.01) and bias[1] > bias[0]


def test_score_metrics():
    gold, pred = ["a", "a", "b", "c"], ["a", "b", "b", "b"]
    assert score(gold, pred, ["a", "b", "c"], "accuracy") == 0.5
    # F1: a = 2/3, b = 2/3 (tp 1, fp 2, fn 0 -> 2/4=0.5)... computed by hand below
    f1_a = 2 * 1 / (2 * 1 + 0 + 1)
    f1_b = 2 * 1 / (2 * 1 + 2 + 0)
    f1_c = 0.0
    assert score(gold, pred, ["a", "b", "c"], "macro_f1") == pytest.approx((f1_a + f1_b + f1_c) / 3)


def test_cli_writes_a_pipeline_that_run_accepts(tmp_path):
    def write(name, data):
        path = tmp_path / name
        path.write_text("\n".join(json.dumps(r) for r in data), encoding="utf-8")
        return path

    pipe_path = tmp_path / "p.yaml"
    pipe_path.write_text(yaml.safe_dump({"name": "topic", "model": "fake", "task": blind_task().to_config()}))
    train = write("train.jsonl", [{**r, "label": "1" if r["label"] == "sports" else "0"} for r in rows(30, 1)])
    dev = write("dev.jsonl", [{**r, "label": "1" if r["label"] == "sports" else "0"} for r in rows(40, 2)])
    out = tmp_path / "best.yaml"
    res = CliRunner().invoke(app, ["optimize", str(pipe_path), "--train", str(train), "--dev", str(dev),
                                   "--budget", "3000", "--out", str(out), "--label-map", "1=sports,0=politics",
                                   "--no-retrieval"])
    assert res.exit_code == 0, res.output
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["scores"]["best_holdout"] == 1.0
    best = Pipeline.from_yaml(out, store=False)
    assert best.run(text="politics news: the senate voted")["label"] == "politics"


def test_many_labels_search_starts_from_knn_candidate_pruning():
    pytest.importorskip("sklearn")
    labels = [f"topic{i}" for i in range(12)]
    words = ["apple", "river", "engine", "violin", "tennis", "castle", "pepper", "planet", "silver", "garden",
             "rocket", "cheese"]

    def make(n, seed):
        return [{"text": f"note {seed}-{i} about {words[i % 12]} and {words[i % 12]}s", "label": labels[i % 12]}
                for i in range(n)]

    task = Task(name="many", template="Text: {text}", labels=labels, format="text")
    opt = Optimizer(FakeBackend(), task, make(48, 1), make(36, 2), budget=20000, rewrites=0, first_slice=12,
                    embedder="char-ngram")
    result = opt.optimize()
    pruning = [t for t in result.trials if t.stage == "candidates"]
    assert len(pruning) == 1 and pruning[0].task.retrieval.candidates == 10
    # the neighbours are right here (same topic word), so pruning is adopted and kept
    assert result.task.retrieval is not None and result.task.retrieval.candidates == 10
    assert result.scores["best_select"] >= pruning[0].score


def blind_rows(n: int, seed: int) -> list[dict[str, str]]:
    """Texts that never name their label: label scoring is at chance, a learned head is not."""
    rng = random.Random(seed)
    return [{"text": f"the {rng.choice(TOPICS[LABELS[i % 2]])} and the {rng.choice(TOPICS[LABELS[i % 2]])}",
             "label": LABELS[i % 2]} for i in range(n)]


def test_the_head_stage_learns_a_head_when_prompting_cannot_help():
    base = Task(name="topic", template="Text: {text}", labels=LABELS, format="text", answer_prefix="Topic:")
    opt = Optimizer(FakeBackend(), base, blind_rows(60, 0), blind_rows(60, 1), budget=600, holdout=0.3, rewrites=0,
                    retrieval=False, first_slice=20)
    result = opt.optimize()
    assert "head" in {t.stage for t in result.trials}
    assert result.task.head is not None and result.task.head.features == "tfidf"
    assert len(result.task.head.pool) == 60  # fitted on train rows only
    assert result.scores["best_holdout"] == 1.0 and result.scores["base_holdout"] < 0.8


def test_candidates_with_the_same_retrieval_pool_share_one_embedding_of_it():
    train = rows(40, 1)
    opt = Optimizer(FakeBackend(), blind_task(), train, rows(40, 2), budget=5000, retrieval=True, rewrites=0)
    pool = [{"text": r["text"], "output": r["label"]} for r in train]
    first = Task(**{**blind_task().to_config(), "retrieval": {"pool": pool, "k": 4, "embedder": "char-ngram"}})
    second = Task(**{**blind_task().to_config(), "retrieval": {"pool": pool, "k": 8, "knn_weight": 0.5,
                                                                "embedder": "char-ngram"}})
    other = Task(**{**blind_task().to_config(), "retrieval": {"pool": pool[:20], "k": 4, "embedder": "char-ngram"}})
    for task in (first, second, other):
        opt.measure(task, opt.select[:4])
    assert second.retriever.matrix is first.retriever.matrix  # embedded once
    assert second.retriever.config.k == 8 and first.retriever.config.k == 4  # each keeps its own settings
    assert other.retriever.matrix is not first.retriever.matrix and len(other.retriever.pool) == 20
    # the shared index answers as one built from scratch would
    fresh = Task(**second.to_config())
    contexts = [{"text": r["text"]} for r in opt.select[:3]]
    assert [n.knn for n in second.retriever.query(contexts, LABELS)] == \
        [n.knn for n in fresh.retriever.query(contexts, LABELS)]


def test_a_finalist_needing_model_calls_must_beat_one_that_needs_none_by_the_margin(monkeypatch):
    base = blind_task()
    opt = Optimizer(FakeBackend(), base, blind_rows(60, 0), blind_rows(60, 1), budget=600, holdout=0.0,
                    rewrites=0, retrieval=False, first_slice=20)
    head = {"features": "tfidf", "pool": [opt._demo(r) for r in opt.train]}
    alone = Task(**{**base.to_config(), "head": {**head, "weight": 1.0}})
    mixed = Task(**{**base.to_config(), "head": {**head, "weight": 0.5}})
    n = len(opt.select)

    def run(scores):
        monkeypatch.setattr(Optimizer, "measure", lambda self, task, rows_: scores[task.head.weight])
        return opt._try("head", [("mixed", mixed), ("alone", alone)], (0.5, base))[1]

    # one row better is noise: the head alone (no model call at run time) is kept
    assert run({0.5: 0.8 + 1 / n, 1.0: 0.8}).head.weight == 1.0
    # two rows better is a win for the costlier mixture
    assert run({0.5: 0.8 + 2 / n, 1.0: 0.8}).head.weight == 0.5


def test_head_candidates_that_differ_only_in_weight_share_one_fit():
    base = Task(name="topic", template="Text: {text}", labels=LABELS, format="text", answer_prefix="Topic:")
    opt = Optimizer(FakeBackend(), base, blind_rows(60, 0), blind_rows(60, 1), budget=600, rewrites=0,
                    retrieval=False, first_slice=20)
    candidates = [task for _, task in opt._head_candidates(base)]
    assert {c.head.weight for c in candidates} == {1.0, 0.75, 0.5}
    fits = {id(c.label_head(opt.backend)) for c in candidates}
    assert len(fits) == len(candidates) // 3  # one fit per head setting, not per weight
    # a head fitted on another pool is refused
    other = Task(**{**base.to_config(), "head": {"features": "tfidf", "pool": [opt._demo(r) for r in opt.train[:30]]}})
    with pytest.raises(ValueError, match="differ"):
        other.adopt_head(opt.backend, candidates[0].label_head(opt.backend))



def test_model_proposed_instructions_that_repeat_the_example_are_dropped():
    train = rows(20, 0)
    example = blind_task().render_input(train[0])
    real = "Label each text with the topic it is about: sports or politics."
    backend = FakeBackend(responses=[example + " and more", real])
    opt = Optimizer(backend, blind_task(), train, rows(20, 1), budget=500, rewrites=2)
    assert opt._proposed_instructions() == [real]
