"""Fuzz the published OpenAPI spec with schemathesis (in-process ASGI, bounded examples): no 5xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

from .conftest import SENTIMENT_YAML, make_app  # noqa: E402

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 20  # per operation and generation mode: ~30 s in all on the fake backend


def test_openapi_spec_fuzz_gives_no_server_errors(tmp_path: Path) -> None:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "sentiment.yaml").write_text(SENTIMENT_YAML, encoding="utf-8")
    app = make_app(tmp_path)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    # the published spec covers the task API, the OpenAI API and monitoring
    assert {"POST /api/try", "POST /api/runs", "POST /v1/chat/completions", "GET /metrics"} <= labels
    failures: list[str] = []
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    for op, mode in [(op, mode) for op in operations for mode in modes]:

        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(generation_mode=mode))
        def no_5xx(case: Any) -> None:
            response = case.call()
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")

        try:
            no_5xx()
        except Unsatisfiable:  # e.g. no invalid input exists for an operation without parameters
            continue
        except AssertionError as exc:
            failures.append(f"[{mode.value}] " + str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)


def test_out_of_range_ids_are_client_errors(tmp_path: Path) -> None:
    """Found by the fuzzer in a clean CI run: an id beyond SQLite's 64-bit range gave a 500."""
    from fastapi.testclient import TestClient

    with TestClient(make_app(tmp_path)) as client:
        assert client.get("/api/traces/9223372036854775808").status_code == 400
        assert client.get("/api/traces/0").status_code == 400
        assert client.get("/api/traces/9223372036854775807").status_code == 404
