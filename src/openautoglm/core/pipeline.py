"""Pipelines: named steps over a record, run one record at a time or in resumable batches.

>>> Pipeline(model="local", task=task).run(text="A wonderful film")
{'label': 'positive', 'confidence': 0.93, 'scores': {...}, 'method': 'logprob'}

A step is a :class:`Task`, a Python callable (``"package.module:function"``, called with
the record's context dict) or a sub-pipeline.  Each step sees the input fields and the
outputs of earlier steps (``context[step_name]``); ``inputs:`` maps template variables to
other fields (``{text: review}`` or ``{text: summarize.text}``).  A top-level ``inputs:``
(``Pipeline(inputs=...)``, the CLI's ``--map text=sentence``) renames record fields for
every step before the first one runs.

Work is batch-first: a chunk of records goes through step 1, then step 2..., so a
backend sees whole batches (one padded forward pass locally, concurrent requests over
HTTP).  ``run_batch`` checkpoints each chunk in the store (see :mod:`.batch`).
"""

from __future__ import annotations

import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..backends.base import Backend
from ..backends.registry import resolve_model
from ..errors import ConfigError, OpenAutoGLMError, StopRun, TemplateError
from .client import ModelClient
from .config import PipelineConfig, StepConfig, load_pipeline_config, validate_pipeline_dict
from .policy import LoadPolicy
from .result import Result
from .task import Task


