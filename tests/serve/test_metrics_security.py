"""Prometheus exposition, API keys hashed at rest, rate limits, body-size limits, CORS, no secrets in logs."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from openautoglm.errors import OpenAutoGLMError
from openautoglm.serve.metrics import Metrics
from openautoglm.serve.security import KeyStore, RateLimiter, is_loopback

from .conftest import ServerThread, make_app

SAMPLE = re.compile(r'^[a-z_:][a-z0-9_:]*(\{[^}]*\})? (-?[0-9.e+-]+|\+Inf|NaN)$')


def test_metrics_text_format() -> None:
    m = Metrics()
    labels = {"method": "GET", "route": '/a"b', "status": "200"}
    m.inc("http_requests_total", labels=labels)
    m.inc("http_requests_total", labels=labels)
    for v in (0.003, 0.2, 7.0):
        m.observe("http_request_duration_seconds", v, {"route": "/x"})
    m.gauge("queue_depth", "depth", lambda: 3)
    m.gauge("broken", "a gauge whose callable fails", lambda: 1 / 0)
    text = m.render()
    for line in text.splitlines():
        assert line.startswith("# ") or SAMPLE.match(line), line
    assert 'openautoglm_http_requests_total{method="GET",route="/a\\"b",status="200"} 2.0' in text
    assert 'openautoglm_http_request_duration_seconds_bucket{le="0.25",route="/x"} 2.0' in text  # labels sorted
    assert 'openautoglm_http_request_duration_seconds_count{route="/x"} 3.0' in text
    assert "# TYPE openautoglm_http_requests_total counter" in text
    assert "openautoglm_queue_depth 3.0" in text and "openautoglm_broken NaN" in text
    assert m.value("http_requests_total", labels) == 2
    assert m.value("http_requests_total", {**labels, "status": "500"}) == 0


def test_metric_names_and_labels_are_kept() -> None:
    """The names and label sets dashboards and the UI rely on."""
    from prometheus_client.parser import text_string_to_metric_families

    m = Metrics()
    m.inc("http_requests_total", labels={"method": "GET", "route": "/r", "status": "200"})
    m.observe("http_request_duration_seconds", 0.1, {"route": "/r"})
    m.inc("http_errors_total", labels={"route": "/r", "class": "4xx"})
    m.inc("tokens_total", 5, {"kind": "prompt", "endpoint": "chat"})
    m.inc("model_calls_total", labels={"kind": "generate"})
    m.observe("batch_size", 4, {"kind": "generate"})
    m.observe("batch_duration_seconds", 0.2, {"kind": "generate"})
    m.inc("rate_limited_total", labels={"key": "k1"})
    samples = {(s.name, tuple(sorted(s.labels))) for f in text_string_to_metric_families(m.render()) for s in f.samples}
    for name, labels in [("http_requests_total", ("method", "route", "status")),
                         ("http_request_duration_seconds_bucket", ("le", "route")),
                         ("http_errors_total", ("class", "route")), ("tokens_total", ("endpoint", "kind")),
                         ("model_calls_total", ("kind",)), ("batch_size_count", ("kind",)),
                         ("batch_duration_seconds_sum", ("kind",)), ("rate_limited_total", ("key",))]:
        assert (f"openautoglm_{name}", labels) in samples, name
    with pytest.raises(ValueError):
        m.inc("http_requests_total", labels={"route": "/r"})  # label set is fixed


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    first, second = Metrics(), Metrics()
    first.inc("model_calls_total", labels={"kind": "generate"})
    assert first.value("model_calls_total", {"kind": "generate"}) == 1
    assert second.value("model_calls_total", {"kind": "generate"}) == 0
    with TestClient(make_app(tmp_path / "a")) as a, TestClient(make_app(tmp_path / "b")) as b:
        a.get("/healthz")
        a.get("/healthz")
        b.get("/healthz")
        count = re.compile(r'openautoglm_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)')
        assert float(count.search(a.get("/metrics").text).group(1)) == 2
        assert float(count.search(b.get("/metrics").text).group(1)) == 1


def test_server_metrics_count_requests_tokens_and_errors(client) -> None:  # type: ignore[no-untyped-def]
    client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hello there"}]})
    client.get("/api/runs/nope")
    text = client.get("/metrics").text
    assert 'route="/v1/chat/completions",status="200"' in text
    assert re.search(r'openautoglm_tokens_total\{endpoint="chat",kind="completion"\} [1-9]', text)
    assert 'openautoglm_http_errors_total{class="4xx",route="/api/runs/{run_id}"} 1' in text
    assert "openautoglm_queue_depth 0" in text
    assert re.search(r'openautoglm_batch_size_count\{kind="generate"\} 1', text)


def test_keys_are_hashed_at_rest(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    keys = KeyStore(db)
    key, info = keys.add("ci-bot", rate_per_min=5)
    assert key.startswith("oag-") and len(key) > 40
    assert keys.verify(key) == info and keys.verify(key + "x") is None
    keys.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))
    assert key.encode() not in raw and key[10:].encode() not in raw
    keys = KeyStore(db)
    assert [k.name for k in keys.list()] == ["ci-bot"]
    assert keys.revoke("ci-bot") == 1 and keys.verify(key) is None and keys.active_count() == 0
    keys.close()


def test_rate_limiter_buckets() -> None:
    limiter = RateLimiter(burst=2)
    assert limiter.allow("k", 60)[0] and limiter.allow("k", 60)[0]
    ok, wait = limiter.allow("k", 60)
    assert not ok and 0 < wait <= 1.0
    assert limiter.allow("other", 60)[0]


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")


def test_keys_required_beyond_loopback(tmp_path: Path) -> None:
    with pytest.raises(OpenAutoGLMError, match="keys add"):
        make_app(tmp_path, host="0.0.0.0")
    keys = KeyStore(tmp_path / "store.db")
    key, _ = keys.add("web", rate_per_min=120)
    keys.close()
    app = make_app(tmp_path, host="0.0.0.0")
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200  # public
        denied = c.get("/api/runs")
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
        assert c.get("/api/runs", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/api/runs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert c.get("/v1/models", headers={"X-API-Key": key}).status_code == 200
        page = c.get("/runs", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        c.cookies.set("oag_key", key)
        assert c.get("/runs").status_code == 200
        assert c.get("/metrics").status_code == 200


def test_rate_limit_and_body_limit(tmp_path: Path) -> None:
    app = make_app(tmp_path, api_keys=["sk-static-0123456789"], rate_per_min=60, max_body_bytes=2000)
    auth = {"Authorization": "Bearer sk-static-0123456789"}
    with TestClient(app) as c:
        codes = [c.get("/api/runs", headers=auth).status_code for _ in range(15)]
        assert codes[0] == 200 and 429 in codes  # burst of 10 per minute-rate/6, then refused
        limited = c.get("/api/runs", headers=auth)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    app = make_app(tmp_path / "b", max_body_bytes=2000)
    with TestClient(app) as c:
        big = c.post("/api/validate", json={"yaml": "x" * 5000})
        assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
        assert c.post("/api/validate", json={"yaml": "name: a"}).status_code == 200


def test_cors_off_by_default_and_on_when_configured(tmp_path: Path) -> None:
    pre = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    with TestClient(make_app(tmp_path / "a")) as c:
        r = c.options("/v1/chat/completions", headers=pre)
        assert "access-control-allow-origin" not in r.headers
        assert "access-control-allow-origin" not in c.get("/v1/models", headers={"Origin": "https://evil.example"}).headers
    with TestClient(make_app(tmp_path / "b", cors_origins=["https://app.example"])) as c:
        ok = c.options("/v1/chat/completions", headers={**pre, "Origin": "https://app.example"})
        assert ok.headers.get("access-control-allow-origin") == "https://app.example"
        assert "access-control-allow-origin" not in c.options("/v1/chat/completions", headers=pre).headers


def test_no_secrets_in_server_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-secret-DO-NOT-LOG-42"
    app = make_app(tmp_path, api_keys=[secret])
    caplog.set_level(logging.DEBUG)
    with ServerThread(app) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=10) as http:
            assert http.get("/api/runs", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
            assert http.get("/api/runs", headers={"Authorization": "Bearer sk-wrong-key"}).status_code == 401
            http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                      json={"messages": [{"role": "user", "content": "hi"}]})
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET /api/runs" in logged  # access log is on...
    assert secret not in logged and "sk-wrong-key" not in logged  # ...and holds no keys
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))
    assert secret.encode() not in raw
