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

This module holds the workflow (:func:`distill`, :func:`compare_on_dev`); the
:class:`Student` is in :mod:`.student_model` and its classifier's fit in :mod:`.student_fit`
(their names are importable from here too).  numpy and scikit-learn are imported inside
the functions.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from ..embeddings import INSTALL_HINT, Embedder, get_embedder
from ..errors import ConfigError, InputDataError, OpenAutoGLMError, TemplateError
# TemperatureScaled must stay importable from here: students saved before the split pickled it as
# openautoglm.optimize.distill.TemperatureScaled
from .student_fit import C_GRID, CALIBRATION_MIN_ROWS, ISOTONIC_MIN_ROWS, TemperatureScaled
from .student_fit import _fit_classifier  # noqa: F401 - tests import it from here
from .student_model import FORMAT, META_FILE, MODEL_FILE, Student, _require_sklearn, render_input

if TYPE_CHECKING:  # pragma: no cover
    from ..core.config import StepConfig
    from ..core.pipeline import Pipeline

__all__ = ["C_GRID", "CALIBRATION_MIN_ROWS", "FALLBACK_ROWS", "FORMAT", "ISOTONIC_MIN_ROWS", "META_FILE",
           "MIN_ROWS_PER_LABEL", "MODEL_FILE", "DistillResult", "Student", "TemperatureScaled", "compare_on_dev",
           "distill", "final_label_step", "render_input", "select_confident"]

#: a label with fewer confident rows than this keeps its FALLBACK_ROWS most confident rows
MIN_ROWS_PER_LABEL = 2
FALLBACK_ROWS = 5


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
