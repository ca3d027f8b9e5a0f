"""The prompt optimizer (:class:`openautoglm.optimize.search.Optimizer`) as a background job.

One job at a time runs on its own worker thread, on the served model (through the
micro-batcher).  While it runs, :meth:`OptimizerJobs.view` shows the stages (done, running,
pending, skipped), every candidate measured so far (stage, description, score, rows), the
model calls spent and the budget left, and the log.  *Stop* makes the next model call raise
:class:`OptimizeStopped` inside the worker: the search ends at once and the job keeps the best
candidate measured on all selection rows so far (no held-out measurement then).  A finished or
stopped job's pipeline can be saved into the pipelines folder, and :meth:`OptimizerJobs.compare`
starts two ordinary background runs (the base pipeline and the chosen one) over the dev file,
for the run comparison page.  Jobs are kept in the store table ``serve_optimize``.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Sequence

import yaml

from ..backends.delegate import DelegatingBackend
from ..errors import ConfigError, InputDataError, OpenAutoGLMError
from ..redact import mask_text
from .jobs import JobNotFound, map_columns

if TYPE_CHECKING:
    from .app import ServerState

SCHEMA = """
CREATE TABLE IF NOT EXISTS serve_optimize (
    opt_id TEXT PRIMARY KEY,
    name TEXT,
    status TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    chosen TEXT,
    result TEXT,
    settings TEXT NOT NULL,
    error TEXT,
    created REAL NOT NULL,
    finished REAL
);
"""
#: the optimizer's stages, in the order it runs them
STAGES = ("base", "prompt", "verbalizers", "demos", "knn", "head", "calibration")
_STAGE_DONE = re.compile(r"^\s*(\w+) stage: ([\d.]+) s")
ACTIVE = ("queued", "running", "stopping")
#: searches whose live state (log, candidates as they come) stays in memory
MAX_LIVE = 16


class OptimizeStopped(KeyboardInterrupt):
    """Raised by the next model call of a job that was asked to stop (not an ``Exception``,
    so no candidate loop inside the optimizer mistakes it for one candidate's failure)."""


class _Stoppable(DelegatingBackend):
    """The served backend, refusing further calls once ``stop`` is set."""

    def __init__(self, inner: Any, stop: threading.Event) -> None:
        super().__init__(inner)
        self.stop = stop

    def _check(self) -> None:
        if self.stop.is_set():
            raise OptimizeStopped

    def generate(self, requests: Sequence[Any]) -> list[Any]:
        self._check()
        return self.inner.generate(requests)

    def score_batch(self, requests: Sequence[Any]) -> list[Any]:
        self._check()
        return self.inner.score_batch(requests)

    def features(self, texts: Sequence[str], layers: Sequence[int], pooling: str = "mean") -> Any:
        self._check()
        return self.inner.features(texts, layers, pooling)

    def close(self) -> None:  # the server owns the backend
        pass


class _Live:
    """What a running job shows: its optimizer, stop flag, log and stage times."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.done = False
        self.optimizer: Any = None
        self.log: list[str] = []
        self.stage_seconds: dict[str, float] = {}

    def on_log(self, line: str) -> None:
        self.log.append(mask_text(str(line)))
        del self.log[:-200]
        found = _STAGE_DONE.match(str(line))
        if found and found.group(1) in STAGES:
            self.stage_seconds[found.group(1)] = float(found.group(2))


class OptimizerJobs:
    """Optimizer runs of one server (see the module docstring)."""

    def __init__(self, state: "ServerState") -> None:
        self.state = state
        self._live: dict[str, _Live] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openautoglm-optimize")
        with state.store.lock:
            state.store.store.add_schema(SCHEMA)
        state.store.execute("UPDATE serve_optimize SET status = 'interrupted' WHERE status IN "
                            "('queued', 'running', 'stopping')")

    # -- starting ---------------------------------------------------------------------------------
    def _rows(self, upload_id: str, columns: dict[str, str], label_column: str, pipe: Any) -> list[dict[str, Any]]:
        from ..core.records import check_gold

        records, meta = self.state.jobs.upload_records(upload_id)
        if label_column not in meta["columns"]:
            raise InputDataError(f"upload {meta['filename']!r} has no gold column {label_column!r}; "
                                 f"its columns are: {', '.join(meta['columns'])}",
                                 hint="choose the column that holds the labels")
        mapped = map_columns(records, {k: v for k, v in columns.items() if v}, pipe.required_inputs,
                             meta["filename"])
        check_gold(mapped, label_column, pipe.label_steps(), mapping={}, source=meta["filename"])
        step = pipe.config.steps[0].name
        return [{**pipe.step_context(step, r), label_column: r[label_column]} for r in mapped]

    def start(self, text: str, train_upload: str, dev_upload: str | None, *, name: str | None = None,
              label_column: str = "label", columns: dict[str, str] | None = None, budget: int = 300,
              metric: str = "accuracy", holdout: float = 0.3, retrieval: bool = False, max_demos: int = 4,
              seed: int = 0) -> dict[str, Any]:
        """Check the pipeline and data now (errors answer the request), then search in the background."""
        import random

        from ..optimize.search import Optimizer

        registry = self.state.registry
        config = registry.config(text, source=name or "pipeline.yaml")
        pipe = registry.build_config(config)
        if len(config.steps) != 1 or config.steps[0].task is None:
            raise ConfigError("the optimizer works on single-task pipelines", field="steps",
                              hint="optimize the label step as its own pipeline, then paste its task back")
        columns = dict(columns or {})
        train = self._rows(train_upload, columns, label_column, pipe)
        if dev_upload:
            dev = self._rows(dev_upload, columns, label_column, pipe)
        else:  # one file: half for demonstrations and calibration, half for choosing
            random.Random(seed).shuffle(train)
            train, dev = train[: len(train) // 2], train[len(train) // 2:]
        live = _Live()
        opt = Optimizer(_Stoppable(self.state.backend, live.stop), config.steps[0].task, train, dev,
                        label_column=label_column, budget=budget, metric=metric, holdout=holdout, seed=seed,
                        max_demos=max_demos, retrieval=retrieval, log=live.on_log)
        live.optimizer = opt
        opt_id = "opt-" + secrets.token_hex(6)
        settings = {"train_upload": train_upload, "dev_upload": dev_upload, "label_column": label_column,
                    "columns": columns, "budget": budget, "metric": metric, "holdout": holdout,
                    "retrieval": retrieval, "max_demos": max_demos, "seed": seed,
                    "rows": {"train": len(opt.train), "select": len(opt.select), "holdout": len(opt.holdout)}}
        self.state.store.execute(
            "INSERT INTO serve_optimize (opt_id, name, status, pipeline, settings, created) VALUES (?,?,?,?,?,?)",
            (opt_id, name or config.name, "queued", text, json.dumps(settings), time.time()))
        with self._lock:
            self._live[opt_id] = live
            finished = [k for k, v in self._live.items() if v.done]
            for old in finished[:-MAX_LIVE]:  # older finished searches show their stored result instead
                self._live.pop(old)
        self._executor.submit(self._run, opt_id, live, pipe)
        return self.view(opt_id)

    def _run(self, opt_id: str, live: _Live, pipe: Any) -> None:
        if live.stop.is_set():
            live.done = True
            self._finish(opt_id, "stopped", live, None)
            pipe.close()
            return
        self._set(opt_id, status="running")
        try:
            result = live.optimizer.optimize()
        except OptimizeStopped:
            self._finish(opt_id, "stopped", live, None)
        except Exception as exc:  # noqa: BLE001 - a failed search is reported, the server goes on
            self._set(opt_id, status="failed", error=mask_text(f"{type(exc).__name__}: {exc}")[:2000],
                      finished=time.time())
        else:
            self._finish(opt_id, "done", live, result)
        finally:
            live.done = True
            pipe.close()

    def _finish(self, opt_id: str, status: str, live: _Live, result: Any) -> None:
        try:
            self._store_choice(opt_id, status, live, result)
        except Exception as exc:  # noqa: BLE001 - the job must not stay "running"
            self._set(opt_id, status="failed", error=mask_text(f"{type(exc).__name__}: {exc}")[:2000],
                      finished=time.time())

    def _store_choice(self, opt_id: str, status: str, live: _Live, result: Any) -> None:
        """Store the chosen task: the optimizer's result, or (stopped) the best fully measured candidate."""
        opt = live.optimizer
        job = self._row(opt_id)
        if result is not None:
            task, summary = result.task, result.to_dict()
        else:
            full = max((t.rows for t in opt.trials), default=0)
            finalists = [t for t in opt.trials if t.rows == full]
            best = max(finalists, key=lambda t: (t.score, t.stage == "base"), default=None)
            task = best.task if best is not None else opt.task
            base = next((t for t in opt.trials if t.stage == "base"), None)
            scores = {"base_select": base.score} if base is not None else {}
            summary = {"metric": opt.metric, "calls": opt.backend.calls, "budget": opt.budget,
                       "scores": {**scores, "best_select": best.score} if best is not None else scores,
                       "chosen": best.description if best is not None else "the task as given",
                       "notes": [*opt.notes, "stopped: the best candidate measured on all selection rows so far; "
                                 "no held-out measurement"],
                       "trials": [{"stage": t.stage, "candidate": t.description, "score": t.score, "rows": t.rows}
                                  for t in opt.trials]}
        config = yaml.safe_load(job["pipeline"])  # the submitted YAML, its step's task replaced
        if "task" in config:
            step: dict[str, Any] = {"name": self.state.registry.config(job["pipeline"]).steps[0].name}
            config.pop("task")
        else:
            step = {k: v for k, v in config["steps"][0].items() if k != "task"}
        config["steps"] = [{**step, "task": task.to_config()}]
        config["description"] = f"optimized in the web UI ({summary.get('chosen', '')})"[:500]
        chosen = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        self._set(opt_id, status=status, chosen=chosen, result=json.dumps(summary, default=str),
                  finished=time.time())

    # -- reading and control ---------------------------------------------------------------------------
    def _set(self, opt_id: str, **fields: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in fields)
        self.state.store.execute(f"UPDATE serve_optimize SET {cols} WHERE opt_id = ?", (*fields.values(), opt_id))

    def _row(self, opt_id: str) -> dict[str, Any]:
        rows = self.state.store.execute("SELECT * FROM serve_optimize WHERE opt_id = ?", (opt_id,))
        if not rows:
            raise JobNotFound(f"no optimizer run {opt_id!r}", hint="GET /api/optimize lists them")
        return rows[0]

    def view(self, opt_id: str) -> dict[str, Any]:
        """Status, stages, candidates, calls and budget left (live while running), the chosen pipeline."""
        row = self._row(opt_id)
        settings = json.loads(row["settings"])
        with self._lock:
            live = self._live.get(opt_id)
        result = json.loads(row["result"]) if row["result"] else None
        out: dict[str, Any] = {"opt_id": opt_id, "name": row["name"], "status": row["status"],
                               "error": row["error"], "created": row["created"], "finished": row["finished"],
                               "settings": settings, "budget": settings["budget"], "result": result,
                               "chosen_yaml": row["chosen"], "base_yaml": row["pipeline"]}
        if live is not None and live.optimizer is not None:
            opt = live.optimizer
            trials = list(opt.trials)
            calls = opt.backend.calls
            out["candidates"] = [{"stage": t.stage, "candidate": mask_text(t.description),
                                  "score": round(t.score, 4), "rows": t.rows} for t in trials]
            out["log"] = live.log[-50:]
            seen = {t.stage for t in trials}
            out["stages"] = _stages(live.stage_seconds, seen, row["status"])
        else:
            out["candidates"] = [{"stage": t["stage"], "candidate": t["candidate"], "score": round(t["score"], 4),
                                  "rows": t["rows"]} for t in (result or {}).get("trials", [])]
            out["log"] = []
            out["stages"] = _stages({}, {c["stage"] for c in out["candidates"]}, row["status"])
            calls = (result or {}).get("calls", 0)
        out["calls"] = calls
        out["budget_left"] = max(0, settings["budget"] - calls)
        return out

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.state.store.execute("SELECT opt_id FROM serve_optimize ORDER BY created DESC LIMIT ?", (limit,))
        return [{k: v for k, v in self.view(r["opt_id"]).items() if k not in ("log", "candidates", "base_yaml",
                                                                               "chosen_yaml")} for r in rows]

    def stop(self, opt_id: str) -> dict[str, Any]:
        row = self._row(opt_id)
        with self._lock:
            live = self._live.get(opt_id)
        if live is not None and row["status"] in ACTIVE:
            live.stop.set()
            if row["status"] == "running":
                self._set(opt_id, status="stopping")
        return self.view(opt_id)

    def save(self, opt_id: str, name: str) -> dict[str, Any]:
        row = self._row(opt_id)
        if not row["chosen"]:
            raise OpenAutoGLMError(f"optimizer run {opt_id} has no chosen pipeline yet ({row['status']})",
                                   hint="wait until it is done, or stop it")
        path = self.state.registry.save(name, row["chosen"])
        return {"name": name, "saved": True, "path": str(path)}

    def compare(self, opt_id: str) -> dict[str, Any]:
        """Start the base and the chosen pipeline over the dev file (or the one file) as two runs."""
        row = self._row(opt_id)
        if not row["chosen"]:
            raise OpenAutoGLMError(f"optimizer run {opt_id} has no chosen pipeline yet ({row['status']})",
                                   hint="wait until it is done, or stop it")
        s = json.loads(row["settings"])
        upload = s["dev_upload"] or s["train_upload"]
        runs = [self.state.jobs.start(upload, text, name=f"{row['name']}-{which}", column_map=s["columns"],
                                      label_column=s["label_column"])["run_id"]
                for which, text in (("base", row["pipeline"]), ("optimized", row["chosen"]))]
        return {"runs": runs, "compare_url": "/compare?" + "&".join(f"runs={r}" for r in runs)}

    def close(self) -> None:
        with self._lock:
            for live in self._live.values():
                live.stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)


def _stages(seconds: dict[str, float], seen: set[str], status: str) -> list[dict[str, Any]]:
    """Each stage: done (with seconds), running, pending or skipped (the search ended without it)."""
    out, running_given = [], False
    for stage in STAGES:
        if stage in seconds or (stage == "base" and "base" in seen):
            state = "done"
        elif stage == "base" and status in ("queued",):
            state = "pending"
        elif status in ("running", "stopping") and not running_given:
            state, running_given = "running", True
        elif status in ("running", "stopping", "queued"):
            state = "pending"
        else:
            state = "done" if stage in seen else "skipped"
        out.append({"stage": stage, "state": state, "seconds": seconds.get(stage)})
    return out
