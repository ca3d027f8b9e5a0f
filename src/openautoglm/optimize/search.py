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
the budget counts calls that reached the model, all of them: the held-out measurement is
paid from it too (the baseline's right after its selection pass, the chosen task's from a
reserve kept back from the search), so a run never spends more than ``budget``.

This module holds the search (:class:`Optimizer`) and its result; the stages' candidates
are in :mod:`.candidates` and :mod:`.head_stage`, the call budget in :mod:`.budget`, the
metric in :mod:`.scoring` (their public names are importable from here too).
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..backends.base import Backend
from ..core.head import describe_features
from ..core.task import Task
from ..errors import ConfigError, OpenAutoGLMError
from .budget import BudgetExhausted, CountingBackend
from .candidates import STOCK_PREFIXES, CandidateStages, _variant
from .head_stage import HEAD_SHARE, VALIDATION_SHARE, HeadStage, Setting
from .scoring import fit_label_bias, score

__all__ = ["HEAD_SHARE", "STOCK_PREFIXES", "VALIDATION_SHARE", "BudgetExhausted", "CountingBackend",
           "OptimizeResult", "Optimizer", "Setting", "Trial", "describe", "fit_label_bias", "score"]


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
    holdout_calls: int = 0  # of ``calls``: the held-out measurements (base and chosen task)

    def summary(self) -> str:
        s = self.scores
        held = f" ({self.holdout_calls} of them on held-out rows)" if self.holdout_calls else ""
        lines = [f"{len(self.trials)} candidates tried, {self.calls}/{self.budget} model calls{held}",
                 f"select  ({self.metric}): base {s['base_select']:.3f} -> best {s['best_select']:.3f}"]
        if "best_holdout" in s:
            lines.append(f"holdout ({self.metric}): base {s['base_holdout']:.3f} -> best {s['best_holdout']:.3f}"
                         f"  (rows never used for any choice)")
        elif "base_holdout" in s:
            lines.append(f"holdout ({self.metric}): base {s['base_holdout']:.3f}; the chosen task was not measured "
                         "there (budget spent)")
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
                "holdout_calls": self.holdout_calls, "chosen": describe(self.task), "notes": self.notes, "seconds": self.seconds,
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
    if task.head and task.head.shipped:
        parts.append(f"head(shipped {task.head.shipped}, weight={task.head.weight:g})")
    elif task.head:
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


#: calls kept for a held-out measurement beyond its rows' (contextual calibration's content-free inputs)
HOLDOUT_MARGIN = 4


class Optimizer(CandidateStages, HeadStage):
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
                if not self._fits(task):
                    self.notes.append(f"{stage}: a better candidate was left out: the budget left could not "
                                      "measure it on the held-out rows")
                    continue
                best = (s, task)
        return best

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
        scores = {"base_select": base_score}
        self._row_cost = self.backend.calls / len(self.select)
        holdout_calls = self._measure_base_holdout(base, scores)
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
            if pruned_score >= base_score and self._fits(pruned):  # no worse, ~8x cheaper per candidate
                best = (pruned_score, pruned)
        seconds["base"] = time.perf_counter() - started
        # the head stage featurises train and select rows once: keep up to 60 % of the budget for it
        head_calls = len(self.train) + len(self.select) if self.backend.can_featurize else 0
        reserve = min(head_calls, int(self.budget * self.head_share))
        for stage, make in (("prompt", self._prompt_candidates), ("verbalizers", self._verbalizer_candidates),
                            ("demos", self._demo_candidates), ("knn", self._knn_candidates),
                            ("head", self._head_candidates), ("calibration", self._calibration_candidates)):
            if stage == "head":
                reserve = 0
            # what the held-out measurement of the best so far will cost is never spent on the search
            self.backend.limit = self.budget - reserve - self._holdout_cost(best[1])
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
        scores["best_select"] = best[0]
        if self.holdout:
            self.backend.limit = self.budget  # what the search left: at least the reserve for this
            before = self.backend.calls
            try:
                scores["best_holdout"] = (self.measure(best[1], self.holdout) if best[1] is not base
                                          else scores["base_holdout"])
            except BudgetExhausted:
                self.notes.append("the budget ran out before the chosen task was measured on the held-out rows")
            holdout_calls += self.backend.calls - before
        return OptimizeResult(task=best[1], base_task=base, trials=self.trials, metric=self.metric, scores=scores,
                              calls=self.backend.calls, budget=self.budget, notes=self.notes, seconds=seconds,
                              holdout_calls=holdout_calls)

    def _measure_base_holdout(self, base: Task, scores: dict[str, float]) -> int:
        """Measure the task as given on the held-out rows now (paid like the search's calls,
        before it); returns the calls it took."""
        if not self.holdout:
            return 0
        before = self.backend.calls
        try:
            scores["base_holdout"] = self.measure(base, self.holdout)
        except BudgetExhausted:
            raise ConfigError(f"a budget of {self.budget} calls does not cover the {len(self.select)} selection "
                              f"and {len(self.holdout)} held-out rows once", field="budget",
                              hint=f"use --budget of at least ~{10 * (len(self.select) + len(self.holdout))}") from None
        return self.backend.calls - before

    def _holdout_cost(self, task: Task) -> int:
        """The most calls measuring ``task`` on the held-out rows takes (0 for the task as given:
        measured there already): label scores at the task as given's calls per row unless a
        head answers alone, one feature pass per row for a head over the model's hidden states,
        and a few calls for contextual calibration's content-free inputs."""
        if not self.holdout or task is self.task:
            return 0
        head = task.head
        scoring = self._row_cost if head is None or head.weight < 1 else 0.0
        features = 1.0 if head is not None and head.features == "model" else 0.0
        return math.ceil((scoring + features) * len(self.holdout)) + HOLDOUT_MARGIN

    def _fits(self, task: Task) -> bool:
        """Whether the budget left can still measure ``task`` on the held-out rows."""
        return self.backend.calls + self._holdout_cost(task) <= self.budget


def _runtime_cost(task: Task) -> int:
    """0 for a task answered by its head alone (no model call at run time), else 1."""
    return 0 if task.head is not None and task.head.weight >= 1 else 1
