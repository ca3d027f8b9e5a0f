"""bench/datasets.py: every dataset loads with small sizes, its parts are disjoint and
deterministic, and its labels are readable.  Skipped where ../shared/data is absent."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_module():  # bench/ is not a package: load the file itself
    name = "openautoglm_bench_datasets"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "datasets.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look the module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


ds = _load_module()

EXPECTED_LABELS = {
    "sst2": ["negative", "positive"],
    "trec": ["abbreviation", "description", "entity", "human", "location", "number"],
    "ag_news": ["world", "sports", "business", "science/technology"],
    "chnsenticorp": ["负面", "正面"],
}


def _need(name: str) -> None:
    if not (ds.DATA / name).is_dir():
        pytest.skip(f"{ds.DATA / name} is absent")


@pytest.mark.parametrize("name", ds.NAMES)
def test_loads_disjoint_readable(name: str) -> None:
    _need(name)
    split = ds.load(name, n_train=12, n_select=10, n_report=25, seed=0)
    assert (len(split.train), len(split.select), len(split.report)) == (12, 10, 25)
    assert split.name == name and split.text_field == "text"
    if name in EXPECTED_LABELS:
        assert split.labels == EXPECTED_LABELS[name]
    else:  # banking77
        assert len(split.labels) == 77 and "card arrival" in split.labels
    for lab in split.labels:
        assert "_" not in lab and lab == lab.strip() and lab
        assert split.label_names[lab]  # readable -> as written in the files
    for part in (split.train, split.select, split.report):
        for rec in part:
            assert set(rec) == {"text", "label"}
            assert isinstance(rec["text"], str) and rec["text"].strip()
            assert rec["label"] in split.labels
    keys = [{ds.norm(r["text"]) for r in part} for part in (split.train, split.select, split.report)]
    assert len(keys[0]) == 12 and len(keys[1]) == 10
    assert not keys[0] & keys[1] and not keys[0] & keys[2] and not keys[1] & keys[2]


@pytest.mark.parametrize("name", ["trec", "sst2"])
def test_deterministic_and_report_independent_of_train_size(name: str) -> None:
    _need(name)
    a = ds.load(name, n_train=20, n_select=5, n_report=30, seed=1)
    b = ds.load(name, n_train=20, n_select=5, n_report=30, seed=1)
    c = ds.load(name, n_train=7, n_select=40, n_report=30, seed=1)
    d = ds.load(name, n_train=20, n_select=5, n_report=30, seed=2)
    assert (a.train, a.select, a.report) == (b.train, b.select, b.report)
    assert a.report == c.report  # the reported rows never depend on how much training data is used
    assert a.report != d.report and a.train != d.train


def test_stratified_train_has_rare_classes() -> None:
    _need("trec")
    split = ds.load("trec", n_train=12, n_select=12, n_report=5)
    # abbreviation is 1.6 % of TREC train: proportional sampling alone would give it 0 of 12
    assert {r["label"] for r in split.train} == set(split.labels)
    assert {r["label"] for r in split.select} == set(split.labels)


def test_report_is_the_evaluation_file_and_leaks_are_removed() -> None:
    _need("chnsenticorp")
    split = ds.load("chnsenticorp", n_train=0, n_select=0, n_report=None)
    assert len(split.report) == 900  # dev.tsv (shared part)
    report_keys = {ds.norm(r["text"]) for r in split.report}
    pool, _, _ = ds._prepared("chnsenticorp")
    assert not {ds.norm(r["text"]) for r in pool} & report_keys  # ~340 upstream train/dev duplicates dropped
    assert len(pool) < 9600


def test_quota_rules() -> None:
    import random

    rng = random.Random(0)
    q = ds._quota({"a": 90, "b": 9, "c": 1}, 10, rng)
    assert q == {"a": 8, "b": 1, "c": 1} and sum(q.values()) == 10
    q = ds._quota({"a": 5, "b": 5, "c": 5}, 2, rng)
    assert sum(q.values()) == 2 and max(q.values()) == 1
    assert ds._quota({"a": 3, "b": 1}, 4, rng) == {"a": 3, "b": 1}
    with pytest.raises(ValueError):
        ds._quota({"a": 1}, 2, rng)


def test_ag_news_cleaning() -> None:
    assert ds._clean_ag(r"NASA #39;s \$16.2 billion") == "NASA's $16.2 billion"
    assert ds._clean_ag("new &lt;b&gt;...&lt;/b&gt;") == "new ..."
    assert ds._clean_ag(r"said  quot;no quot;\again") == 'said "no" again'


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        ds.load("nope", n_train=1, n_select=1, n_report=1)
