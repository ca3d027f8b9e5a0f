"""Candidate tasks of the optimizer's prompt, verbalizer, demonstration, kNN and calibration stages.

:class:`CandidateStages` is mixed into :class:`~openautoglm.optimize.search.Optimizer`:
its methods use the optimizer's rows, labels, rng, counting backend, ``predict`` and ``_demo``.
Each ``_<stage>_candidates(task)`` returns ``(description, task)`` pairs for the search to measure.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Mapping, Sequence

from ..backends.base import GenerationRequest, ScoreRequest
from ..core.labels import distribution_from_logprobs
from ..core.task import Task
from .budget import BudgetExhausted
from .scoring import _mean, fit_label_bias

STOCK_PREFIXES = ("Answer:", "Label:", "Category:")


def _variant(task: Task, **changes: Any) -> Task:
    data = task.model_dump(by_alias=True, exclude={"schema_"})
    data.update(changes)
    return Task.model_validate(data)


def _mostly_copied(line: str, source: str, share: float = 0.6) -> bool:
    """Whether most of ``line``'s words come from ``source``: a small model asked for an
    instruction often repeats the example text instead, which only costs a candidate's
    evaluation."""
    words = re.findall(r"\w+", line.lower())
    seen = set(re.findall(r"\w+", source.lower()))
    return bool(words) and sum(w in seen for w in words) / len(words) > share


class CandidateStages:
    """The prompt, verbalizers, demos, kNN and calibration stages' candidate generators."""

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
