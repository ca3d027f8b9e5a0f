"""Automatic prompt optimization for label tasks, within a budget of model calls.

The search is greedy over stages, each keeping the best task so far:

1. **prompt** – the task as given, the other prompt format (chat ⇄ text), other answer
   cues, a stock instruction and instructions proposed by the model itself;
2. **verbalizers** – the word scored for each label: label spellings and model-proposed
   synonyms, chosen per label by how well they separate the train examples (LM-BFF style);
3. **demonstrations** – fixed few-shot sets bootstrapped from train examples the model
   already gets right with high confidence (DSPy's BootstrapFewShot idea, label-balanced),
   a random balanced set, and demonstrations retrieved per input by embedding similarity;
4. **kNN prior** – with retrieval: mixing the neighbours' label votes into the model's
   distribution, and pruning many-label tasks to the neighbours' top candidates;
5. **head** – a linear classifier fitted on the train rows (``Task.head``): over the
   model's own hidden states (a linear probe; block and regularisation chosen on the
   select rows from one feature pass) or over TF-IDF n-grams, used alone or mixed with
   the label scores of the best prompt so far;
6. **calibration** – contextual calibration, or a per-label bias fitted on train
   predictions so that the mean predicted distribution matches the train label prior.

Candidates are compared on the ``select`` rows (first a small slice, the best two on all
of them); a candidate replaces the current best only when it gets at least two more
selection rows right.  A share of the dev rows (``holdout``) is never used for any decision: the
baseline and the chosen task are both measured there at the end, so the reported gain
is not the selection's own optimism.  Calls answered from the response cache are free;
the budget counts calls that reached the model.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..backends.base import Backend, GenerationRequest, ScoreRequest
from ..backends.delegate import DelegatingBackend
from ..core.head import describe_features
from ..core.labels import distribution_from_logprobs
from ..core.task import Task
from ..errors import ConfigError, OpenAutoGLMError, StopRun

STOCK_PREFIXES = ("Answer:", "Label:", "Category:")
#: at most this share of the budget is kept for the head stage's feature pass
HEAD_SHARE = 0.6
#: head settings are fitted without this share of the train rows and scored on it plus the select rows
VALIDATION_SHARE = 0.2

#: a head setting: (validation score, config, train rows, fitted head, features of the rows then the select rows)
Setting = tuple[float, dict[str, Any], list[dict[str, Any]], Any, Any]


class BudgetExhausted(StopRun):
    """The optimizer spent its budget of model calls."""


class CountingBackend(DelegatingBackend):
    """Delegates to a backend and counts the requests that reach it.

    Hidden-state features are remembered per (text, layer, pooling), every pooling the inner
    backend offers being computed in the same pass, so a text featurised once
    (e.g. for choosing a head's layers) costs nothing when a candidate task asks again.
    """

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.calls = 0
        self.limit: int | None = None
        self._features: dict[tuple[str, int, str], Any] = {}

    def _spend(self, n: int) -> None:
        if self.limit is not None and self.calls + n > self.limit:
            raise BudgetExhausted(f"budget of {self.limit} model calls spent")
        self.calls += n

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Any]:
        self._spend(len(requests))
        return self.inner.generate(requests)

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[Any]:
        self._spend(len(requests))
        return self.inner.score_batch(requests)

    def features(self, texts: Sequence[str], layers: Sequence[int], pooling: str = "mean") -> Any:
        import numpy as np

        seen = self._features
        missing = list(dict.fromkeys(t for t in texts if any((t, layer, pooling) not in seen for layer in layers)))
        if missing:
            self._spend(len(missing))
            kinds = list(self.feature_poolings) if pooling in self.feature_poolings else [pooling]
            fresh = self.inner.features(missing, list(layers), ",".join(kinds))
            width = fresh.shape[-1] // len(kinds)
            for row, text in zip(fresh, missing):
                for j, layer in enumerate(layers):
                    for k, kind in enumerate(kinds):
                        seen[(text, layer, kind)] = row[j, k * width:(k + 1) * width]
        return np.stack([np.stack([seen[(t, layer, pooling)] for layer in layers]) for t in texts])

    def close(self) -> None:  # the owner closes the inner backend
        pass


@dataclass
class Trial:
    stage: str
    description: str
    task: Task
    score: float
    rows: int


@dataclass
class OptimizeResult:
    task: Task
    base_task: Task
    trials: list[Trial]
    metric: str
    scores: dict[str, float]  # base/best on select and holdout
    calls: int
    budget: int
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage

    def summary(self) -> str:
        s = self.scores
        lines = [f"{len(self.trials)} candidates tried, {self.calls}/{self.budget} model calls",
                 f"select  ({self.metric}): base {s['base_select']:.3f} -> best {s['best_select']:.3f}"]
        if "best_holdout" in s:
            lines.append(f"holdout ({self.metric}): base {s['base_holdout']:.3f} -> best {s['best_holdout']:.3f}"
                         f"  (rows never used for any choice)")
        lines.append("chosen: " + describe(self.task))
        if self.seconds:
            lines.append("seconds: " + self.timing())
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def timing(self) -> str:
        """``base 7, prompt 16, ...``: whole seconds per stage."""
        return ", ".join(f"{k} {v:.0f}" for k, v in self.seconds.items())

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "scores": self.scores, "calls": self.calls, "budget": self.budget,
                "chosen": describe(self.task), "notes": self.notes, "seconds": self.seconds,
                "trials": [{"stage": t.stage, "candidate": t.description, "score": t.score, "rows": t.rows}
                           for t in self.trials]}


def describe(task: Task) -> str:
    parts = [f"format={task.format}"]
    if task.format == "text":
        parts.append(f"cue={task.answer_prefix!r}")
    if task.system:
        parts.append(f"instruction={task.system[:60]!r}")
    if task.verbalizers:
        parts.append("verbalizers=" + "/".join(task.verbalizers.get(lab, lab) for lab in task.labels or []))
    if task.examples:
        parts.append(f"{len(task.examples)} demos")
    if task.head:
        h = task.head
        where = describe_features(h.features, h.layers, h.pooling)
        strength = f", C={h.C:g}" if h.C else ""
        parts.append(f"head({where}{strength}, weight={h.weight:g}, {len(h.pool)} examples)")
    if task.retrieval:
        r = task.retrieval
        parts.append(f"retrieval(k={r.k}, knn_weight={r.knn_weight:g}" + (f", candidates={r.candidates}" if r.candidates else "") + ")")
    if task.calibrate:
        parts.append("contextual calibration")
    if task.label_bias:
        parts.append("label bias")
    return ", ".join(parts)


def _variant(task: Task, **changes: Any) -> Task:
    data = task.model_dump(by_alias=True, exclude={"schema_"})
    data.update(changes)
    return Task.model_validate(data)


class Optimizer:
    """Search prompt, verbalizers, demonstrations and calibration for a label task.

    ``backend`` answers the calls; ``task`` is the starting point; ``train`` rows give
    demonstrations and fit calibration; ``dev`` rows are split into ``select`` (choices)
    and ``holdout`` (final, untouched measurement).  Records hold the task's input fields
    and the gold label under ``label_column``.
    """

    def __init__(self, backend: Backend, task: Task, train: Sequence[Mapping[str, Any]],
                 dev: Sequence[Mapping[str, Any]], *, label_column: str = "label", budget: int = 2000,
                 metric: str = "accuracy", holdout: float = 0.3, seed: int = 0, max_demos: int = 8,
                 retrieval: bool = True, embedder: str = "auto", rewrites: int = 2, first_slice: int = 64,
                 head_share: float = HEAD_SHARE, log: Callable[[str], None] | None = None) -> None:
        if not task.kind.distribution or not task.labels:
            raise ConfigError("the optimizer works on label tasks", field="task.labels",
                              hint="give the task `labels:`")
        if metric not in ("accuracy", "macro_f1"):
            raise ConfigError(f"unknown metric {metric!r}", hint="use 'accuracy' or 'macro_f1'")
        self.backend = CountingBackend(backend)
        self.backend.limit = budget
        self.task, self.labels = task, list(task.labels)
        self.label_column, self.metric, self.budget = label_column, metric, budget
        self.rng = random.Random(seed)
        self.max_demos, self.use_retrieval, self.rewrites = max_demos, retrieval, rewrites
        self.embedder = embedder
        self.first_slice = first_slice
        self.head_share = min(1.0, max(0.0, head_share))
        self._retrievers: dict[tuple[str, str, str], Any] = {}  # embedded pools, see _share_retriever
        self._cache: dict[str, dict[str, Any]] = {}
        self.log = log or (lambda _msg: None)
        self.notes: list[str] = []
        self.trials: list[Trial] = []
        self.train = self._clean(train, "train")
        rows = self._clean(dev, "dev")
        self.rng.shuffle(rows)
        n_hold = int(len(rows) * holdout) if len(rows) >= 10 else 0
        self.holdout, self.select = rows[:n_hold], rows[n_hold:]
        if len(self.select) < 4:
            raise ConfigError(f"only {len(self.select)} dev rows left for selection", field="dev",
                              hint="give at least ~30 labelled dev rows")

    # -- data -------------------------------------------------------------------
    def _clean(self, rows: Sequence[Mapping[str, Any]], name: str) -> list[dict[str, Any]]:
        out, unknown = [], Counter()
        for r in rows:
            gold = str(r.get(self.label_column, "")).strip()
            if gold in self.labels:
                out.append(dict(r, **{self.label_column: gold}))
            else:
                unknown[gold] += 1
        if unknown:
            sample = ", ".join(repr(k) for k, _ in unknown.most_common(3))
            if not out:
                raise ConfigError(f"no {name} row has a gold label among the task's labels (saw {sample})",
                                  field=self.label_column, hint="map the file's labels to the task's (--label-map)")
            self.notes.append(f"{sum(unknown.values())} {name} rows skipped: gold label not a task label ({sample})")
        return out

    def _demo(self, row: Mapping[str, Any]) -> dict[str, Any]:
        demo = {k: v for k, v in row.items() if k != self.label_column}
        demo["output"] = row[self.label_column]
        return demo

    # -- measuring ----------------------------------------------------------------
    def predict(self, task: Task, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The task's outputs on ``rows`` (identical requests are answered from memory)."""
        from ..core.client import ModelClient

        self._share_retriever(task)
        client = ModelClient(self.backend, trace=False,
                             cache_get=lambda keys: {k: self._cache[k] for k in keys if k in self._cache})
        contexts = [{k: v for k, v in r.items() if k != self.label_column} for r in rows]
        outs: list[dict[str, Any]] = []
        try:
            for start in range(0, len(contexts), 64):
                chunk = contexts[start:start + 64]
                outs += task.run_many(client, chunk, step="optimize", record_keys=[str(i) for i in range(len(chunk))])
        finally:
            self._cache.update({k: payload for k, (_, payload) in client.drain()[1].items()})
        return outs

    def _share_retriever(self, task: Task) -> None:
        """Give ``task`` the embedded pool of an earlier candidate with the same pool, so each
        pool is embedded once per search, not once per candidate (4,000 rows: ~25 s each)."""
        if task.retrieval is None or task.has_retriever:
            return
        import json

        cfg = task.retrieval
        key = (task.template.source, cfg.embedder, json.dumps(cfg.pool, sort_keys=True, ensure_ascii=False, default=str))
        donor = self._retrievers.get(key)
        task.use_retriever(donor.reconfigured(cfg) if donor is not None else task.retriever)
        self._retrievers[key] = task.retriever

    def measure(self, task: Task, rows: Sequence[Mapping[str, Any]]) -> float:
        outs = self.predict(task, rows)
        gold = [r[self.label_column] for r in rows]
        pred = [o["label"] for o in outs]
        return score(gold, pred, self.labels, self.metric)

    def _try(self, stage: str, candidates: list[tuple[str, Task]], best: tuple[float, Task]) -> tuple[float, Task]:
        """Successive halving: all candidates on a slice, the best two on all select rows."""
        if not candidates:
            return best
        small = self.select[: self.first_slice]
        scored = []
        for desc, task in candidates:
            try:
                s = self.measure(task, small) if len(small) < len(self.select) else self.measure(task, self.select)
            except BudgetExhausted:
                self.notes.append(f"budget spent during stage {stage!r}")
                break
            except OpenAutoGLMError as exc:  # e.g. a prompt longer than the model's context
                self.notes.append(f"{stage}: {desc} skipped: {str(exc).splitlines()[0]}")
                continue
            self.trials.append(Trial(stage, desc, task, s, len(small)))
            self.log(f"  {stage:13s} {s:.3f}  {desc}")
            scored.append((s, desc, task))
        if len(small) < len(self.select):
            finalists = sorted(scored, key=lambda x: -x[0])[:2]
            rescored = []
            for _, desc, task in finalists:
                try:
                    s = self.measure(task, self.select)
                except BudgetExhausted:
                    self.notes.append(f"budget spent during stage {stage!r}")
                    break
                self.trials.append(Trial(stage, desc + " [all select rows]", task, s, len(self.select)))
                rescored.append((s, task))
            scored_full = rescored
        else:
            scored_full = [(s, t) for s, _, t in scored]
        # a change must win by at least two selection rows: smaller gains are mostly noise;
        # the finalist that is cheaper at run time (a head alone: no model call) goes first,
        # so a costlier one must beat it by that margin too
        margin = 2 / len(self.select) - 1e-9
        for s, task in sorted(scored_full, key=lambda x: _runtime_cost(x[1])):
            if s >= best[0] + margin and s > best[0]:
                best = (s, task)
        return best

    # -- candidate generators -----------------------------------------------------------
    def _prompt_candidates(self, task: Task) -> list[tuple[str, Task]]:
        out: list[tuple[str, Task]] = []
        other = "chat" if task.format == "text" else "text"
        out.append((f"format={other}", _variant(task, format=other)))
        if task.format == "text":
            for prefix in STOCK_PREFIXES:
                if prefix != task.answer_prefix:
                    out.append((f"cue={prefix!r}", _variant(task, answer_prefix=prefix)))
        stock = f"Classify the text as one of: {', '.join(self.labels)}."
        out.append(("stock instruction", _variant(task, system=stock)))
        for text in self._proposed_instructions():
            out.append((f"model-proposed instruction {text[:40]!r}", _variant(task, system=text)))
        return out

    def _proposed_instructions(self) -> list[str]:
        if self.rewrites <= 0:
            return []
        example = self.task.render_input(self.train[0]) if self.train else ""
        prompt = (f"Write a one-sentence instruction that tells an assistant how to label texts like this one "
                  f"with one of: {', '.join(self.labels)}.\nText: {example[:300]}")
        try:
            (comp,) = self.backend.generate([GenerationRequest([{"role": "user", "content": prompt}],
                                                               max_tokens=48, temperature=0.8, n=self.rewrites,
                                                               seed=self.rng.randrange(1 << 30))])
        except BudgetExhausted:
            return []
        texts = []
        for t in comp.texts:
            line = t.strip().splitlines()[0].strip() if t.strip() else ""
            if 10 <= len(line) <= 300 and line not in texts and not _mostly_copied(line, example):
                texts.append(line)
        return texts

    def _verbalizer_candidates(self, task: Task) -> list[tuple[str, Task]]:
        current = {lab: (task.verbalizers or {}).get(lab, lab) for lab in self.labels}
        pools: dict[str, list[str]] = {}
        for lab in self.labels:
            words = [current[lab], lab, lab.lower(), lab.replace("_", " ").replace("/", " or "),
                     re.split(r"[\s_/]+", lab)[0]]
            pools[lab] = list(dict.fromkeys(w.strip() for w in words if w.strip()))
        if len(self.labels) <= 8:
            for lab, words in self._proposed_synonyms().items():
                pools[lab] += [w for w in words if w not in pools[lab]]
        chosen = self._pick_verbalizers(task, pools)
        out = []
        if chosen is not None and chosen != current:
            out.append(("verbalizers " + "/".join(chosen[lab] for lab in self.labels), _variant(task, verbalizers=chosen)))
        plain = {lab: lab.replace("_", " ").lower() for lab in self.labels}
        if plain != current and plain != chosen:
            out.append(("verbalizers " + "/".join(plain.values()), _variant(task, verbalizers=plain)))
        return out

    def _proposed_synonyms(self) -> dict[str, list[str]]:
        reqs = [GenerationRequest(f'A single word that means "{lab}":', max_tokens=6, temperature=0.8, n=3,
                                  seed=self.rng.randrange(1 << 30)) for lab in self.labels]
        try:
            comps = self.backend.generate(reqs)
        except BudgetExhausted:
            return {}
        out = {}
        for lab, comp in zip(self.labels, comps):
            words = []
            for t in comp.texts:
                m = re.match(r"\s*\"?([A-Za-z][A-Za-z\-]{1,20})", t)
                if m and m.group(1).lower() not in words:
                    words.append(m.group(1).lower())
            out[lab] = words
        return out

    def _pick_verbalizers(self, task: Task, pools: dict[str, list[str]]) -> dict[str, str] | None:
        """Per label, the candidate word that best separates its train examples from the others."""
        words = list(dict.fromkeys(w for ws in pools.values() for w in ws))
        if len(words) > 64:
            return None
        sample = self._balanced(self.train, per_label=max(2, 48 // len(self.labels)))
        if len(sample) < 2 * len(self.labels):
            return None
        conts = tuple((" " + w) if task.format == "text" else w for w in words)
        prompts = [task.build_prompt({k: v for k, v in r.items() if k != self.label_column}) for r in sample]
        try:
            results = self.backend.score_batch([ScoreRequest(p, conts) for p in prompts])
        except BudgetExhausted:
            return None
        by_word: dict[str, dict[str, list[float]]] = {w: {lab: [] for lab in self.labels} for w in words}
        for r, res in zip(sample, results):
            dist, _ = distribution_from_logprobs(res.logprobs, res.lengths)
            for w, p in zip(words, dist):
                by_word[w][r[self.label_column]].append(math.log(max(p, 1e-12)))
        chosen: dict[str, str] = {}
        for lab in self.labels:
            def separation(w: str) -> float:
                own = _mean(by_word[w][lab])
                others = [x for other in self.labels if other != lab for x in by_word[w][other]]
                return own - _mean(others)
            ranked = sorted(pools[lab], key=separation, reverse=True)
            pick = next((w for w in ranked if w not in chosen.values()), None)
            if pick is None:
                return None
            chosen[lab] = pick
        return chosen

    def _balanced(self, rows: Sequence[Mapping[str, Any]], per_label: int) -> list[dict[str, Any]]:
        by_label: dict[str, list[dict[str, Any]]] = {lab: [] for lab in self.labels}
        for r in rows:
            by_label[r[self.label_column]].append(dict(r))
        out = []
        for lab in self.labels:
            group = list(by_label[lab])
            self.rng.shuffle(group)
            out += group[:per_label]
        self.rng.shuffle(out)
        return out

    def _demo_candidates(self, task: Task) -> list[tuple[str, Task]]:
        out: list[tuple[str, Task]] = []
        n_labels = len(self.labels)
        if n_labels <= self.max_demos and self.train:
            for per_label in sorted({1, max(1, self.max_demos // n_labels)}):
                boot = self._bootstrap(task, per_label)
                if boot:
                    out.append((f"bootstrapped demos ({len(boot)})", _variant(task, examples=boot)))
            rand = [self._demo(r) for r in self._balanced(self.train, 1)]
            out.append((f"random balanced demos ({len(rand)})", _variant(task, examples=rand)))
        if self.use_retrieval and len(self.train) >= 20:
            base = self._retrieval_settings(task)
            for k in (4, 8) if self.max_demos >= 8 else (min(4, self.max_demos),):
                out.append((f"retrieved demos (k={k})", _variant(task, examples=[], retrieval={**base, "k": k})))
        return out

    def _retrieval_settings(self, task: Task) -> dict[str, Any]:
        """The task's retrieval block (kept: e.g. candidate pruning), or a fresh one over train."""
        if task.retrieval is not None:
            return task.retrieval.model_dump()
        return {"pool": [self._demo(r) for r in self.train], "k": 0, "embedder": self.embedder}

    def _bootstrap(self, task: Task, per_label: int) -> list[dict[str, Any]]:
        """Train rows the current task already gets right, most confident first, label-balanced."""
        sample = self._balanced(self.train, per_label=max(4, per_label * 4))
        try:
            outs = self.predict(task, sample)
        except BudgetExhausted:
            return []
        right: dict[str, list[tuple[float, dict[str, Any]]]] = {lab: [] for lab in self.labels}
        for r, o in zip(sample, outs):
            if o["label"] == r[self.label_column]:
                right[o["label"]].append((o["confidence"], r))
        demos = []
        for lab in self.labels:
            ranked = sorted(right[lab], key=lambda x: -x[0])[:per_label]
            if len(ranked) < per_label:  # the model gets too few right: fall back to gold rows
                extra = [r for r in sample if r[self.label_column] == lab and all(r is not x for _, x in ranked)]
                ranked += [(0.0, r) for r in extra[: per_label - len(ranked)]]
            demos += [self._demo(r) for _, r in ranked]
        self.rng.shuffle(demos)
        return demos

    def _knn_candidates(self, task: Task) -> list[tuple[str, Task]]:
        if not self.use_retrieval or len(self.train) < 20:
            return []
        base = self._retrieval_settings(task)
        out = []
        candidates = 10 if len(self.labels) > 10 else None
        for w in (0.25, 0.5, 0.75):
            cfg = {**base, "knn_weight": w, "candidates": candidates}
            out.append((f"kNN prior w={w:g}" + (f", {candidates} candidates" if candidates else "")
                        + (f", k={base['k']} demos" if base["k"] else ""),
                        _variant(task, retrieval=cfg, examples=[] if base["k"] else task.examples)))
        return out

    def _head_candidates(self, task: Task) -> list[tuple[str, Task]]:
        """Heads fitted on train: the best model-feature and TF-IDF settings on select, alone and mixed.

        TF-IDF heads cost no model calls and fit on every train row; model features (mean
        and last-token pooling from one pass) on as many train rows as the budget allows.
        """
        from ..core.head import DEFAULT_C

        if len(self.train) < 4 * len(self.labels) or task.head is not None:
            return []
        settings = self._tfidf_settings(task)
        best_tfidf = max(settings, key=lambda setting: setting[0])
        train = self.train
        if self.backend.limit is not None:  # featurise what the budget allows
            train = train[: max(0, self.backend.limit - self.backend.calls - len(self.select))]
        if self.backend.can_featurize and self.backend.num_layers and len(train) >= 4 * len(self.labels):
            settings += self._model_settings(task, train)
        out: list[tuple[str, Task]] = []
        winners = [max(settings, key=lambda setting: setting[0])]
        if winners[0] is not best_tfidf:
            winners.append(best_tfidf)
        for s, cfg, rows, *_ in winners:
            cfg = {**cfg, "C": cfg.get("C", DEFAULT_C[cfg["features"]])}
            where = describe_features(cfg["features"], cfg.get("layers"), cfg.get("pooling", "mean"))
            pool = [self._demo(r) for r in rows]
            variants = []
            for weight in (1.0, 0.75, 0.5):
                # the head alone uses no prompt: leave out demonstrations and retrieval it would not use
                unused = {"examples": [], "retrieval": None, "calibrate": False, "label_bias": None} if weight == 1 else {}
                variants.append((f"head {where} C={cfg['C']:g} w={weight:g} on {len(rows)} rows (head alone on "
                                 f"validation: {s:.3f})", _variant(task, head={**cfg, "pool": pool, "weight": weight},
                                                                   **unused)))
            self._share_head([t for _, t in variants])
            out += variants
        return out

    def _share_head(self, tasks: Sequence[Task]) -> None:
        """Fit the head once for candidates whose heads differ only in their weight (the
        weight mixes the fitted distribution, it is not part of the fit)."""
        try:
            fitted = tasks[0].label_head(self.backend)
        except OpenAutoGLMError:  # e.g. a pool too small: each candidate reports it when measured
            return
        for task in tasks[1:]:
            task.adopt_head(self.backend, fitted)

    def _fit_settings(self, rows: list[dict[str, Any]], x: Any, grid: Sequence[float], base: dict[str, Any],
                      start: Any = None) -> list[Setting]:
        """Heads fitted on the first ``VALIDATION_SHARE``-less part of ``rows`` (features ``x``:
        rows then select rows), scored on the rest of them plus the select rows: settings
        are compared on several times more rows than the select rows alone; ``start``: a
        fitted head to warm-start from."""
        from ..core.head import LinearHead

        n_fit = len(rows) - int(len(rows) * VALIDATION_SHARE)
        fit_x, val_x = x[:n_fit], x[n_fit:]
        fit_gold = [r[self.label_column] for r in rows[:n_fit]]
        val_gold = [r[self.label_column] for r in rows[n_fit:] + self.select]
        out = []
        for c in grid:
            start = LinearHead(fit_x, fit_gold, self.labels, c) if start is None else start.refit(fit_x, fit_gold, c)
            probs = start.proba(val_x)
            pred = [self.labels[max(range(len(p)), key=p.__getitem__)] for p in probs]
            out.append((score(val_gold, pred, self.labels, self.metric), {**base, "C": c}, rows, start, x))
        return out

    def _tfidf_settings(self, task: Task) -> list[Setting]:
        """TF-IDF heads on every train row at four strengths (no model calls)."""
        import scipy.sparse as sp

        from ..core.head import TfidfFeatures

        t0 = time.perf_counter()
        texts = [task.head_input(r, "tfidf") for r in self.train]
        vectorize = TfidfFeatures(texts[: len(texts) - int(len(texts) * VALIDATION_SHARE)])
        x = sp.vstack([vectorize(texts), vectorize([task.head_input(r, "tfidf") for r in self.select])]).tocsr()
        out = self._fit_settings(self.train, x, (1.0, 3.0, 10.0, 30.0), {"features": "tfidf"})
        self.log(f"  head: {len(out)} TF-IDF heads on {len(self.train)} rows, {time.perf_counter() - t0:.1f} s, "
                 f"best on validation {max(s for s, *_ in out):.3f}")
        return out

    def _model_settings(self, task: Task, train: list[dict[str, Any]]) -> list[Setting]:
        """Linear probes of the model's hidden states, searched coordinate-wise: every pooling
        and pair of adjacent blocks at the middle ``C``, then the other ``C`` values for the
        best of them, warm-started from its weights."""
        from ..core.head import DEFAULT_C

        try:
            found = self._scan_blocks(task, train)
        except BudgetExhausted:
            self.notes.append("budget spent while featurising for the head stage")
            return []
        t0 = time.perf_counter()
        _, cfg, rows, head, x = max(found, key=lambda setting: setting[0])
        base = {k: v for k, v in cfg.items() if k != "C"}
        for c in (DEFAULT_C["model"] / 3, DEFAULT_C["model"] * 3):
            found += self._fit_settings(rows, x, (c,), base, start=head)
        self.log(f"  head: C for {describe_features('model', cfg['layers'], cfg['pooling'])} "
                 f"{time.perf_counter() - t0:.1f} s, best on validation {max(s for s, *_ in found):.3f}")
        return found

    def _scan_blocks(self, task: Task, rows: list[dict[str, Any]]) -> list[Setting]:
        """Every pooling x pair of adjacent blocks at 40-80 % depth, at the middle ``C``, on ``rows``
        (one feature pass of ``rows`` and the select rows gives all of them)."""
        from ..core.head import DEFAULT_C, default_layers, model_features

        blocks = default_layers(self.backend.num_layers, (0.4, 0.5, 0.6, 0.7, 0.8))
        texts = [task.head_input(r, "model") for r in rows + self.select]
        out: list[Setting] = []
        for pooling in [p for p in ("mean", "last") if p in self.backend.feature_poolings]:
            t0 = time.perf_counter()
            feats = model_features(self.backend, texts, blocks, pooling).reshape(len(texts), len(blocks), -1)
            t1 = time.perf_counter()
            for j in range(len(blocks) - 1):  # two adjacent blocks side by side
                out += self._fit_settings(
                    rows, feats[:, [j, j + 1]].reshape(len(texts), -1), (DEFAULT_C["model"],),
                    {"features": "model", "layers": [blocks[j], blocks[j + 1]], "pooling": pooling})
            self.log(f"  head: {pooling} features of {len(texts)} rows {t1 - t0:.1f} s, "
                     f"{len(blocks) - 1} block pairs fitted {time.perf_counter() - t1:.1f} s")
        return out

    def _calibration_candidates(self, task: Task) -> list[tuple[str, Task]]:
        out = [("contextual calibration", _variant(task, calibrate=True))]
        sample = self._balanced(self.train, per_label=max(4, 96 // len(self.labels)))
        if len(sample) >= 2 * len(self.labels):
            try:
                outs = self.predict(task, sample)
            except BudgetExhausted:
                return out
            prior = Counter(r[self.label_column] for r in self.train)
            bias = fit_label_bias([[o["scores"][lab] for lab in self.labels] for o in outs],
                                  [prior[lab] / len(self.train) for lab in self.labels])
            merged = {lab: b + (task.label_bias or {}).get(lab, 0.0) for lab, b in zip(self.labels, bias)}
            out.append(("label bias fitted on train predictions", _variant(task, label_bias=merged)))
        return out

    # -- the search -------------------------------------------------------------------------
    def optimize(self) -> OptimizeResult:
        base = self.task
        seconds: dict[str, float] = {}
        started = time.perf_counter()
        self.log(f"selection on {len(self.select)} dev rows, {len(self.holdout)} held out; budget {self.budget} calls")
        try:
            base_score = self.measure(base, self.select)
        except BudgetExhausted:
            raise ConfigError(f"a budget of {self.budget} calls does not cover one pass over the "
                              f"{len(self.select)} selection rows", field="budget",
                              hint=f"use --budget of at least ~{10 * len(self.select)}") from None
        self.trials.append(Trial("base", "the task as given", base, base_score, len(self.select)))
        self.log(f"  {'base':13s} {base_score:.3f}  the task as given")
        best = (base_score, base)
        if len(self.labels) > 10 and self.use_retrieval and len(self.train) >= 20 and base.retrieval is None:
            # many labels: scoring all of them for every candidate is what costs; let the
            # neighbours' top 10 labels be the candidates first, and search from there
            pruned = _variant(base, retrieval={**self._retrieval_settings(base), "candidates": 10})
            try:
                pruned_score = self.measure(pruned, self.select)
            except BudgetExhausted:
                pruned_score = -1.0
            self.trials.append(Trial("candidates", "kNN candidate pruning (top 10 labels)", pruned, pruned_score,
                                     len(self.select)))
            self.log(f"  {'candidates':13s} {pruned_score:.3f}  kNN candidate pruning (top 10 labels)")
            if pruned_score >= base_score:  # no worse and ~8x cheaper per candidate: search from here
                best = (pruned_score, pruned)
        seconds["base"] = time.perf_counter() - started
        # the head stage featurises train and select rows once: keep up to 60 % of the budget for it
        head_calls = len(self.train) + len(self.select) if self.backend.can_featurize else 0
        reserve = min(head_calls, int(self.budget * self.head_share))
        self.backend.limit = self.budget - reserve
        for stage, make in (("prompt", self._prompt_candidates), ("verbalizers", self._verbalizer_candidates),
                            ("demos", self._demo_candidates), ("knn", self._knn_candidates),
                            ("head", self._head_candidates), ("calibration", self._calibration_candidates)):
            if stage == "head":
                self.backend.limit = self.budget
            if self.backend.calls >= self.backend.limit:
                continue
            t0 = time.perf_counter()
            try:
                candidates = make(best[1])
            except BudgetExhausted:
                self.notes.append(f"budget spent while preparing stage {stage!r}")
            else:
                best = self._try(stage, candidates, best)
            seconds[stage] = time.perf_counter() - t0
            self.log(f"  {stage} stage: {seconds[stage]:.1f} s, {self.backend.calls} calls so far")
        scores = {"base_select": base_score, "best_select": best[0]}
        if self.holdout:
            self.backend.limit = None  # the final measurement is not part of the search budget
            scores["base_holdout"] = self.measure(base, self.holdout)
            scores["best_holdout"] = self.measure(best[1], self.holdout) if best[1] is not base else scores["base_holdout"]
        return OptimizeResult(task=best[1], base_task=base, trials=self.trials, metric=self.metric, scores=scores,
                              calls=self.backend.calls, budget=self.budget, notes=self.notes, seconds=seconds)


def _mostly_copied(line: str, source: str, share: float = 0.6) -> bool:
    """Whether most of ``line``'s words come from ``source``: a small model asked for an
    instruction often repeats the example text instead, which only costs a candidate's
    evaluation."""
    words = re.findall(r"\w+", line.lower())
    seen = set(re.findall(r"\w+", source.lower()))
    return bool(words) and sum(w in seen for w in words) / len(words) > share


def _runtime_cost(task: Task) -> int:
    """0 for a task answered by its head alone (no model call at run time), else 1."""
    return 0 if task.head is not None and task.head.weight >= 1 else 1


def fit_label_bias(probs: Sequence[Sequence[float]], prior: Sequence[float], iterations: int = 50) -> list[float]:
    """Log-space biases that make the mean predicted distribution match ``prior``."""
    n_labels = len(prior)
    bias = [0.0] * n_labels
    logs = [[math.log(max(p, 1e-12)) for p in row] for row in probs]
    for _ in range(iterations):
        mean = [0.0] * n_labels
        for row in logs:
            shifted = [v + b for v, b in zip(row, bias)]
            top = max(shifted)
            exps = [math.exp(v - top) for v in shifted]
            total = sum(exps)
            for j, e in enumerate(exps):
                mean[j] += e / total / len(logs)
        bias = [b + 0.5 * (math.log(max(q, 1e-12)) - math.log(max(m, 1e-12))) for b, q, m in zip(bias, prior, mean)]
    top = max(bias)
    return [b - top for b in bias]


def score(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str], metric: str) -> float:
    if not gold:
        return 0.0
    if metric == "accuracy":
        return sum(g == p for g, p in zip(gold, pred)) / len(gold)
    f1s = []
    for lab in labels:
        tp = sum(g == lab and p == lab for g, p in zip(gold, pred))
        fp = sum(g != lab and p == lab for g, p in zip(gold, pred))
        fn = sum(g == lab and p != lab for g, p in zip(gold, pred))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s) if f1s else 0.0


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
