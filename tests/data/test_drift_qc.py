from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score

from openautoglm.data.drift import drift, drift_over_time, js, kl, psi
from openautoglm.data.qc import agreement, check_guideline, cohen_kappa, fleiss_kappa
from openautoglm.errors import ConfigError, InputDataError


def test_divergences() -> None:
    p, q = [0.5, 0.5], [0.9, 0.1]
    assert psi(p, p) == pytest.approx(0) and js(p, p) == pytest.approx(0)
    assert psi(p, q) == pytest.approx((0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5))
    assert kl(q, p) == pytest.approx(0.9 * math.log(1.8) + 0.1 * math.log(0.2))
    assert 0 < js(p, q) < 1 and js([1, 0], [0, 1]) == pytest.approx(1, abs=0.01)


def _rows(n: int, pos_share: float, seed: int, words: list[str]) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{"text": " ".join(rng.choice(words) for _ in range(rng.randint(4, 12))),
             "label": "pos" if rng.random() < pos_share else "neg"} for _ in range(n)]


WORDS_A = ["market", "stocks", "bank", "rate", "profit", "shares", "trade", "growth"]
WORDS_B = ["match", "goal", "team", "season", "coach", "league", "win", "score"]


@pytest.mark.slow
def test_drift_detects_label_and_text_shift() -> None:
    ref = _rows(300, 0.5, 0, WORDS_A)
    same = drift(ref, _rows(300, 0.5, 1, WORDS_A), label_column="label", embedder="char-ngram")
    assert same.ok, same.metrics
    shifted = drift(ref, _rows(300, 0.9, 2, WORDS_B), label_column="label", embedder="char-ngram")
    assert {"label_psi", "label_js", "embedding_psi_max"} <= set(shifted.failed)
    assert shifted.metrics["embedding_psi_max"] > same.metrics["embedding_psi_max"]
    assert "FAIL" in shifted.to_html()
    with pytest.raises(InputDataError, match="no column 'label'"):
        drift(ref, [{"text": "x"}], label_column="label")


def test_drift_over_time_windows() -> None:
    rows = [{**r, "date": f"2024-0{1 + i // 200}-15"} for i, r in enumerate(_rows(400, 0.5, 0, WORDS_A) )]
    for r in rows[200:]:
        r["label"] = "pos"
    windows = drift_over_time(rows, "date", freq="M", label_column="label", embeddings=False)
    assert [w for w, _ in windows] == ["2024-02"] and not windows[0][1].ok


def test_kappas_match_references() -> None:
    a = list("aabbcabcab" * 3)
    b = list("abbbcaccab" * 3)
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    # Fleiss (1971) worked example from Wikipedia: 10 items, 14 raters, kappa 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    rows = [[str(cat) for cat, count in enumerate(counts) for _ in range(count)] for counts in table]
    assert fleiss_kappa(rows) == pytest.approx(0.210, abs=0.001)
    # two raters: Fleiss' kappa is Scott's pi, (p_o - p_e) / (1 - p_e) with pooled label shares
    pairs = [["a", "a"], ["a", "b"], ["b", "b"], ["b", "b"]]
    p_e = (3 / 8) ** 2 + (5 / 8) ** 2
    assert fleiss_kappa(pairs) == pytest.approx((0.75 - p_e) / (1 - p_e))


def test_kappa_edge_cases() -> None:
    """Where the libraries answer 0/0: no items is NaN, one shared label everywhere is perfect agreement."""
    assert math.isnan(cohen_kappa([], [])) and math.isnan(fleiss_kappa([]))
    assert cohen_kappa(["x"] * 5, ["x"] * 5) == 1.0
    assert fleiss_kappa([["x", "x", "x"]] * 4) == 1.0
    assert cohen_kappa(["x", "y"], ["y", "x"]) == pytest.approx(-1.0)
    with pytest.raises(InputDataError):
        fleiss_kappa([["a", "b"], ["a"]])


def test_agreement_report() -> None:
    recs = [{"a1": x, "a2": y, "a3": z} for x, y, z in
            [("pos", "pos", "pos"), ("neg", "neg", "pos"), ("pos", "neg", "neg"), ("neg", "neg", "neg")] * 5]
    result = agreement(recs, ["a1", "a2", "a3"])
    assert set(result.pairwise) == {"a1~a2", "a1~a3", "a2~a3"}
    assert result.confusion["a1~a2"] == {"pos": {"neg": 5}}
    assert result.n_items == 20 and -1 <= result.fleiss <= 1
    with pytest.raises(InputDataError):
        agreement(recs, ["a1"])


def test_guideline_rules(tmp_path: Path) -> None:
    guide = tmp_path / "guide.yaml"
    guide.write_text("labels: [pos, neg]\nrequired: [text]\nfields:\n  text: {min_length: 3}\n"
                     "spans:\n  column: ents\n  labels: [PER, ORG]\n", encoding="utf-8")
    recs = [
        {"text": "John works at IBM", "label": "pos", "ents": '[{"start": 0, "end": 4, "label": "PER"}, {"start": 14, "end": 17, "label": "ORG"}]'},
        {"text": "ok", "label": "maybe", "ents": '[{"start": 0, "end": 1, "label": "PER"}]'},
        {"text": "Ann met Bob", "label": "neg", "ents": '[{"start": 0, "end": 4, "label": "PER"}, {"start": 2, "end": 7, "label": "LOC"}]'},
        {"text": "", "label": "neg", "ents": "not json"},
    ]
    found = {(v["row"], v["rule"]) for v in check_guideline(recs, guide)}
    assert (0, "span_bounds") not in found and not any(r == 0 for r, _ in found)
    assert {(1, "min_length"), (1, "allowed_labels"), (1, "span_word_boundary")} <= found
    assert {(2, "span_whitespace"), (2, "span_label"), (2, "span_overlap")} <= found
    assert {(3, "required"), (3, "span_format")} <= found
    guide.write_text("labelz: [a]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key 'labelz'"):
        check_guideline(recs, guide)
