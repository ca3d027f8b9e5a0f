"""``balance``: handle class imbalance.

* :func:`class_weights` – ``n / (k · n_c)`` per class (scikit-learn's "balanced"), for losses.
* :func:`balance` with ``method=``:
  - ``oversample`` / ``undersample`` – random, to the majority / minority class size
    (imbalanced-learn ``RandomOverSampler`` / ``RandomUnderSampler``), returns records;
  - ``smote``, ``borderline-smote``, ``adasyn`` – SMOTE family on sentence embeddings,
    returns feature vectors and labels (synthetic points have no text; train a classifier
    on embeddings with them);
  - ``paraphrase`` – an Open-AutoGLM pipeline (default: the embedded model) rewrites minority
    rows until each class reaches ``target`` rows; paraphrases that duplicate an original
    or each other (exact or near duplicate, Jaccard ≥ ``dedup_threshold``) are dropped.
    Generated text passes through the same PII redaction as ``clean`` (``pii="mask"`` by
    default: a model that copies a phone number from its source row does not put it in a
    new row; ``pii="none"`` keeps it), before the duplicate checks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import InputDataError, OpenAutoGLMError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

METHODS = ("oversample", "undersample", "smote", "borderline-smote", "adasyn", "paraphrase")
#: two demonstrations: a 135M model copies the input without them
PARAPHRASE_TEMPLATE = ("Paraphrase each sentence with different words, keeping its meaning.\n"
                       "Sentence: the food was cold and the service was slow\n"
                       "Paraphrase: our meals arrived cold and the waiters took ages\n"
                       "Sentence: I loved every minute of this trip\n"
                       "Paraphrase: this trip was a joy from start to finish\n"
                       "Sentence: {text}\nParaphrase:")


def class_weights(labels: Sequence[Any]) -> dict[str, float]:
    """``n / (k · n_c)`` for each class ``c`` (1.0 everywhere when balanced)."""
    counts = Counter(str(x) for x in labels)
    if not counts:
        raise InputDataError("class_weights needs at least one label")
    n, k = sum(counts.values()), len(counts)
    return {c: round(n / (k * m), 6) for c, m in sorted(counts.items())}


@dataclass
class BalanceResult:
    """Balanced records (or ``features``/``labels`` for SMOTE-family methods) and the counts."""

    method: str
    before: dict[str, int]
    after: dict[str, int]
    records: list[dict[str, Any]] = field(default_factory=list)
    features: "np.ndarray | None" = None
    labels: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def balance(records: Sequence[Mapping[str, Any]], *, label_column: str = "label", text_column: str = "text",
            method: str = "oversample", seed: int = 0, embedder: str = "auto", k_neighbors: int = 5,
            pipeline: Any = None, target: int | None = None, max_new: int | None = None,
            dedup_threshold: float = 0.8, progress: bool = False, pii: str | None = "mask",
            pii_types: Sequence[str] | None = None, pii_salt: str = "openautoglm") -> BalanceResult:
    """Rebalance ``records`` by ``method`` (see the module docstring); ``pii``, ``pii_types`` and
    ``pii_salt`` redact paraphrases as :class:`~openautoglm.data.clean.CleanConfig` does."""
    method = method.lower().replace("_", "-")
    if method not in METHODS:
        raise OpenAutoGLMError(f"unknown balance method {method!r}", hint=f"use one of: {', '.join(METHODS)}")
    if not records:
        raise InputDataError("balance needs records")
    for col in (label_column,) + ((text_column,) if method != "oversample" and method != "undersample" else ()):
        if col not in records[0]:
            raise InputDataError(f"no column {col!r}; columns: {', '.join(map(str, records[0]))}",
                                 hint="pass --label-column / --text-column")
    labels = [str(r[label_column]) for r in records]
    before = dict(Counter(labels).most_common())
    if method in ("oversample", "undersample"):
        import numpy as np
        from imblearn.over_sampling import RandomOverSampler
        from imblearn.under_sampling import RandomUnderSampler

        sampler = (RandomOverSampler if method == "oversample" else RandomUnderSampler)(random_state=seed)
        idx, out_labels = sampler.fit_resample(np.arange(len(records)).reshape(-1, 1), labels)
        out = [dict(records[int(i)]) for i in idx[:, 0]]
        return BalanceResult(method, before, dict(Counter(out_labels).most_common()), records=out)
    if method == "paraphrase":
        redactor = _redactor(pii, pii_types, pii_salt)  # a bad mode fails before any model call
        return _paraphrase(records, labels, before, text_column, label_column, pipeline, target, max_new,
                           dedup_threshold, seed, progress, redactor)
    from imblearn.over_sampling import ADASYN, SMOTE, BorderlineSMOTE

    from ..embeddings import get_embedder

    texts = [str(r.get(text_column) or "") for r in records]
    features = get_embedder(embedder, corpus=texts).encode(texts)
    smallest = min(before.values())
    k = max(1, min(k_neighbors, smallest - 1))
    if smallest < 2:
        raise InputDataError(f"{method} needs at least 2 rows in every class; smallest has {smallest}",
                             hint="use --method oversample")
    cls = {"smote": SMOTE, "borderline-smote": BorderlineSMOTE, "adasyn": ADASYN}[method]
    kwargs = {"n_neighbors": k} if method == "adasyn" else {"k_neighbors": k}
    try:
        X, y = cls(random_state=seed, **kwargs).fit_resample(features, labels)
    except (ValueError, RuntimeError) as exc:
        raise OpenAutoGLMError(f"{method} failed: {exc}", hint="try --method smote or oversample") from None
    return BalanceResult(method, before, dict(Counter(y).most_common()), features=X, labels=list(y),
                         info={"embedder": getattr(features, "dtype", None) and embedder, "k_neighbors": k})


def _redactor(mode: str | None, types: Sequence[str] | None, salt: str) -> Any:
    """``text -> (redacted text, PII types found)`` as ``clean`` redacts, or ``None`` for no redaction."""
    from .pii import REDACT_MODES, PIIDetector

    if mode is None or mode == "none":
        return None
    if mode not in REDACT_MODES:
        raise OpenAutoGLMError(f"unknown PII mode {mode!r}", hint=f"use one of: {', '.join(REDACT_MODES)}")
    detector = PIIDetector(types, salt=salt)

    def redact(text: str) -> tuple[str, list[str]]:
        redacted, matches = detector.redact_with_matches(text, mode)
        return redacted, [m.type for m in matches]

    return redact


def _paraphrase(records: Sequence[Mapping[str, Any]], labels: list[str], before: dict[str, int], text_column: str,
                label_column: str, pipeline: Any, target: int | None, max_new: int | None,
                dedup_threshold: float, seed: int, progress: bool, redactor: Any = None) -> BalanceResult:
    import random

    from .dedup import NearDuplicateIndex, exact_key

    pipe = _paraphrase_pipeline(pipeline)
    goal = target or max(before.values())
    rng = random.Random(seed)
    index = NearDuplicateIndex(dedup_threshold, unit="auto")
    originals = [str(r.get(text_column) or "") for r in records]
    index.add(originals, keep_duplicates=True)
    keys = {exact_key(t) for t in originals}
    jobs: list[tuple[str, Mapping[str, Any]]] = []
    for label, count in before.items():
        pool = [r for r, lab in zip(records, labels) if lab == label]
        need = max(0, goal - count)
        jobs += [(label, pool[rng.randrange(len(pool))]) for _ in range(need)]
    if max_new is not None:
        jobs = jobs[:max_new]
    results = pipe.run_batch([{"text": str(src.get(text_column) or "")} for _, src in jobs], progress=progress)
    new: list[dict[str, Any]] = []
    rejected = Counter[str]()
    redacted = Counter[str]()
    for (label, src), res in zip(jobs, results):
        text = str(res.get("text") or "").strip().split("\n")[0].strip() if isinstance(res, Mapping) else ""
        if not text:
            rejected["empty"] += 1
            continue
        if redactor is not None:
            text, found = redactor(text)
            redacted.update(found)
        key = exact_key(text)
        if key in keys:
            rejected["exact_duplicate"] += 1
            continue
        if index.add([text])[0] is not None:
            rejected["near_duplicate"] += 1
            continue
        keys.add(key)
        new.append({**dict(src), text_column: text, label_column: label, "_source": "paraphrase"})
    out = [dict(r) for r in records] + new
    after = Counter(labels) + Counter(r[label_column] for r in new)
    return BalanceResult("paraphrase", before, dict(after.most_common()), records=out,
                         info={"requested": len(jobs), "added": len(new), "rejected": dict(rejected),
                               "pii_redacted": dict(redacted.most_common())})


def _paraphrase_pipeline(pipeline: Any) -> Any:
    from ..core.pipeline import Pipeline
    from ..core.task import Task
    from ._pipeline import load_pipeline

    if pipeline is None or (isinstance(pipeline, str) and not pipeline.endswith((".yaml", ".yml"))):
        # sampled (temperature 0.8): several paraphrases of one minority row must differ
        task = Task(name="paraphrase", template=PARAPHRASE_TEMPLATE, output="text", format="text",
                    answer_prefix="", max_tokens=48, stop=["\n"], temperature=0.8)
        return Pipeline(model=pipeline, task=task)
    return load_pipeline(pipeline)
