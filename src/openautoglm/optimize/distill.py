"""Distillation: a teacher pipeline labels unlabeled records, a small student learns them.

>>> result = distill(Pipeline(model="local", task=task), records, dev=dev_records, out_dir="out/student")
>>> result.student.classify({"text": "a gorgeous film"})
{'label': 'positive', 'confidence': 0.91, 'scores': {...}, 'method': 'student(minilm+logreg)'}

* The teacher is a :class:`~openautoglm.core.pipeline.Pipeline` whose final output is a
  label result; it runs with ``run_batch`` (traced in the store as usual).
* Rows it labels with confidence ≥ ``min_confidence`` train the student; a label with
  fewer than two such rows keeps its most confident rows instead (reported).
* The student embeds the text the teacher's task sees (its template filled in with the
  record) with :mod:`openautoglm.embeddings`, then fits a class-balanced multinomial
  logistic regression (C by cross-validation), calibrated with ``CalibratedClassifierCV``
  from ~100 rows on.  Its probabilities are what it reports as confidence.
* ``Student.save(dir)`` writes ``student.joblib`` (the scikit-learn objects) and
  ``student.json`` (labels, template, teacher, training stats, and the sha256 of the
  joblib file, checked before :meth:`Student.load` unpickles it); ``student:<dir>`` is a
  backend (:mod:`openautoglm.optimize.student`).

numpy and scikit-learn are imported inside the functions.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from ..core.prompt import Template
from ..embeddings import INSTALL_HINT, Embedder, get_embedder
from ..errors import ConfigError, InputDataError, OpenAutoGLMError, TemplateError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..core.config import StepConfig
    from ..core.pipeline import Pipeline
    from ..core.task import Task

FORMAT = "openautoglm-student"
MODEL_FILE = "student.joblib"
META_FILE = "student.json"
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
#: calibrate probabilities (sigmoid) from this many training rows on; isotonic from ISOTONIC_MIN_ROWS
CALIBRATION_MIN_ROWS = 100
ISOTONIC_MIN_ROWS = 1000
#: a label with fewer confident rows than this keeps its FALLBACK_ROWS most confident rows
MIN_ROWS_PER_LABEL = 2
FALLBACK_ROWS = 5


def _require_sklearn() -> None:
    import importlib.util

    for module, package in (("sklearn", "scikit-learn"), ("joblib", "joblib")):
        if importlib.util.find_spec(module) is None:
            raise OpenAutoGLMError(f"{package} is not installed (needed by the distilled student)", hint=INSTALL_HINT)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _lookup(context: Mapping[str, Any], expr: str) -> Any:
    value: Any = context
    for part in expr.split("."):
        if not (isinstance(value, Mapping) and part in value):
            raise TemplateError(f"student input {expr!r} not found; the record has: {', '.join(sorted(context))}",
                                hint="give the record the fields the distilled task reads")
        value = value[part]
    return value


def render_input(template: str, inputs: Mapping[str, str], record: Mapping[str, Any]) -> str:
    """Fill ``template`` from ``record``, mapping variables through ``inputs`` like a step does."""
    context = dict(record)
    for var, expr in inputs.items():
        context[var] = _lookup(record, expr)
    return Template(template, where="student template").render(context)


class Student:
    """A classifier distilled from a teacher: ``embedder`` + calibrated logistic regression.

    scikit-learn-like: parameters in ``__init__``, :meth:`fit` learns ``classifier_``;
    :meth:`predict` / :meth:`predict_proba` take texts, :meth:`classify` a record
    (rendered with ``template``, as the teacher's task renders it).
    """

    def __init__(
        self,
        labels: Sequence[str],
        embedder: Embedder,
        *,
        template: str = "{text}",
        inputs: Mapping[str, str] | None = None,
        verbalizers: Mapping[str, str] | None = None,
        teacher: Mapping[str, Any] | None = None,
        random_state: int = 0,
    ) -> None:
        self.labels = [str(label) for label in labels]
        self.embedder = embedder
        self.template = template
        self.inputs = dict(inputs or {})
        self.verbalizers = dict(verbalizers or {})
        self.teacher = dict(teacher or {})
        self.random_state = random_state
        self.classifier_: Any = None
        self.stats_: dict[str, Any] = {}
        self.fingerprint_: str | None = None

    @property
    def method(self) -> str:
        return f"student({self.embedder.name}+logreg)"

    def render(self, record: Mapping[str, Any]) -> str:
        """The text the student embeds for ``record`` (the task template filled in)."""
        return render_input(self.template, self.inputs, record)

    # -- learning ------------------------------------------------------------------------
    def fit(self, texts: Sequence[str], y: Sequence[str]) -> "Student":
        unknown = sorted(set(y) - set(self.labels))
        if unknown:
            raise OpenAutoGLMError(f"training labels {unknown} are not among the student's labels {self.labels}")
        _require_sklearn()
        started = time.perf_counter()
        X = self.embedder.encode([str(t).strip() for t in texts])
        self.classifier_, info = _fit_classifier(X, [str(v) for v in y], self.random_state)
        counts = Counter(y)
        self.stats_ = {
            "train_rows": len(y),
            "train_rows_per_label": {label: counts.get(label, 0) for label in self.labels},
            "embedder": self.embedder.name,
            "embedding_dim": int(X.shape[1]),
            **info,
            "fit_seconds": round(time.perf_counter() - started, 3),
        }
        self.fingerprint_ = None
        return self

    def _fitted(self) -> Any:
        if self.classifier_ is None:
            raise OpenAutoGLMError("the student is not trained", hint="call fit(), distill(), or Student.load(dir)")
        return self.classifier_

    # -- inference -------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str]) -> "np.ndarray":
        """Calibrated probabilities, one row per text, columns in ``self.labels`` order."""
        import numpy as np

        clf = self._fitted()
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        if not len(texts):
            return out
        raw = clf.predict_proba(self.embedder.encode([str(t).strip() for t in texts]))
        column = {label: i for i, label in enumerate(self.labels)}
        for j, cls in enumerate(clf.classes_):
            out[:, column[str(cls)]] = raw[:, j]
        return out / out.sum(axis=1, keepdims=True)

    def predict(self, texts: Sequence[str]) -> list[str]:
        probs = self.predict_proba(texts)
        return [self.labels[i] for i in probs.argmax(axis=1)]

    def classify_many(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        probs = self.predict_proba([self.render(r) for r in records])
        return [self._result(row) for row in probs]

    def classify(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A label result like the teacher's: ``label``, ``confidence``, ``scores``, ``method``."""
        return self.classify_many([record])[0]

    def _result(self, row: Sequence[float]) -> dict[str, Any]:
        best = max(range(len(self.labels)), key=lambda i: row[i])
        return {
            "label": self.labels[best],
            "confidence": float(row[best]),
            "scores": {label: float(p) for label, p in zip(self.labels, row)},
            "method": self.method,
        }

    def teacher_task(self) -> "Task | None":
        """The teacher's final task, rebuilt from the saved config (None if it does not validate)."""
        config = self.teacher.get("task")
        if not isinstance(config, Mapping):
            return None
        from ..core.task import Task

        try:
            return Task.model_validate(dict(config))
        except Exception:  # noqa: BLE001 - an old or foreign config: callers fall back to heuristics
            return None

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``student.joblib`` and ``student.json`` into ``directory``."""
        import joblib
        import sklearn

        clf = self._fitted()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        blob = {"format": FORMAT, "classifier": clf,
                "embedder": None if self.embedder.name == "minilm" else self.embedder}
        joblib.dump(blob, path / MODEL_FILE)
        meta = {
            "format": FORMAT,
            "version": 1,
            "labels": self.labels,
            "verbalizers": self.verbalizers,
            "embedder": self.embedder.name,
            "method": self.method,
            "template": self.template,
            "inputs": self.inputs,
            "random_state": self.random_state,
            "teacher": self.teacher,
            "stats": self.stats_,
            "sklearn_version": sklearn.__version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "files": {MODEL_FILE: _sha256(path / MODEL_FILE)},
        }
        raw = json.dumps(meta, indent=2, ensure_ascii=False, default=str).encode("utf-8")
        (path / META_FILE).write_bytes(raw)
        self.fingerprint_ = hashlib.sha256(raw).hexdigest()
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "Student":
        """Load a student written by :meth:`save`; refuses a joblib file that does not match its json."""
        path = Path(directory)
        meta_path, model_path = path / META_FILE, path / MODEL_FILE
        if not meta_path.is_file():
            raise OpenAutoGLMError(f"{path} is not a saved student (no {META_FILE})",
                                   hint="create one with `openautoglm distill` or Student.save(dir)")
        raw = meta_path.read_bytes()
        try:
            meta = json.loads(raw)
        except ValueError as exc:
            raise OpenAutoGLMError(f"{meta_path}: not valid JSON: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise OpenAutoGLMError(f"{meta_path} is not an openautoglm student description")
        expected = (meta.get("files") or {}).get(MODEL_FILE)
        if not model_path.is_file():
            raise OpenAutoGLMError(f"{model_path} is missing", hint="copy the whole student directory")
        if not expected or _sha256(model_path) != expected:
            raise OpenAutoGLMError(
                f"{model_path} does not match the sha256 recorded in {META_FILE}; refusing to unpickle it",
                hint="re-run distill, or copy student.json and student.joblib together",
            )
        _require_sklearn()
        import joblib

        blob = joblib.load(model_path)
        embedder = blob.get("embedder") or get_embedder(meta["embedder"])
        student = cls(meta["labels"], embedder, template=meta["template"], inputs=meta.get("inputs"),
                      verbalizers=meta.get("verbalizers"), teacher=meta.get("teacher"),
                      random_state=int(meta.get("random_state", 0)))
        student.classifier_ = blob["classifier"]
        student.stats_ = dict(meta.get("stats") or {})
        student.fingerprint_ = hashlib.sha256(raw).hexdigest()
        return student

    def __repr__(self) -> str:
        return f"Student(labels={self.labels}, method={self.method!r}, trained={self.classifier_ is not None})"


def _fit_classifier(X: "np.ndarray", y: list[str], random_state: int) -> tuple[Any, dict[str, Any]]:
    """Class-balanced multinomial LR; C by stratified CV when every label has ≥ 3 rows;
    calibrated (sigmoid, isotonic from 1000 rows) from 100 rows on."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    counts = Counter(y)
    if len(counts) < 2:
        raise OpenAutoGLMError(
            f"the student needs training rows of at least two labels; it got only {sorted(counts)}",
            hint="lower min_confidence, or give more (and more varied) records",
        )
    n, folds = len(y), min(5, min(counts.values()))

    def model(c: float) -> Any:  # lbfgs: multinomial for more than two classes
        return LogisticRegression(C=c, class_weight="balanced", max_iter=2000)

    info: dict[str, Any] = {}
    C = 1.0
    if folds >= 3 and n >= 20:
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
        search = GridSearchCV(model(C), {"C": list(C_GRID)}, cv=cv, scoring="neg_log_loss").fit(X, y)
        C = float(search.best_params_["C"])
        info.update(c_search=f"{folds}-fold CV over {list(C_GRID)}", cv_log_loss=round(-float(search.best_score_), 4))
    else:
        info["c_search"] = "none (fewer than 3 rows of some label): C=1"
    info["C"] = C
    if n >= CALIBRATION_MIN_ROWS and folds >= 3:
        method = "isotonic" if n >= ISOTONIC_MIN_ROWS else "sigmoid"
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
        clf = CalibratedClassifierCV(model(C), method=method, cv=cv).fit(X, y)
        info["calibration"] = f"{method} ({folds}-fold CalibratedClassifierCV)"
    elif n >= CALIBRATION_MIN_ROWS:  # many labels, some with < 3 rows: stratified folds are impossible
        clf = TemperatureScaled.fit(model(C), X, y, random_state)
        info["calibration"] = (f"temperature {clf.temperature:.3g} from 5-fold out-of-fold predictions "
                               f"(some labels have fewer than 3 rows)")
    else:
        clf = model(C).fit(X, y)
        info["calibration"] = f"none: plain logistic regression (fewer than {CALIBRATION_MIN_ROWS} rows)"
    return clf, info


class TemperatureScaled:
    """A classifier fitted on all rows whose log-probabilities are divided by one
    temperature, chosen to minimise the log-loss of out-of-fold predictions (plain k-fold:
    works when some labels have too few rows for stratified folds; a label missing from a
    fold's training part gets a floor probability there)."""

    def __init__(self, estimator: Any, temperature: float) -> None:
        self.estimator, self.temperature = estimator, temperature
        self.classes_ = estimator.classes_

    @classmethod
    def fit(cls, estimator: Any, X: "np.ndarray", y: list[str], random_state: int) -> "TemperatureScaled":
        import numpy as np
        from sklearn.base import clone
        from sklearn.model_selection import KFold

        classes = sorted(set(y))
        index = {c: i for i, c in enumerate(classes)}
        target = np.array([index[v] for v in y])
        oof = np.full((len(y), len(classes)), 1e-6)
        seen = np.zeros(len(y), dtype=bool)  # the row's label was in its fold's training part
        for train, test in KFold(n_splits=5, shuffle=True, random_state=random_state).split(X):
            part = [y[i] for i in train]
            known = set(part)
            if len(known) < 2:
                continue
            fold = clone(estimator).fit(X[train], part)
            oof[np.ix_(test, [index[c] for c in fold.classes_])] = np.maximum(fold.predict_proba(X[test]), 1e-6)
            seen[test] = [y[i] in known for i in test]
        if seen.sum() < 2:
            return cls(clone(estimator).fit(X, y), 1.0)
        # rows whose label a fold never saw say nothing about the temperature (their floor
        # probability would only push it up): fit on the others
        logp = np.log(oof / oof.sum(axis=1, keepdims=True))[seen]
        target = target[seen]

        def log_loss(t: float) -> float:
            z = logp / t
            z -= z.max(axis=1, keepdims=True)
            return float(-(z[np.arange(len(target)), target] - np.log(np.exp(z).sum(axis=1))).mean())

        best = min(np.geomspace(0.05, 20.0, 61), key=log_loss)
        return cls(clone(estimator).fit(X, y), float(best))

    def predict_proba(self, X: "np.ndarray") -> "np.ndarray":
        import numpy as np

        z = np.log(np.maximum(self.estimator.predict_proba(X), 1e-12)) / self.temperature
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: "np.ndarray") -> "np.ndarray":
        return self.estimator.predict(X)


