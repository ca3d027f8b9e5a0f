"""Fuzz the published OpenAPI spec with schemathesis (in-process ASGI, fixed seed, bounded
examples; see fuzzing.py): no operation may answer 5xx or leave a stream without [DONE].

The fake-model pass runs with the suite (about a minute); the pass on the real embedded model
is slow (model loading, then a smaller budget per operation, answers capped at 8 tokens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("schemathesis")

from .conftest import SENTIMENT_YAML, make_app  # noqa: E402
from .fuzzing import FuzzReport, cheap_body, fuzz_app  # noqa: E402

FAKE_EXAMPLES = 30  # random cases per operation, on top of the examples and coverage phases
LOCAL_EXAMPLES = 12
#: operations whose valid examples must reach the handler (2xx) - so the pass is not all refusals
MUST_ANSWER = ("POST /api/try", "POST /api/validate", "POST /v1/chat/completions", "POST /v1/completions",
               "POST /v1/embeddings", "GET /api/pipelines", "GET /healthz")


def _fuzzed(tmp_path: Path, backend: Any, max_examples: int, adjust: Any = None, **options: Any) -> FuzzReport:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "sentiment.yaml").write_text(SENTIMENT_YAML, encoding="utf-8")
    app = make_app(tmp_path, backend=backend, **options)
    try:
        return fuzz_app(app, max_examples, adjust=adjust)
    finally:
        app.state.server.close()


def _check(report: FuzzReport) -> None:
    # the published spec covers the task API, the OpenAI API and monitoring
    assert {"POST /api/try", "POST /api/runs", "POST /v1/chat/completions", "POST /v1/embeddings",
            "GET /metrics"} <= set(report.operations)
    assert all(report.by_operation[op] > 0 for op in report.operations)
    unanswered = [op for op in MUST_ANSWER if report.ok_by_operation[op] == 0]
    assert not unanswered, f"never reached the handler: {unanswered} ({dict(report.statuses)})"
    assert report.server_errors == 0, f"{report.server_errors} of {report.cases} cases failed:\n{report.summary()}"


def test_openapi_fuzz_on_the_fake_model_gives_no_server_errors(tmp_path: Path) -> None:
    from openautoglm.backends.fake import FakeBackend

    _check(_fuzzed(tmp_path, FakeBackend(), FAKE_EXAMPLES))


@pytest.mark.slow
def test_openapi_fuzz_on_the_local_model_gives_no_server_errors(tmp_path: Path) -> None:
    local = pytest.importorskip("openautoglm.backends.local")
    backend = local.LocalBackend()

    def adjust(body: Any) -> Any:
        return cheap_body(body, context=backend.max_context)

    # answers are capped (--max-tokens) so that a generated YAML asking for thousands of tokens
    # cannot keep the real model busy past the client's deadline on a loaded machine
    _check(_fuzzed(tmp_path, backend, LOCAL_EXAMPLES, adjust, max_tokens=16))


def test_out_of_range_ids_are_client_errors(tmp_path: Path) -> None:
    """Found by the fuzzer in a clean CI run: an id beyond SQLite's 64-bit range gave a 500."""
    from fastapi.testclient import TestClient

    with TestClient(make_app(tmp_path)) as client:
        assert client.get("/api/traces/9223372036854775808").status_code == 400
        assert client.get("/api/traces/0").status_code == 400
        assert client.get("/api/traces/9223372036854775807").status_code == 404
