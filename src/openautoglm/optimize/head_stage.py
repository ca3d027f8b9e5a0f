"""The optimizer's head stage: linear classifiers fitted on the train rows (``Task.head``).

:class:`HeadStage` is mixed into :class:`~openautoglm.optimize.search.Optimizer`.  It
compares TF-IDF heads and linear probes of the model's hidden states (layers, pooling and
``C`` chosen on validation rows from one feature pass) and proposes the best, alone and mixed.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from ..core.head import describe_features
from ..core.task import Task
from ..errors import OpenAutoGLMError
from .budget import BudgetExhausted
from .candidates import _variant
from .scoring import score

#: at most this share of the budget is kept for the head stage's feature pass
HEAD_SHARE = 0.6
#: head settings are fitted without this share of the train rows and scored on it plus the select rows
VALIDATION_SHARE = 0.2

#: a head setting: (validation score, config, train rows, fitted head, features of the rows then the select rows)
Setting = tuple[float, dict[str, Any], list[dict[str, Any]], Any, Any]


class HeadStage:
    """The head stage's candidate generator and the head settings it searches."""

    def _head_candidates(self, task: Task) -> list[tuple[str, Task]]:
        """Heads fitted on train: the best model-feature and TF-IDF settings on select, alone and mixed.

        TF-IDF heads cost no model calls and fit on every train row; model features (mean
        and last-token pooling from one pass) on as many train rows as the budget allows.
        """
        from ..core.head import DEFAULT_C

        # a task's own head stays; a shipped (preset) head is a starting point the train rows may beat
        if len(self.train) < 4 * len(self.labels) or (task.head is not None and task.head.shipped is None):
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
