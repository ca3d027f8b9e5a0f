"""Schemathesis over the server's published OpenAPI spec, in process (ASGI), counting server errors.

Every operation gets schemathesis' three generation phases - the spec's examples, the
coverage phase (boundary and invalid values: empty strings, huge numbers, wrong types)
and random fuzzing (``max_examples`` cases, valid and invalid) - with a fixed seed.
A case fails when the server answers 5xx, when the call raises, or when an event stream
does not end with ``data: [DONE]``.  Cases are recorded, never asserted one by one, so a
run reports every failure with its count.  Used by tests/serve/test_fuzz.py and
bench/reliability_server.py.

The phases are assembled with ``schemathesis.generation.hypothesis.builder.create_test``,
the builder schemathesis' own pytest plugin and engine use (its lazy pytest fixture
integration does not run under pytest 9.2).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

DONE = b"data: [DONE]\n\n"
#: events schemathesis reads from a stream (its default stops early, so the end could not be checked)
MAX_STREAM_EVENTS = 1_000_000
#: schemathesis stops reading an answer after this long (its default, 10 s, cuts a real model's
#: streams short on a busy machine, which would look like a stream without [DONE])
REQUEST_TIMEOUT_S = 300
#: (operation label, short description) of each failing case, and how often it occurred
Failures = Counter


@dataclass
class FuzzReport:
    """What one fuzzing pass saw."""

    cases: int = 0
    statuses: Counter = field(default_factory=Counter)  # status class ("2xx") -> count
    by_operation: Counter = field(default_factory=Counter)  # operation label -> cases
    ok_by_operation: Counter = field(default_factory=Counter)  # operation label -> 2xx answers
    failures: Failures = field(default_factory=Counter)
    operations: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        """Failing cases: 5xx answers, calls that raised, streams without ``[DONE]``."""
        return sum(self.failures.values())

    @property
    def status_5xx(self) -> int:
        return self.statuses["5xx"] + self.statuses["exception"]

    def summary(self, limit: int = 20) -> str:
        return "\n".join(f"{n}x {label}: {what}" for (label, what), n in self.failures.most_common(limit))


def response_failure(status: int, content_type: str, body: bytes) -> str | None:
    """Why an answer counts as a server failure, or None."""
    if status >= 500:
        return f"{status}: {body[:160].decode('utf-8', 'replace')}"
    if status == 200 and content_type.startswith("text/event-stream") and not body.endswith(DONE):
        return f"stream without [DONE], ends {body[-120:].decode('utf-8', 'replace')!r}"
    return None


def cheap_body(body: Any, max_tokens: int = 8, max_n: int = 2, context: int | None = None) -> Any:
    """A generated body made cheap for a real model: answers of at most ``max_tokens`` tokens and
    ``max_n`` choices.  Values the server must refuse (beyond ``context``) are kept as they are."""
    if not isinstance(body, dict):
        return body
    out = dict(body)
    for key in ("max_tokens", "max_completion_tokens"):
        value = out.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and max_tokens < value <= (context or value):
            out[key] = max_tokens
    if "messages" in out and "max_tokens" not in out and "max_completion_tokens" not in out:
        out["max_tokens"] = max_tokens
    n = out.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and max_n < n <= 128:
        out["n"] = max_n
    return out


def _record(report: FuzzReport, label: str, case: Any, adjust: Callable[[Any], Any] | None) -> None:
    if adjust is not None and case.body is not None:
        case.body = adjust(case.body)
    report.cases += 1
    report.by_operation[label] += 1
    try:
        response = case.call()
    except Exception as exc:  # noqa: BLE001 - the app raising is a server failure too
        report.failures[(label, f"raised {type(exc).__name__}: {str(exc)[:160]}")] += 1
        report.statuses["exception"] += 1
        return
    status = response.status_code
    report.statuses[f"{status // 100}xx"] += 1
    if 200 <= status < 300:
        report.ok_by_operation[label] += 1
    failure = response_failure(status, _header(response.headers, "content-type"), response.content)
    if failure is not None:
        report.failures[(label, failure)] += 1


def _header(headers: Any, name: str) -> str:
    """A header of a schemathesis response (its headers map names to lists of values)."""
    value = headers.get(name) or headers.get(name.title()) or ""
    return value[0] if isinstance(value, list) and value else value if isinstance(value, str) else ""


def fuzz_app(app: Any, max_examples: int, *, adjust: Callable[[Any], Any] | None = None,
             seed: int = 20261207) -> FuzzReport:
    """Run the examples, coverage and fuzzing phases against every operation of ``app``'s spec."""
    import schemathesis
    from schemathesis.generation.hypothesis.builder import HypothesisTestConfig, HypothesisTestMode, create_test

    config = schemathesis.Config.from_dict({
        "seed": seed,
        "max-stream-events": MAX_STREAM_EVENTS,
        "request-timeout": REQUEST_TIMEOUT_S,
        "generation": {"mode": "all", "max-examples": max_examples, "deterministic": True, "database": "none"},
    })
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    project = schema.config
    report = FuzzReport()
    modes = [HypothesisTestMode.EXAMPLES, HypothesisTestMode.COVERAGE, HypothesisTestMode.FUZZING]
    for result in schema.get_all_operations():
        operation = result.ok()
        report.operations.append(operation.label)
        settings = project.get_hypothesis_settings(operation=operation, phase="fuzzing")
        test = create_test(operation=operation, test_func=_case_recorder(report, operation.label, adjust),
                           config=HypothesisTestConfig(project=project, modes=modes, settings=settings, seed=seed))
        test()
    return report


def _case_recorder(report: FuzzReport, label: str, adjust: Callable[[Any], Any] | None) -> Callable[[Any], None]:
    def one_case(case: Any) -> None:
        _record(report, label, case, adjust)

    return one_case
