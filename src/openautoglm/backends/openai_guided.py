"""Generation over HTTP, with guided decoding: a :class:`~.base.Constraint` travels in the
form the endpoint takes, and what the endpoint does with it is found out and recorded.

Wire methods (how a constraint travels; a preset lists its servers', best first):

``response_format``
    OpenAI's ``{"type": "json_schema", "json_schema": {"name": "output", "schema": ...}}``:
    OpenAI, DashScope, vLLM, llama.cpp, Ollama (whose ``/v1`` layer passes it on as its
    native ``format``) and Open-AutoGLM's server.  JSON Schema only.
``structured_outputs``
    vLLM 0.10.2 and later: ``{"structured_outputs": {"json" | "regex" | "choice" | "grammar": ...}}``.
``guided``
    vLLM before 0.12: ``guided_json`` / ``guided_regex`` / ``guided_choice`` / ``guided_grammar``.
``llamacpp``
    llama.cpp's server: ``json_schema``, and a choice as a GBNF ``grammar``.
``json_object``
    JSON mode, ``response_format: {"type": "json_object"}`` (DeepSeek, Zhipu): the answer is
    a JSON object, but the schema is not enforced, so it does not count in ``constraints``
    (the JSON output kind still validates and re-asks).

What an endpoint takes
    A preset's methods are believed until the endpoint refuses one.  An endpoint without a
    preset is probed: a tiny request carrying the field (``max_tokens`` 32), once per
    (method, kind), the first time that kind is needed or ``constraints`` is read.  HTTP
    400/422, or an answer that does not satisfy the probe's constraint (the field was
    ignored), means "not taken".  Results live in the backend for its life (one
    ``base_url``); they are not persisted, so a new backend probes again.

Falling back, never silently
    A request whose method is refused (400/422, when a probe confirms the method is not
    taken) or ignored goes out again with the next method, and in the end without a
    constraint.  The completion's ``constraint_method`` says what was used and what was
    refused (``"none: response_format: refused (HTTP 400: ...)"``), and ``guided_log``
    keeps every fallback.  When the method is known to work, a 400 is about this request:
    the error names the constraint and quotes the server (a JSON schema is first checked
    here, so a malformed one fails before it is sent, naming the path of the problem).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ..errors import BackendError
from .base import CONSTRAINT_KINDS, Completion, Constraint, GenerationRequest
from .http_machinery import RequestRejected, _gather_fail_fast
from .openai_wire import _chat_logprobs, _expect, _message_text, _usage, to_messages
from .structured import SchemaProblem, check_json_schema, gbnf_choice, satisfies

#: alternatives asked for per generated token when a request wants logprobs
GENERATE_TOP_LOGPROBS = 5
#: alternatives asked for when a choice-constrained answer's first token is read as a distribution
CHOICE_TOP_LOGPROBS = 20
#: statuses that mean "this server does not take that field"
REFUSED_STATUSES = (400, 422)
_VLLM_KEY = {"json_schema": "json", "regex": "regex", "choice": "choice", "grammar": "grammar"}


def _value(c: Constraint) -> Any:
    return list(c.value) if c.kind == "choice" else c.value


def _llamacpp(c: Constraint) -> dict[str, Any]:
    return {"json_schema": c.value} if c.kind == "json_schema" else {"grammar": gbnf_choice(c.value)}


@dataclass(frozen=True)
class WireMethod:
    """One way of sending a constraint: its name, the kinds it carries, whether it enforces
    them fully, and the request fields it adds."""

    name: str
    kinds: frozenset[str]
    enforces: bool
    fields: Callable[[Constraint], dict[str, Any]]


WIRE_METHODS: dict[str, WireMethod] = {m.name: m for m in (
    WireMethod("response_format", frozenset({"json_schema"}), True, lambda c: {
        "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": c.value}}}),
    WireMethod("structured_outputs", frozenset(CONSTRAINT_KINDS), True,
               lambda c: {"structured_outputs": {_VLLM_KEY[c.kind]: _value(c)}}),
    WireMethod("guided", frozenset(CONSTRAINT_KINDS), True, lambda c: {f"guided_{_VLLM_KEY[c.kind]}": _value(c)}),
    WireMethod("llamacpp", frozenset({"json_schema", "choice"}), True, _llamacpp),
    WireMethod("json_object", frozenset({"json_schema"}), False,
               lambda c: {"response_format": {"type": "json_object"}}),
)}
#: the methods tried, in this order, on an endpoint without a preset
PROBE_ORDER = ("response_format", "structured_outputs", "guided", "llamacpp", "json_object")
#: per kind: the probe's constraint, and its prompt
PROBES: dict[str, tuple[Constraint, str]] = {
    "json_schema": (Constraint.json({"type": "object", "properties": {"ok": {"type": "boolean"}},
                                     "required": ["ok"], "additionalProperties": False}),
                    "Reply with a JSON object."),
    "choice": (Constraint.choice(["AQ", "ZX"]), "Say hello."),
    "regex": (Constraint.regex("[0-9]{3}-[0-9]{2}"), "Say hello."),
    "grammar": (Constraint.grammar('start: "AQ" | "ZX"'), "Say hello."),
}


def honoured(method: WireMethod, constraint: Constraint, text: str) -> bool | None:
    """Whether ``text`` shows that the server applied ``method`` (``None``: cannot tell)."""
    if method.name == "json_object":
        try:
            return isinstance(json.loads(text), dict)
        except ValueError:
            return False
    if constraint.kind == "grammar" and constraint == PROBES["grammar"][0]:
        return text.strip() in ("AQ", "ZX")
    return satisfies(constraint, text)


class GuidedGeneration:
    """Mixin of :class:`~.openai_compat.OpenAICompatBackend`: chat generation, with each
    constraint sent the way the endpoint takes it (module docstring)."""

    model: str
    base_url: str
    _n_supported: bool

    def _init_guided(self, declared: Sequence[str]) -> None:
        self._declared = bool(declared)
        self._wire_order = tuple(declared) or PROBE_ORDER
        self._support: dict[tuple[str, str], bool] = {}  # (method, kind) -> taken (probed or seen)
        self._probing: dict[tuple[str, str], asyncio.Future[bool | None]] = {}
        self._probe_lock = threading.Lock()
        self._constraints_set: frozenset[str] | None = None
        #: every fallback, oldest first ("choice: guided: refused (HTTP 400 ...)")
        self.guided_log: list[str] = []

    # -- what is known -------------------------------------------------------------
    @property
    def constraints(self) -> frozenset[str]:
        """The constraint kinds this endpoint enforces, as far as known: a preset's (less any
        it refused), or for an endpoint without a preset what probes confirmed (reading this
        probes the kinds not yet probed, once).  Assign to declare them yourself."""
        if self._constraints_set is not None:
            return self._constraints_set
        if not self._declared and not self._loop.in_loop_thread():  # type: ignore[attr-defined]
            with self._probe_lock:
                try:
                    self._run(self._probe_kinds(CONSTRAINT_KINDS))  # type: ignore[attr-defined]
                except BackendError:
                    pass  # unreachable now: nothing more is known; a later read probes again
        return self.known_constraints(enforcing=True)

    @constraints.setter
    def constraints(self, kinds: frozenset[str]) -> None:
        self._constraints_set = frozenset(kinds)

    @property
    def supports_json_schema(self) -> bool:
        """Whether a JSON schema reaches the endpoint in some form (JSON mode included), as known now."""
        return "json_schema" in self.known_constraints(enforcing=False)

    def known_constraints(self, enforcing: bool = True) -> frozenset[str]:
        """The kinds some method carries (``enforcing``: fully) that is declared or confirmed and not refused."""
        kinds = set()
        for name in self._wire_order:
            method = WIRE_METHODS[name]
            for kind in method.kinds:
                state = self._support.get((name, kind))
                if (method.enforces or not enforcing) and state is not False and (state or self._declared):
                    kinds.add(kind)
        return frozenset(kinds)

    def guided_support(self) -> dict[str, bool]:
        """What probes and answers showed: ``{"method/kind": taken}``."""
        return {f"{m}/{k}": v for (m, k), v in sorted(self._support.items())}

    def _methods_for(self, kind: str) -> list[WireMethod]:
        return [WIRE_METHODS[n] for n in self._wire_order if kind in WIRE_METHODS[n].kinds]

    # -- probing -------------------------------------------------------------------------
    async def _probe_kinds(self, kinds: Sequence[str]) -> None:
        async def first_taken(kind: str) -> None:
            for method in self._methods_for(kind):
                if await self._probe(method, kind):
                    return

        await asyncio.gather(*(first_taken(k) for k in kinds))

    async def _probe(self, method: WireMethod, kind: str) -> bool | None:
        """Whether the endpoint takes ``method`` for ``kind`` (cached; ``None``: could not tell)."""
        key = (method.name, kind)
        if key in self._support:
            return self._support[key]
        if key not in self._probing:
            self._probing[key] = asyncio.ensure_future(self._probe_once(method, kind))
        try:
            return await asyncio.shield(self._probing[key])
        finally:
            if self._probing.get(key) is not None and self._probing[key].done():
                self._probing.pop(key, None)

    async def _probe_once(self, method: WireMethod, kind: str) -> bool | None:
        constraint, prompt = PROBES[kind]
        payload = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 32,
                   "temperature": 0.0, **method.fields(constraint)}
        try:
            data = await self._call("/chat/completions", payload)  # type: ignore[attr-defined]
            text = _message_text(self._choices(data, self.base_url + "/chat/completions")[0])
        except RequestRejected as exc:
            if exc.status not in REFUSED_STATUSES:
                return None  # a key or model problem, not the field
            self._support[(method.name, kind)] = False
            return False
        except (BackendError, ValueError, TypeError):
            return None
        verdict = bool(honoured(method, constraint, text))
        self._support[(method.name, kind)] = verdict
        return verdict

    # -- generation ---------------------------------------------------------------------
    def _chat_payload(self, req: GenerationRequest, n: int, seed: int | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "messages": to_messages(req.prompt),
                                   "max_tokens": req.max_tokens, "temperature": req.temperature}
        if req.top_p != 1.0:
            payload["top_p"] = req.top_p
        if n != 1:
            payload["n"] = n
        if req.stop:
            payload["stop"] = list(req.stop)
        if seed is not None:
            payload["seed"] = seed
        if req.logprobs:
            choice = req.constraint is not None and req.constraint.kind == "choice"
            payload["logprobs"] = True
            payload["top_logprobs"] = CHOICE_TOP_LOGPROBS if choice else GENERATE_TOP_LOGPROBS
        return payload

    def _choices(self, data: Mapping[str, Any], url: str) -> list[dict[str, Any]]:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise self._error(BackendError, f"{url} returned no choices: {str(data)[:200]}")  # type: ignore[attr-defined]
        for choice in choices:
            _expect(choice, Mapping, "choices[]")
            _expect(choice.get("index", 0), int, "choices[].index")
        return sorted(choices, key=lambda c: c.get("index", 0))

    async def _generate_guided(self, req: GenerationRequest, c: Constraint) -> Completion:
        if c.kind == "json_schema":
            try:
                check_json_schema(c.value)
            except SchemaProblem as exc:
                raise BackendError(f"the JSON schema cannot be sent to {self.base_url}: {exc}",
                                   hint=f"fix the schema at {exc.path}") from None
        notes: list[str] = []
        skipped: list[str] = []
        for method in self._methods_for(c.kind):
            key = (method.name, c.kind)
            known = self._support.get(key)
            if known is None and not self._declared:
                known = await self._probe(method, c.kind)
            if known is False:
                skipped.append(method.name)
                continue
            try:
                comp = await self._generate_plain(req, method.fields(c))
            except RequestRejected as exc:
                if exc.status not in REFUSED_STATUSES:
                    raise
                if known or await self._probe(method, c.kind):
                    raise self._refused(c, method, exc) from None
                self._support[key] = False
                notes.append(f"{method.name}: refused (HTTP {exc.status}: {exc.message[-160:]})")
                continue
            verdicts = [honoured(method, c, t) for t, f in zip(comp.texts, comp.finish_reasons) if f != "length"]
            if False in verdicts and not known:
                self._support[key] = False
                notes.append(f"{method.name}: ignored (an answer does not satisfy the {c.kind} constraint)")
                continue
            if False not in verdicts:
                self._support[key] = True
            label = method.name if method.enforces else "json_object (JSON mode; the schema is not enforced)"
            if False in verdicts:
                label += " (an answer does not satisfy the constraint)"
            return self._noted(comp, label + (f"; after {'; '.join(notes)}" if notes else ""), c, notes)
        comp = await self._generate_plain(req, {})
        reason = "; ".join(notes) if notes else (
            f"{self.base_url} refused or ignored {', '.join(skipped)} for {c.kind} constraints" if skipped
            else f"{self.base_url} takes no {c.kind} constraint")
        return self._noted(comp, f"none: {reason}", c, notes or [reason])

    def _noted(self, comp: Completion, method: str, c: Constraint, fallbacks: list[str]) -> Completion:
        comp.constraint_method = method
        if fallbacks:
            self.guided_log.append(f"{c.kind}: {method}")
        return comp

    def _refused(self, c: Constraint, method: WireMethod, exc: RequestRejected) -> BackendError:
        what = "JSON schema" if c.kind == "json_schema" else f"{c.kind} constraint"
        return BackendError(
            f"{exc.message} - the endpoint takes {c.kind} constraints ({method.name}), so it refused this "
            f"request's {what} (or another of its parameters)",
            hint="the server's message above names what it cannot take; simplify that part of the "
                 f"{what}, or run without it (the JSON output kind then validates and re-asks)")

    async def _generate_plain(self, req: GenerationRequest, fields: dict[str, Any]) -> Completion:
        t0 = time.perf_counter()
        url = self.base_url + "/chat/completions"
        responses: list[dict[str, Any]] = []
        choices: list[dict[str, Any]] = []
        call = self._call  # type: ignore[attr-defined]
        if self._n_supported or req.n == 1:
            responses.append(await call("/chat/completions", {**self._chat_payload(req, req.n, req.seed), **fields}))
            choices = self._choices(responses[0], url)
        missing = req.n - len(choices)
        if missing > 0:
            if responses:  # the server ignored n > 1: ask for one sample per request from now on
                self._n_supported = False
            seeds = [None if req.seed is None else req.seed + len(choices) + i for i in range(missing)]
            extra = await _gather_fail_fast(
                [call("/chat/completions", {**self._chat_payload(req, 1, s), **fields}) for s in seeds])
            responses += extra
            choices += [self._choices(d, url)[0] for d in extra]
        choices = choices[: req.n]
        usage = [_usage(d) for d in responses]
        logprobs = [_chat_logprobs(c) for c in choices] if req.logprobs else None
        return Completion(
            texts=[_message_text(c) for c in choices],
            finish_reasons=[str(c.get("finish_reason") or "unknown") for c in choices],
            prompt_tokens=sum(p for p, _ in usage),
            completion_tokens=sum(c for _, c in usage),
            latency_s=time.perf_counter() - t0,
            logprobs=logprobs if logprobs and any(logprobs) else None,
        )
