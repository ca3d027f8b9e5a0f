"""The distilled student: a text embedder and a calibrated classifier, fitted, applied,
saved and loaded (:class:`Student`).

``Student.save(dir)`` writes ``student.joblib`` (the scikit-learn objects) and
``student.json`` (labels, template, teacher, training stats, and the sha256 of the joblib
file, checked before :meth:`Student.load` unpickles it).  The classifier's fitting is in
:mod:`.student_fit`; the ``student:<dir>`` backend in :mod:`.student`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..core.prompt import Template
from ..embeddings import INSTALL_HINT, Embedder, get_embedder
from ..errors import OpenAutoGLMError, TemplateError
from .student_fit import _fit_classifier

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..core.task import Task

FORMAT = "openautoglm-student"
MODEL_FILE = "student.joblib"
META_FILE = "student.json"


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