class BackendPool:
    """Backends shared by the steps of one pipeline (a model is loaded once)."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self._backends: dict[str, Backend] = {}
        self._options = dict(options or {})

    def get(self, spec: str | Mapping[str, Any] | Backend) -> Backend:
        if isinstance(spec, Backend):
            return spec
        key = repr(sorted(spec.items())) if isinstance(spec, Mapping) else spec
        if key not in self._backends:
            from ..backends.registry import create_backend

            self._backends[key] = create_backend(spec, **self._options)
        return self._backends[key]

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()


class RecordError(OpenAutoGLMError):
    """A step failed for one record (the others go on)."""


class Pipeline:
    def __init__(
        self,
        model: str | Mapping[str, Any] | Backend | None = None,
        task: Task | None = None,
        *,
        steps: Sequence[StepConfig | Mapping[str, Any]] | None = None,
        name: str | None = None,
        output: str | None = None,
        inputs: Mapping[str, str] | None = None,
        batch_size: int = 64,
        store: Any = True,
        cache: bool = True,
        trace: bool = True,
        source: str | None = None,
        policy: LoadPolicy | None = None,
        base_dir: str | Path | None = None,
        _pool: BackendPool | None = None,
        _chain: tuple[Path, ...] = (),
    ) -> None:
        if (task is None) == (steps is None):
            raise ConfigError("give a Pipeline either `task=` or `steps=`", source=source or "Pipeline(...)")
        if task is not None:
            step_list = [StepConfig(name=task.name, task=task)]
        else:
            step_list = [s if isinstance(s, StepConfig) else StepConfig.model_validate(s) for s in steps or []]
        self._backend_obj = model if isinstance(model, Backend) else None
        model_spec: Any = None if isinstance(model, Backend) else model
        self.config = PipelineConfig(
            name=name or (task.name if task is not None else "pipeline"),
            model=model_spec,
            inputs=dict(inputs or {}),
            steps=step_list,
            output=output,
            batch_size=batch_size,
        )
        self.source = source
        self.base_dir = Path(base_dir) if base_dir is not None else Path(source).parent if source else Path.cwd()
        self.policy = policy or LoadPolicy()
        self.cache = cache
        self.trace = trace
        self._store_arg = store
        self._store: Any = None
        self._pool = _pool or BackendPool()
        self._callables: dict[str, Callable[..., Any]] = {}
        self._tasks: dict[str, Task] = {}  # steps whose task runs with resolved references
        self._subpipelines: dict[str, Pipeline] = {}
        self._buffer = _TraceBuffer()
        self._step_backends: dict[int, tuple[StepConfig, Backend]] = {}  # id(step) -> (step, its backend)
        self.log_every = 256
        self.log_interval_s = 2.0
        self._resolve_references(_chain)
        # written when the pipeline is collected or the interpreter exits (the registration
        # goes away with the pipeline, so a server building many pipelines does not pile them up)
        weakref.finalize(self, self._buffer.flush_quietly)

    # -- construction --------------------------------------------------------------
    @classmethod
    def from_config(cls, config: PipelineConfig | Mapping[str, Any], *, source: str | None = None,
                    **kwargs: Any) -> "Pipeline":
        if not isinstance(config, PipelineConfig):
            config = validate_pipeline_dict(dict(config), source=source or "<config>")
        model = kwargs.pop("model", None) or config.model
        inputs = {**config.inputs, **(kwargs.pop("inputs", None) or {})}  # the caller's mapping wins
        output = kwargs.pop("output", None) or config.output
        return cls(model=model, steps=config.steps, name=config.name, output=output, inputs=inputs,
                   batch_size=config.batch_size, source=source, **kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs: Any) -> "Pipeline":
        return cls.from_config(load_pipeline_config(path), source=str(path), **kwargs)

    def to_config(self) -> dict[str, Any]:
        data = self.config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        if self.config.model is not None:
            data["model"] = self.config.model
        data["steps"] = [
            {**s.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True, exclude={"task"}),
             **({"task": s.task.to_config()} if s.task else {})}
            for s in self.config.steps
        ]
        return data

    # -- resources ---------------------------------------------------------------
    @property
    def store(self) -> Any:
        """The SQLite store (opened on first use), or None when disabled."""
        if self._store is None and self._store_arg not in (False, None):
            from ..store.sqlite import Store

            arg = self._store_arg
            self._store = arg if isinstance(arg, Store) else Store(None if arg is True else arg)
            self._buffer.store = self._store
        return self._store

    def backend_for(self, step: StepConfig) -> Backend:
        """The backend ``step`` runs on (resolved once per step object: the hot path of ``run``)."""
        known = self._step_backends.get(id(step))
        if known is not None and known[0] is step:
            return known[1]
        task_model = step.task.model if step.task is not None else None
        backend = self._pool.get(resolve_model(step.model, task_model, self._backend_obj, self.config.model,
                                               language=_task_language(step)))
        self._step_backends[id(step)] = (step, backend)
        return backend

    def client_for(self, step: StepConfig) -> ModelClient:
        use_cache = self.cache and self.store is not None
        return ModelClient(self.backend_for(step), cache_get=self._cache_get if use_cache else None,
                           trace=self.trace)

    def close(self) -> None:
        self.flush()
        self._pool.close()
        self._step_backends.clear()
        if self._store is not None and self._store is not self._store_arg:
            self._store.close()
        self._store = self._buffer.store = None

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- introspection -------------------------------------------------------------
    @property
    def required_inputs(self) -> set[str]:
        """Input fields the records must have (what the first reader of each needs), after the
        top-level ``inputs:`` mapping: ``{text: sentence}`` makes ``sentence`` required, not ``text``."""
        produced: set[str] = set()
        needed: set[str] = set()
        for step in self.config.steps:
            reads: set[str] = set()
            if step.task is not None:
                reads = set(step.task.input_variables)
            elif step.pipeline is not None and step.name in self._subpipelines:
                reads = self._subpipelines[step.name].required_inputs
            # (a call: step reads whatever its function reads: it cannot be known here)
            wanted = {v for v in reads if v not in step.inputs}
            wanted |= {expr.split(".")[0] for expr in step.inputs.values()}
            needed |= wanted - produced
            produced.add(step.name)
        mapping = self.config.inputs
        return (needed - set(mapping)) | {expr.split(".")[0] for expr in mapping.values()}

    @property
    def output_step(self) -> str:
        """The step whose output is the pipeline's result (``output:``, else the last)."""
        return self.config.output or self.config.steps[-1].name

    def label_steps(self) -> dict[str, list[str]]:
        """The steps that predict labels (name → labels), in order: what gold labels can score."""
        return {s.name: list(s.task.labels) for s in self.config.steps
                if s.task is not None and s.task.kind.distribution and s.task.labels}

    def map_inputs(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The record as the steps see it: the top-level ``inputs:`` mapping applied (the record's
        own fields stay).  A variable the record already has is kept when its mapped field is
        absent, so ``run(text=...)`` works on a pipeline that maps ``text`` from a file column."""
        context = dict(record)
        for var, expr in self.config.inputs.items():
            try:
                context[var] = _lookup(record, expr, "inputs")
            except TemplateError:
                if var in record:
                    continue
                have = ", ".join(sorted(map(str, record))) or "no fields"
                raise TemplateError(
                    f"input {var!r} is mapped to the field {expr!r}, which the record lacks; the record has: {have}",
                    hint="fix the pipeline's top-level `inputs:` (or --map VAR=COLUMN) or the column names",
                ) from None
        return context

    def step_context(self, step_name: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """What step ``step_name`` reads for ``record``: the top-level mapping, then the step's own
        ``inputs:`` (for a step that reads record fields only, e.g. the first: optimize uses it)."""
        step = next((s for s in self.config.steps if s.name == step_name), None)
        if step is None:
            raise ConfigError(f"no step {step_name!r}", source=self.source,
                              hint=f"steps: {', '.join(s.name for s in self.config.steps)}")
        return self._bind(step, self.map_inputs(record))

    # -- execution -------------------------------------------------------------------
    def run(self, record: Mapping[str, Any] | None = None, /, **inputs: Any) -> Result:
        """Run the pipeline on one record; raises if it fails."""
        data = {**(record or {}), **inputs}
        outputs, calls, cache = self.process([data], ["0"])
        self._log(calls, cache)
        result = outputs[0]
        if isinstance(result, Exception):
            raise result
        return result

    def run_batch(self, records: Iterable[Mapping[str, Any]], **kwargs: Any) -> list[Result]:
        """Run many records with checkpoints; see :func:`openautoglm.core.batch.run_batch`."""
        from .batch import run_batch

        return run_batch(self, list(records), **kwargs).results

    def _log(self, calls: list[Any], cache: dict[str, Any]) -> None:
        """Buffer traces of single-record runs; write them in one transaction every
        ``log_every`` calls or ``log_interval_s`` seconds, and on :meth:`flush`/``close``.

        (Batch runs commit each chunk's traces with its checkpoint instead.)
        """
        if self.store is None:
            return
        buffer = self._buffer
        if self.trace:
            buffer.calls += calls
        if self.cache:
            buffer.cache.update(cache)
        if len(buffer.calls) >= self.log_every or time.monotonic() - buffer.last_flush >= self.log_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write buffered call traces and cache entries to the store."""
        self._buffer.flush()

    def _cache_get(self, keys: Sequence[str]) -> dict[str, Any]:
        pending = self._buffer.cache
        if len(keys) == 1:  # one record's request: no lists to build
            key = keys[0]
            if key in pending:
                return {key: pending[key][1]}
            return self.store.cache_get(keys) if self.store is not None else {}
        found = {k: pending[k][1] for k in keys if k in pending}
        rest = [k for k in keys if k not in found]
        if rest and self.store is not None:
            found.update(self.store.cache_get(rest))
        return found

    def process(
        self, records: Sequence[Mapping[str, Any]], keys: Sequence[str]
    ) -> tuple[list[dict[str, Any] | Exception], list[Any], dict[str, Any]]:
        """Pure batch step: records → (results or per-record errors, call records, cache entries).

        Touches no database: safe to run on a worker of a distributed executor.
        """
        contexts: list[dict[str, Any]] = []
        failed: dict[int, Exception] = {}
        for i, record in enumerate(records):
            try:
                contexts.append(self.map_inputs(record))
            except TemplateError as exc:  # this record lacks a mapped field: it fails alone
                contexts.append(dict(record))
                failed[i] = exc
        all_calls: list[Any] = []
        new_cache: dict[str, Any] = {}
        for step in self.config.steps:
            alive = [i for i in range(len(contexts)) if i not in failed]
            if not alive:
                break
            bound: list[dict[str, Any]] = []
            ok: list[int] = []
            for i in alive:
                try:
                    bound.append(self._bind(step, contexts[i]))
                    ok.append(i)
                except TemplateError as exc:
                    failed[i] = exc
            if not ok:
                continue
            outs, calls, cache = self._run_step(step, bound, [keys[i] for i in ok])
            all_calls += calls
            new_cache.update(cache)
            for i, out in zip(ok, outs):
                if isinstance(out, Exception):
                    failed[i] = out
                else:
                    contexts[i][step.name] = out
        final = self.output_step
        results: list[dict[str, Any] | Exception] = []
        for i, ctx in enumerate(contexts):
            if i in failed:
                results.append(failed[i])
                continue
            result = Result(ctx[final]) if isinstance(ctx[final], dict) else Result(value=ctx[final])
            if len(self.config.steps) > 1:
                result["steps"] = {s.name: ctx[s.name] for s in self.config.steps}
            results.append(result)
        return results, all_calls, new_cache

    def _bind(self, step: StepConfig, context: dict[str, Any]) -> dict[str, Any]:
        if not step.inputs:
            return context
        bound = dict(context)
        for var, expr in step.inputs.items():
            bound[var] = _lookup(context, expr, step.name)
        return bound

    def _run_step(
        self, step: StepConfig, contexts: list[dict[str, Any]], keys: list[str]
    ) -> tuple[list[Any], list[Any], dict[str, Any]]:
        if step.task is not None:
            task = self._tasks.get(step.name, step.task)
            client = self.client_for(step)
            outs: list[Any] = []
            try:
                outs = task.run_many(client, contexts, step=step.name, record_keys=keys)
            except StopRun:
                raise  # nothing can succeed now: the run stops, resumable
            except Exception as exc:  # noqa: BLE001 - isolated below, so that a bad record fails alone
                if len(contexts) == 1:
                    outs = [_as_record_error(step, exc)]
                else:  # requests already answered are replayed from the client's memo, not re-sent
                    outs = [self._run_one(task, client, step, ctx, key) for ctx, key in zip(contexts, keys)]
            calls, cache = client.drain()
            return outs, calls, cache
        if step.call is not None:
            func = self._callable(step)
            outs = []
            for ctx in contexts:
                try:
                    value = func(ctx)
                    outs.append(value if isinstance(value, dict) else {"value": value})
                except Exception as exc:  # noqa: BLE001 - a user function failing on one record
                    outs.append(RecordError(f"step {step.name!r}: {step.call} raised {type(exc).__name__}: {exc}"))
            return outs, [], {}
        sub = self._subpipeline(step)
        results, calls, cache = sub.process(contexts, keys)
        return results, calls, cache

    @staticmethod
    def _run_one(task: Task, client: ModelClient, step: StepConfig, context: dict[str, Any], key: str) -> Any:
        """One record's output of a task step, or the exception that failed it."""
        try:
            (out,) = task.run_many(client, [context], step=step.name, record_keys=[key])
            return out
        except StopRun:
            raise
        except Exception as exc:  # noqa: BLE001 - this record's own failure
            return _as_record_error(step, exc)

    def _resolve_references(self, chain: tuple[Path, ...]) -> None:
        """Import the callables and build the sub-pipelines the steps name, under ``self.policy``
        (so a forbidden or broken reference fails now, before any record runs)."""
        for step in self.config.steps:
            field = f"steps.{step.name}"
            if step.call is not None:
                self._callables[step.call] = self.policy.import_callable(step.call, source=self.source,
                                                                         field=f"{field}.call", folder=self.base_dir)
            if step.task is not None:
                self._resolve_strategy_callables(step, step.task, field)
            if step.pipeline is not None:
                self._subpipelines[step.name] = self._build_subpipeline(step, chain, f"{field}.pipeline")

    def _resolve_strategy_callables(self, step: StepConfig, task: Task, field: str) -> None:
        """Import the callables the task's strategy names (e.g. a python verifier) under the policy;
        the config stays plain data, the step runs a copy of the task that holds the functions."""
        spec = task.strategy
        refs = spec.cls.callable_refs(spec.settings)
        if not refs:
            return
        resolved = {path: self.policy.import_callable(ref, source=self.source, field=f"{field}.task.strategy.{path}",
                                                      folder=self.base_dir)
                    for path, ref in refs.items()}
        settings = spec.cls.with_callables(spec.settings, resolved)
        self._tasks[step.name] = task.model_copy(update={"strategy": spec.model_copy(update={"settings": settings})})

    def _build_subpipeline(self, step: StepConfig, chain: tuple[Path, ...], field: str) -> "Pipeline":
        assert step.pipeline is not None
        path = self.policy.resolve_pipeline(self.base_dir, step.pipeline, source=self.source, field=field)
        here = (Path(self.source).resolve(),) if self.source and not chain else ()
        trail = chain or here
        if path in trail:
            names = " -> ".join(p.name for p in (*trail, path))
            raise ConfigError(f"sub-pipelines form a cycle: {names}", source=self.source, field=field,
                              hint="a pipeline cannot include itself, directly or through others")
        if len(trail) >= self.policy.max_depth:
            raise ConfigError(f"sub-pipelines nest deeper than {self.policy.max_depth} levels",
                              source=self.source, field=field)
        return Pipeline.from_config(
            load_pipeline_config(path), source=str(path), store=False, cache=self.cache, trace=self.trace,
            _pool=self._pool, policy=self.policy, _chain=(*trail, path),
            model=step.model or self._backend_obj or self.config.model,
        )

    def _callable(self, step: StepConfig) -> Callable[..., Any]:
        assert step.call is not None
        return self._callables[step.call]

    def _subpipeline(self, step: StepConfig) -> "Pipeline":
        sub = self._subpipelines[step.name]
        sub._store = self.store  # share the cache lookups of the parent
        return sub


def _as_record_error(step: StepConfig, exc: Exception) -> Exception:
    """A step's failure on one record, as stored with it: our errors say what happened; anything
    else is wrapped with its type and the step (it is a bug somewhere, but only this record's)."""
    if isinstance(exc, OpenAutoGLMError):
        return exc
    return RecordError(f"step {step.name!r} failed: {type(exc).__name__}: {exc}")


class _TraceBuffer:
    """Traces and cache entries of single-record runs, waiting to be written to the store."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.cache: dict[str, Any] = {}
        self.store: Any = None
        self.last_flush = time.monotonic()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if self.store is not None and (self.calls or self.cache):
            calls, cache = self.calls, self.cache
            self.calls, self.cache = [], {}
            self.store.log(calls, cache)

    def flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - never fail garbage collection or shutdown over a trace
            pass


def _lookup(context: Mapping[str, Any], expr: str, step: str) -> Any:
    value: Any = context
    for part in expr.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            have = ", ".join(sorted(context))
            raise TemplateError(
                f"step {step!r}: input {expr!r} not found (no {part!r}); the record has: {have}",
                hint="fix the step's `inputs:` mapping or the input column names",
            )
    return value


def _task_language(step: StepConfig) -> str | None:
    """``zh`` for a step whose task is mostly CJK (its preset's language, else its template's):
    with no model named anywhere, such a task runs on the multilingual embedded model."""
    task = step.task
    if task is None:
        return None
    if task.language:
        return task.language
    from .presets import language_of

    return language_of(task.prompt_template) if task.prompt_template else None
