"""Spider-style evaluation: execution accuracy our way, structural match, hardness.

Execution accuracy (EX): gold and predicted queries run on the same read-only database
with a hard timeout; results match when they are equal bags of rows (lists when the
gold query has ORDER BY), with column order and aliases ignored.  A prediction that
fails to parse, is refused, errors or times out counts as wrong.  The shared dev
databases were converted from MySQL (wta_1 empty, car_1 and flight_2 trimmed), so the
figure is "EX on converted dev DBs", not the official test-suite metric.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import InputDataError
from .compare import hardness, has_order_by, same_result, structure_match
from .database import Database, DatabaseError, QueryResult

DEFAULT_EXCLUDE = ("wta_1", "car_1", "flight_2")
HARDNESS = ("easy", "medium", "hard", "extra")


@dataclass
class SpiderItem:
    index: int
    question: str
    gold: str
    db_id: str
    hardness: str


@dataclass
class ItemResult:
    index: int
    db_id: str
    hardness: str
    question: str
    gold: str
    pred: str
    ex: bool
    structure: bool
    confidence: float
    error: str | None
    seconds: float


@dataclass
class SpiderReport:
    mode: str
    model: str
    results: list[ItemResult] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        by: dict[str, list[ItemResult]] = defaultdict(list)
        for r in self.results:
            by[r.hardness].append(r)
        rows = {}
        for level in (*HARDNESS, "all"):
            items = self.results if level == "all" else by.get(level, [])
            if items:
                rows[level] = {"n": len(items), "ex": sum(r.ex for r in items) / len(items),
                               "structure": sum(r.structure for r in items) / len(items),
                               "errors": sum(r.error is not None for r in items)}
        seconds = [r.seconds for r in self.results]
        return {"mode": self.mode, "model": self.model, "by_hardness": rows,
                "seconds_per_question": sum(seconds) / len(seconds) if seconds else 0.0}

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "results": [asdict(r) for r in self.results]}


def load_spider(spider_dir: str | Path, *, limit: int | None = None,
                exclude: Sequence[str] = DEFAULT_EXCLUDE) -> list[SpiderItem]:
    """Dev questions (with databases present), evenly spread when ``limit`` is given."""
    root = Path(spider_dir)
    dev = root / "dev.json"
    if not dev.is_file():
        raise InputDataError(f"no dev.json in {root}", hint="point --spider at the folder with dev.json and database/")
    data = json.loads(dev.read_text(encoding="utf-8"))
    items = [SpiderItem(i, d["question"], d["query"], d["db_id"], hardness(d["query"]))
             for i, d in enumerate(data) if d["db_id"] not in set(exclude)
             and (root / "database" / d["db_id"] / f"{d['db_id']}.sqlite").is_file()]
    if limit is not None and 0 < limit < len(items):
        step = len(items) / limit
        items = [items[int(i * step)] for i in range(limit)]
    return items


class SpiderEvaluator:
    """Evaluate a parser factory ``make_parser(db_url, db_id) -> SemanticParser``."""

    def __init__(self, spider_dir: str | Path, make_parser: Callable[[str, str], Any], *, mode: str = "full",
                 model: str = "local", timeout_s: float = 10.0, store: Any = None) -> None:
        self.root = Path(spider_dir)
        self.make_parser = make_parser
        self.mode = mode
        self.model = model
        self.timeout_s = timeout_s
        self.store = store
        self._parsers: dict[str, Any] = {}
        self._gold: dict[int, QueryResult | str] = {}

    def db_url(self, db_id: str) -> str:
        return f"sqlite:///{self.root / 'database' / db_id / f'{db_id}.sqlite'}"

    def _parser(self, db_id: str) -> Any:
        if db_id not in self._parsers:
            self._parsers[db_id] = self.make_parser(self.db_url(db_id), db_id)
        return self._parsers[db_id]

    def run(self, items: Sequence[SpiderItem], *, run_id: str | None = None,
            progress: Callable[[int, int, SpiderReport], None] | None = None) -> SpiderReport:
        report = SpiderReport(self.mode, self.model)
        done: dict[int, dict[str, Any]] = {}
        if self.store is not None and run_id:
            self.store.start_run(run_id, name=f"sql-eval-{self.mode}", config_hash=_hash(self.mode, self.model),
                                 input=str(self.root), output=None, total=len(items))
            done = {int(r["idx"]): r["output"] for r in self.store.iter_records(run_id, status="done")}
        for n, item in enumerate(items):
            if item.index in done and done[item.index]:
                report.results.append(ItemResult(**done[item.index]))
            else:
                result = self.evaluate_one(item)
                report.results.append(result)
                if self.store is not None and run_id:
                    self.store.commit_chunk(run_id, [(item.index, f"spider-dev-{item.index}", "done",
                                                      asdict(result), result.error)], [], {})
            if progress:
                progress(n + 1, len(items), report)
        if self.store is not None and run_id:
            self.store.finish_run(run_id, "done")
        for parser in self._parsers.values():
            parser.db.close()
        return report

    def evaluate_one(self, item: SpiderItem) -> ItemResult:
        parser = self._parser(item.db_id)
        started = time.perf_counter()
        try:
            parsed = parser.parse(item.question)
            pred, confidence, error = parsed.sql, parsed.confidence, parsed.error
        except Exception as exc:  # noqa: BLE001 - one bad question must not stop the evaluation
            pred, confidence, error = "", 0.0, f"{type(exc).__name__}: {str(exc)[:200]}"
        seconds = time.perf_counter() - started
        gold = self._gold_result(item, parser.db)
        ex = False
        if error is None and isinstance(gold, QueryResult):
            try:
                predicted = parser.db.execute(pred, timeout_s=self.timeout_s, max_rows=100_000)
                ex = same_result(gold, predicted, ordered=has_order_by(item.gold))
            except DatabaseError as exc:
                error = exc.message
        return ItemResult(item.index, item.db_id, item.hardness, item.question, item.gold, pred, ex,
                          structure_match(item.gold, pred) if pred else False, round(confidence, 4), error,
                          round(seconds, 3))

    def _gold_result(self, item: SpiderItem, db: Database) -> QueryResult | str:
        if item.index not in self._gold:
            try:
                self._gold[item.index] = db.execute(item.gold, timeout_s=self.timeout_s, max_rows=100_000)
            except DatabaseError as exc:
                self._gold[item.index] = exc.message
        return self._gold[item.index]


def _hash(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def render_report(reports: Sequence[SpiderReport]) -> str:
    """A self-contained HTML page: EX by hardness per mode (plot + table) and per-question results."""
    from ..core.html_report import Image, render

    return render("sql_evaluation.html", title="Text-to-SQL evaluation",
                  plot=Image("EX by hardness", _hardness_png(reports)), runs=[_run_view(rep) for rep in reports])


def _hardness_png(reports: Sequence[SpiderReport]) -> str:
    """Bars of execution accuracy per hardness level, one colour per mode, as base64 PNG."""
    from ..core.html_report import figure, png_base64

    fig = figure(6.5, 3.2)
    ax = fig.add_subplot(111)
    width = 0.8 / max(1, len(reports))
    for k, rep in enumerate(reports):
        rows = rep.summary()["by_hardness"]
        levels = [lv for lv in (*HARDNESS, "all") if lv in rows]
        ax.bar([i + k * width for i in range(len(levels))], [rows[lv]["ex"] for lv in levels], width, label=rep.mode)
        ax.set_xticks([i + width * (len(reports) - 1) / 2 for i in range(len(levels))], levels)
    ax.set_ylabel("execution accuracy")
    ax.set_ylim(0, 1)
    ax.legend()
    return png_base64(fig)


def _run_view(rep: SpiderReport) -> dict[str, Any]:
    """One mode's section of the report: heading values, the table by hardness, the questions."""
    from ..core.html_report import table

    s = rep.summary()
    by_hardness = table(["hardness", "n", "EX", "structure match", "errors"],
                        [[level, row["n"], f"{row['ex']:.3f}", f"{row['structure']:.3f}", row["errors"]]
                         for level, row in s["by_hardness"].items()], cls="num")
    return {"mode": rep.mode, "model": rep.model, "seconds": f"{s['seconds_per_question']:.2f}",
            "summary": by_hardness, "results": rep.results}


def make_parser_factory(mode: str, model: Any, examples: Any, **options: Any) -> Callable[[str, str], Any]:
    """``naive``: schema + question, one greedy candidate, no retrieval/linking/correction.
    ``full``: retrieval + schema/value linking + execution-guided correction + voting."""
    from ..backends.registry import create_backend
    from .parser import SemanticParser, _as_pool

    backend = create_backend(model)  # one model and one example index for every database
    pool = _as_pool(examples) if mode == "full" else None
    if mode not in ("naive", "full"):
        raise ValueError(f"mode must be 'naive' or 'full', got {mode!r}")

    def make(url: str, db_id: str) -> Any:
        if mode == "naive":
            naive = {**options, "n_candidates": 1, "max_attempts": 1, "link_values": False, "max_columns": 10**6,
                     "bind_tables": False}
            # the naive baseline is one greedy answer: no retrieval, linking (table sets), correction or voting
            return SemanticParser(backend, url, examples=None, **naive)
        return SemanticParser(backend, url, examples=pool, exclude_example_db=db_id, **options)

    return make