# -- distillation ------------------------------------------------------------------------------
@dataclass
class DistillResult:
    """What :func:`distill` did: the student, the rows it kept, and (with ``dev``) the comparison."""

    student: Student
    records: int
    failed: int  # records the teacher could not label
    teacher_counts: dict[str, int]  # teacher predictions per label
    kept: dict[str, int]  # rows that trained the student, per label
    thresholds: dict[str, float]  # confidence threshold applied per label
    lowered: dict[str, float]  # labels whose threshold was lowered, and to what
    min_confidence: float
    teacher_seconds: float
    dev: dict[str, Any] | None = None
    out_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n_kept(self) -> int:
        return sum(self.kept.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records, "failed": self.failed, "teacher_counts": self.teacher_counts,
            "kept": self.kept, "thresholds": self.thresholds, "lowered": self.lowered,
            "min_confidence": self.min_confidence, "teacher_seconds": round(self.teacher_seconds, 3),
            "student": self.student.stats_, "method": self.student.method, "dev": self.dev,
            "out_dir": str(self.out_dir) if self.out_dir else None, "notes": self.notes,
        }

    def summary(self) -> str:
        lines = [f"teacher labelled {self.records - self.failed} of {self.records} records"
                 f" in {self.teacher_seconds:.1f} s; kept {self.n_kept} (confidence >= {self.min_confidence:g}):"]
        for label, n in self.kept.items():
            extra = f", threshold lowered to {self.lowered[label]:.3f}" if label in self.lowered else ""
            lines.append(f"  {label}: {n} kept of {self.teacher_counts.get(label, 0)} predicted{extra}")
        stats = self.student.stats_
        lines.append(f"student {self.student.method}: C={stats.get('C')}, calibration: {stats.get('calibration')}")
        if self.dev:
            d = self.dev
            lines.append(f"dev ({d['n']} records): teacher accuracy {d['teacher_accuracy']:.3f} at "
                         f"{d['teacher_ex_per_s']:.1f} ex/s; student accuracy {d['student_accuracy']:.3f} at "
                         f"{d['student_ex_per_s']:.1f} ex/s ({d['speedup']:.1f}x the teacher's speed); agreement {d['agreement']:.3f}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def final_label_step(pipeline: "Pipeline") -> "StepConfig":
    """The step whose output is the pipeline's result; it must be a classification task."""
    name = pipeline.config.output or pipeline.config.steps[-1].name
    step = next(s for s in pipeline.config.steps if s.name == name)
    if step.task is None or not step.task.kind.distribution or not step.task.labels:
        raise ConfigError(
            f"distillation needs a pipeline whose result is a label distribution; step {name!r} is not a "
            "classification task",
            source=pipeline.source or "Pipeline(...)", field=f"steps.{name}",
            hint="the final step (or `output:`) must be a task with `labels:`",
        )
    return step


def _teacher_context(record: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    """The record plus earlier steps' outputs, as the final step saw them."""
    context = dict(record)
    steps = result.get("steps")
    if isinstance(steps, Mapping):
        context.update(steps)
    return context


def select_confident(
    rows: Sequence[tuple[str, float]], labels: Sequence[str], min_confidence: float
) -> tuple[list[int], dict[str, float], dict[str, float], list[str]]:
    """Indices of the rows to keep, per-label thresholds, lowered thresholds, notes.

    ``rows`` are (teacher label, confidence).  A label with fewer than
    ``MIN_ROWS_PER_LABEL`` rows at ``min_confidence`` keeps its ``FALLBACK_ROWS``
    most confident rows instead.
    """
    by_label: dict[str, list[tuple[float, int]]] = {label: [] for label in labels}
    for i, (label, conf) in enumerate(rows):
        by_label.setdefault(label, []).append((conf, i))
    keep: list[int] = []
    thresholds: dict[str, float] = {}
    lowered: dict[str, float] = {}
    notes: list[str] = []
    for label, cands in by_label.items():
        cands.sort(key=lambda ci: (-ci[0], ci[1]))
        confident = [i for conf, i in cands if conf >= min_confidence]
        if len(confident) >= MIN_ROWS_PER_LABEL:
            keep += confident
            thresholds[label] = min_confidence
        elif cands:
            top = cands[:FALLBACK_ROWS]
            keep += [i for _, i in top]
            thresholds[label] = lowered[label] = round(top[-1][0], 6)
            notes.append(f"label {label!r}: only {len(confident)} row(s) at confidence >= {min_confidence:g}; "
                         f"kept its {len(top)} most confident (threshold lowered to {top[-1][0]:.3f})")
        else:
            notes.append(f"label {label!r}: the teacher never predicted it; the student cannot learn it")
    return sorted(keep), thresholds, lowered, notes


def distill(
    pipeline: "Pipeline",
    records: Iterable[Mapping[str, Any]],
    *,
    text_field: str | None = None,
    min_confidence: float = 0.8,
    embedder: str | Embedder = "auto",
    out_dir: str | Path | None = None,
    dev: Iterable[Mapping[str, Any]] | None = None,
    label_column: str = "label",
    progress: bool = False,
) -> DistillResult:
    """Label ``records`` with ``pipeline`` (the teacher) and train a :class:`Student` on the
    confident rows.

    ``text_field``: embed this record field instead of the task's rendered template.
    ``embedder``: ``"auto"``, ``"minilm"``, ``"char-ngram"`` or an :class:`Embedder`.
    ``dev``: records with gold labels in ``label_column``: reports teacher vs student
    accuracy and throughput, measured in this call.  ``out_dir``: save the student there.
    """
    _require_sklearn()
    step = final_label_step(pipeline)
    task = step.task
    assert task is not None and task.labels
    records = [dict(r) for r in records]
    if not records:
        raise InputDataError("distill needs at least one record to label")
    if text_field is not None and text_field not in records[0]:
        raise InputDataError(f"records have no field {text_field!r}; they have: {', '.join(sorted(records[0]))}",
                             hint="pass an existing column as text_field / --text-field")
    if isinstance(embedder, str):
        _check_embedder_early(embedder, records)
    started = time.perf_counter()
    results = pipeline.run_batch(records, progress=progress)
    teacher_seconds = time.perf_counter() - started

    template = task.prompt_template if text_field is None else "{" + text_field + "}"
    inputs = dict(step.inputs) if text_field is None else {}
    backend = pipeline.backend_for(step)
    teacher = {"pipeline": pipeline.config.name, "source": pipeline.source, "step": step.name,
               "backend": backend.name, "model": backend.model, "task": task.to_config()}
    labels = list(task.labels)
    texts: list[str] = []
    rows: list[tuple[str, float]] = []
    failed = 0
    for record, result in zip(records, results):
        if "label" not in result or "confidence" not in result:
            failed += 1
            continue
        try:
            texts.append(render_input(template, inputs, _teacher_context(record, result)))
        except TemplateError:
            failed += 1
            continue
        rows.append((str(result["label"]), float(result["confidence"])))
    if not rows:
        raise OpenAutoGLMError(f"the teacher labelled none of the {len(records)} records",
                               hint="run the pipeline with `openautoglm run` to see the errors")
    keep, thresholds, lowered, notes = select_confident(rows, labels, min_confidence)
    if failed:
        notes.insert(0, f"{failed} record(s) had no teacher label (errors) and were skipped")
    train_texts = [texts[i] for i in keep]
    train_y = [rows[i][0] for i in keep]
    emb = get_embedder(embedder, corpus=train_texts) if isinstance(embedder, str) else embedder
    student = Student(labels, emb, template=template, inputs=inputs, verbalizers=task.verbalizers,
                      teacher=teacher).fit(train_texts, train_y)
    predicted = Counter(label for label, _ in rows)
    result = DistillResult(
        student=student, records=len(records), failed=failed,
        teacher_counts={label: predicted.get(label, 0) for label in labels},
        kept={label: Counter(train_y).get(label, 0) for label in labels},
        thresholds=thresholds, lowered=lowered, min_confidence=min_confidence,
        teacher_seconds=teacher_seconds, notes=notes,
    )
    student.stats_.update(records=len(records), teacher_failed=failed, teacher_counts=result.teacher_counts,
                          kept=result.kept, min_confidence=min_confidence, thresholds=thresholds)
    if dev is not None:
        result.dev = compare_on_dev(pipeline, student, dev, label_column=label_column, progress=progress)
        student.stats_["dev"] = result.dev
    if out_dir is not None:
        result.out_dir = student.save(out_dir)
    return result


def _check_embedder_early(name: str, records: Sequence[Mapping[str, Any]]) -> None:
    """Fail before the (slow) teacher run when the embedder that will be used is missing."""
    from .. import embeddings

    choice = name.strip().lower().replace("_", "-")
    if choice == "auto":
        sample = [str(v) for r in records[:1000] for v in r.values() if isinstance(v, str)]
        choice = "char-ngram" if embeddings.cjk_share(sample) > embeddings.CJK_THRESHOLD else "minilm"
    if choice == "minilm":
        import importlib.util

        embeddings.minilm_path()
        if importlib.util.find_spec("sentence_transformers") is None:
            raise OpenAutoGLMError("sentence-transformers is not installed", hint=INSTALL_HINT)
    elif choice not in ("char-ngram", "charngram", "char"):
        get_embedder(name)  # raises: unknown embedder


def compare_on_dev(
    pipeline: "Pipeline",
    student: Student,
    dev: Iterable[Mapping[str, Any]],
    *,
    label_column: str = "label",
    progress: bool = False,
) -> dict[str, Any]:
    """Teacher vs student accuracy and throughput (examples/s) on gold-labelled records.

    The teacher runs with the response cache off, so its time is real work; the
    student's time covers rendering, embedding and the classifier.
    """
    dev = [dict(r) for r in dev]
    if not dev:
        raise InputDataError("the dev set is empty")
    for i, record in enumerate(dev):
        if label_column not in record:
            raise InputDataError(f"dev record {i} has no gold column {label_column!r}; it has: "
                                 f"{', '.join(sorted(record))}", hint="pass label_column= / --label-column")
    to_label = {str(v): label for label, v in student.verbalizers.items()}
    gold = [to_label.get(str(r[label_column]), str(r[label_column])) for r in dev]
    use_cache = pipeline.cache
    pipeline.cache = False
    try:
        started = time.perf_counter()
        teacher_results = pipeline.run_batch(dev, progress=progress)
        teacher_s = time.perf_counter() - started
    finally:
        pipeline.cache = use_cache
    started = time.perf_counter()
    texts, ok = [], []
    for record, result in zip(dev, teacher_results):
        try:
            texts.append(student.render(_teacher_context(record, result)))
            ok.append(True)
        except TemplateError:
            texts.append("")
            ok.append(False)
    probs = student.predict_proba(texts)
    student_s = time.perf_counter() - started
    student_pred = [student.labels[j] if good else None for j, good in zip(probs.argmax(axis=1), ok)]
    teacher_pred = [r.get("label") for r in teacher_results]
    n = len(dev)

    def accuracy(pred: Sequence[Any]) -> float:
        return sum(p == g for p, g in zip(pred, gold)) / n

    return {
        "n": n,
        "teacher_accuracy": accuracy(teacher_pred),
        "student_accuracy": accuracy(student_pred),
        "agreement": sum(t == s for t, s in zip(teacher_pred, student_pred)) / n,
        "teacher_ex_per_s": n / max(teacher_s, 1e-9),
        "student_ex_per_s": n / max(student_s, 1e-9),
        "speedup": teacher_s / max(student_s, 1e-9),
        "teacher_seconds": round(teacher_s, 3),
        "student_seconds": round(student_s, 3),
        "teacher_failed": sum(1 for p in teacher_pred if p is None),
    }
