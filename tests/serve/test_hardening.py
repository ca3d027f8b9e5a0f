"""Issue 16 (server): YAML over HTTP is data, Host and cross-site checks, safe redirects, capped
templates, masked secrets.  Each attack of tests/serve/attacks.py runs as an attacker would,
against a server with the default settings, and must fail; the rest checks that what users
and operators rely on (the UI's own requests, API clients, allowed callables and origins)
still works."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from openautoglm.errors import OpenAutoGLMError
from openautoglm.serve.guards import HostPolicy, cross_site_reason, safe_redirect, split_host
from openautoglm.redact import mask_secrets, mask_text

from . import attacks
from .conftest import SENTIMENT_YAML, make_app

SHOUT = "tests.serve.helpers_calls:shout"
SHOUT_YAML = f'name: p\nsteps:\n  - name: s\n    call: "{SHOUT}"\n'


# -- the attack list ------------------------------------------------------------------------------
@pytest.mark.parametrize("attack", attacks.ATTACKS, ids=[a.name for a in attacks.ATTACKS])
def test_attack_fails(attack: attacks.Attack, tmp_path: Path) -> None:
    with attacks.target(tmp_path) as t:
        outcome = attack.run(t)
        leftovers = sorted(p.name for p in t.outside.iterdir() if p.name.startswith("PWNED"))
    assert not outcome.succeeded, f"{attack.group}: {attack.name} succeeded ({outcome.detail})"
    assert leftovers == []  # no injected command ran, whatever the answer said


# -- code and files: what the refusals say, and what stays possible ------------------------------------
def test_refused_call_names_the_fix_and_the_line(tmp_path: Path) -> None:
    with attacks.target(tmp_path) as t:
        found = t.client.post("/api/validate", json={"yaml": attacks.CALL_YAML}).json()
        tried = t.client.post("/api/try", json={"yaml": attacks.CALL_YAML, "inputs": {"text": "x"}})
        verifier = t.client.post("/api/validate", json={"yaml": attacks.VERIFIER_YAML}).json()
    (problem,) = found["problems"]
    assert not found["valid"] and problem["line"] == 4 and problem["field"] == "steps.s.call"
    assert "--allow-call subprocess:run" in problem["hint"]
    assert verifier["problems"][0]["line"] == 5 and "--allow-call os:system" in verifier["problems"][0]["hint"]
    assert tried.status_code == 422 and tried.json()["error"]["code"] == "invalid_pipeline"


def test_file_contents_never_appear_in_errors(tmp_path: Path) -> None:
    with attacks.target(tmp_path) as t:
        secret = str(t.outside / "secret.yaml")
        answers = [t.client.post("/api/validate", json={"yaml": attacks._sub_yaml(ref)})
                   for ref in (secret, "/etc/passwd", "/etc/shadow", "../secret.yaml", "../../outside/secret.yaml")]
    for answer in answers:
        (problem,) = answer.json()["problems"]
        assert "outside the pipelines folder" in problem["message"]
        assert attacks.SECRET not in answer.text and "root:" not in answer.text


def test_allow_listed_call_runs(tmp_path: Path) -> None:
    with attacks.target(tmp_path, allow_calls=[SHOUT]) as t:
        assert t.client.post("/api/validate", json={"yaml": SHOUT_YAML}).json()["valid"]
        out = t.client.post("/api/try", json={"yaml": SHOUT_YAML, "inputs": {"text": "hi"}})
        still_refused = t.client.post("/api/validate", json={"yaml": attacks.CALL_YAML}).json()
    assert out.status_code == 200 and out.json()["result"] == {"text": "HI"}
    assert not still_refused["valid"] and SHOUT in still_refused["problems"][0]["message"]


def test_sub_pipeline_inside_the_folder_runs(tmp_path: Path) -> None:
    with attacks.target(tmp_path) as t:
        assert t.client.put("/api/pipelines/inner", json={"yaml": SENTIMENT_YAML}).status_code == 200
        outer = 'name: outer\nsteps:\n  - name: s\n    pipeline: inner.yaml\n'
        out = t.client.post("/api/try", json={"yaml": outer, "inputs": {"text": "so negative"}})
    assert out.status_code == 200, out.text
    assert set(out.json()["result"]["scores"]) == {"positive", "negative"}


def test_planted_pipeline_with_forbidden_call_is_listed_invalid_and_never_runs(tmp_path: Path) -> None:
    with attacks.target(tmp_path) as t:
        (t.home / "pipelines" / "planted.yaml").write_text(attacks.CALL_YAML, encoding="utf-8")
        listed = t.client.get("/api/pipelines").json()["pipelines"]
        ran = t.client.post("/api/pipelines/planted/run", json={"inputs": attacks._call_inputs(t, "planted")})
        marked = t.mark("planted").exists()
    assert [(p["name"], p["valid"]) for p in listed] == [("planted", False)]
    assert ran.status_code == 400 and not marked


def test_allow_call_must_name_a_function(tmp_path: Path) -> None:
    with pytest.raises(OpenAutoGLMError, match="module:function"):
        make_app(tmp_path, allow_calls=["subprocess"])


# -- Host header (DNS rebinding) -------------------------------------------------------------------
def test_split_host() -> None:
    assert split_host("LocalHost:8000") == ("localhost", 8000)
    assert split_host("[::1]:8000") == ("::1", 8000) and split_host("127.0.0.1") == ("127.0.0.1", None)
    for bad in ("", "a b", "::1", "x:99999", "x:abc", "evil.example/path", "user@host", "[::1", "a, b"):
        assert split_host(bad) is None, bad


def test_host_policy_per_bind() -> None:
    loop = HostPolicy.for_bind("127.0.0.1", 8000)
    assert all(loop.allows(h) for h in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "localhost", None))
    assert not loop.allows("attacker.example:8000") and not loop.allows("localhost:9999")
    assert not loop.allows("127.0.0.1.attacker.example:8000") and not loop.allows("localhost:8000, evil")
    lan = HostPolicy.for_bind("192.168.1.4", 8000, ["gpu-box.lan"])
    assert lan.allows("192.168.1.4:8000") and lan.allows("GPU-BOX.lan:8000") and not lan.allows("localhost:8000")
    wild = HostPolicy.for_bind("0.0.0.0", None, ["api.example"])
    assert wild.allows("api.example") and wild.allows("localhost") and not wild.allows("other.example")
    assert HostPolicy.for_bind("0.0.0.0", None, ["*"]).allows("anything.example")


def test_wildcard_bind_needs_allowed_hosts(tmp_path: Path) -> None:
    key = "sk-static-0123456789"
    with pytest.raises(OpenAutoGLMError, match="--allowed-host"):
        make_app(tmp_path / "a", host="0.0.0.0", api_keys=[key], allowed_hosts=[])
    app = make_app(tmp_path / "b", host="0.0.0.0", api_keys=[key], allowed_hosts=["api.example"])
    with TestClient(app, base_url="http://api.example") as c:
        auth = {"Authorization": f"Bearer {key}"}
        assert c.get("/api/runs", headers=auth).status_code == 200
        refused = c.get("/api/runs", headers={**auth, "Host": "rebound.example"})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "host_not_allowed"
        assert "--allowed-host" in refused.json()["error"]["message"]


# -- cross-site requests ----------------------------------------------------------------------------
def test_cross_site_reason() -> None:
    host = {"host": "127.0.0.1:8000"}
    assert cross_site_reason("GET", {**host, "origin": "https://evil.example"}) is None  # reads are not guarded
    assert cross_site_reason("POST", host) is None  # curl, SDKs: no browser headers
    assert cross_site_reason("POST", {**host, "origin": "http://127.0.0.1:8000"}) is None
    assert cross_site_reason("POST", {**host, "sec-fetch-site": "same-origin"}) is None
    assert cross_site_reason("POST", {**host, "referer": "http://127.0.0.1:8000/runs"}) is None
    assert cross_site_reason("POST", {**host, "origin": "https://app.example"}, ["https://app.example"]) is None
    for headers in ({"origin": "https://evil.example"}, {"origin": "null"}, {"sec-fetch-site": "same-site"},
                    {"referer": "https://evil.example/"}, {"origin": "http://127.0.0.1:8000@evil.example"}):
        assert cross_site_reason("DELETE", {**host, **headers}) is not None, headers


def test_the_ui_own_requests_and_api_clients_pass(tmp_path: Path) -> None:
    body = {"yaml": attacks.GOOD_YAML, "inputs": {"text": "good"}}
    with attacks.target(tmp_path) as t:
        same_origin = t.client.post("/api/try", json=body, headers={
            "Origin": attacks.BASE_URL, "Sec-Fetch-Site": "same-origin", "Referer": attacks.BASE_URL + "/"})
        api_client = t.client.post("/api/try", json=body)  # no Origin: curl, the openai SDK
        upload = t.client.post("/api/uploads", files={"file": ("x.csv", b"text\nhi\n", "text/csv")},
                               headers={"Origin": attacks.BASE_URL})
    assert same_origin.status_code == api_client.status_code == upload.status_code == 200


def test_api_key_clients_and_allowed_origins_pass(tmp_path: Path) -> None:
    key = "sk-static-0123456789"
    app = make_app(tmp_path, api_keys=[key], cors_origins=["https://app.example"])
    body = {"messages": [{"role": "user", "content": "hi"}]}
    with TestClient(app) as c:
        auth = {"Authorization": f"Bearer {key}"}
        assert c.post("/v1/chat/completions", json=body, headers=auth).status_code == 200
        allowed = c.post("/v1/chat/completions", json=body, headers={**auth, "Origin": "https://app.example"})
        other = c.post("/v1/chat/completions", json=body, headers={**auth, "Origin": "https://evil.example"})
    assert allowed.status_code == 200 and other.status_code == 403


# -- redirects -------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", attacks.REDIRECTS + ["/\x00//evil.example", "/%0a", "\u3000//evil.example"])
def test_safe_redirect_refuses_off_site_targets(target: str) -> None:
    assert not attacks.leaves_site(safe_redirect(target))


def test_safe_redirect_keeps_local_paths(tmp_path: Path) -> None:
    for path in ("/runs", "/runs/srv-1?filter=wrong", "/traces?q=a%20b"):
        assert safe_redirect(path) == path
    app = make_app(tmp_path, api_keys=["sk-static-0123456789"])
    with TestClient(app) as c:
        page = c.get("/runs?x=1", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/runs"
        assert 'data-next="/runs"' in c.get("/login", params={"next": "/runs"}).text


# -- template caps -----------------------------------------------------------------------------------
def test_the_reported_jinja_request_is_refused_before_any_model_call(tmp_path: Path) -> None:
    raw = json.dumps(attacks.JINJA_BOMB, separators=(",", ":")).encode()
    assert len(raw) <= 193  # the size of the reported request
    with attacks.target(tmp_path) as t:
        resp = t.client.post("/api/try", content=raw, headers={"Content-Type": "application/json"})
        calls = t.backend.calls
    error = resp.json()["error"]
    assert resp.status_code == 422 and error["code"] == "template_error"
    assert "100,000 iterations" in error["message"] or "took over" in error["message"]  # a cap stopped it
    assert calls == 0


def test_template_output_size_is_capped(tmp_path: Path) -> None:
    yaml = 'name: p\ntask:\n  name: t\n  template: "{{ text * 2000000 }}"\n  labels: [a, b]\n'
    with attacks.target(tmp_path) as t:
        resp = t.client.post("/api/try", json={"yaml": yaml, "inputs": {"text": "xy"}})
    assert resp.status_code == 422 and "characters" in resp.json()["error"]["message"]


# -- secrets -------------------------------------------------------------------------------------------
def test_mask_secrets() -> None:
    masked = mask_secrets({"api_key": "sk-live-abcdef123456", "max_tokens": 5, "prompt_tokens": 3, "hf_token": "x1",
                           "headers": {"Authorization": "Bearer abcdefgh"}, "api_key_set": True,
                           "base_url": "https://user:pw@host/v1"})
    assert masked == {"api_key": "***", "max_tokens": 5, "prompt_tokens": 3, "hf_token": "***",
                      "headers": {"Authorization": "***"}, "api_key_set": True, "base_url": "https://user:***@host/v1"}
    text = mask_text("401 from https://u:hunter2@h/x with Bearer abc123def456, key sk-proj-abcdef123; api_key=zz9")
    assert not any(s in text for s in ("hunter2", "abc123def456", "abcdef123", "zz9")), text


def _secret_backend() -> Any:
    from openautoglm.backends.fake import FakeBackend

    class Configured(FakeBackend):
        def describe(self) -> dict[str, Any]:
            return {**super().describe(), "base_url": "https://bob:hunter2@llm.example/v1", "api_key": "sk-live-123456"}

    return Configured()


def test_secrets_are_masked_in_traces_runs_and_models(tmp_path: Path) -> None:
    from openautoglm.core.client import CallRecord

    app = make_app(tmp_path, backend=_secret_backend())
    state = app.state.server
    state.store.trace([CallRecord(kind="generate", backend="openai", model="m", prompt="hello", response="hi",
                                  params={"api_key": "sk-live-123456", "max_tokens": 4},
                                  error="401 Unauthorized: Bearer hunter2hunter2")])
    state.store.execute("INSERT INTO serve_jobs (run_id, pipeline, upload_id, status, error, created) "
                        "VALUES ('srv-x', 'name: p', 'u', 'failed', 'calling https://bob:hunter2@llm.example', 0)")
    with TestClient(app) as c:
        (summary,) = c.get("/api/traces").json()["traces"]
        shown = [c.get(f"/api/traces/{summary['id']}").text, c.get(f"/traces/{summary['id']}").text,
                 c.get("/traces").text, c.get("/api/runs/srv-x").text, c.get("/api/models").text,
                 c.get("/runs").text, json.dumps(summary)]
    for page in shown:
        assert "sk-live-123456" not in page and "hunter2" not in page, page[:300]
    assert "***" in shown[0] and '"max_tokens":4' in shown[0].replace(" ", "")


# -- command line ----------------------------------------------------------------------------------------
def test_cli_flags_reach_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    import uvicorn

    from openautoglm.serve.cli import register

    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    cli = typer.Typer()
    cli.command()(lambda: None)
    register(cli)
    runner = CliRunner()
    help_text = runner.invoke(cli, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert "--allow-call" in help_text and "--allowed-host" in help_text and "DNS rebinding" in help_text
    model = "fake:https://bob:hunter2@llm.example/v1"  # a model string with a password in it
    result = runner.invoke(cli, ["serve", "--model", model, "--store", str(tmp_path / "store.db"), "--port", "8123",
                                 "--allow-call", SHOUT, "--allowed-host", "gpu-box.lan"])
    assert result.exit_code == 0, result.output
    state = served["app"].state.server
    assert "hunter2" not in result.output and "hunter2" not in state.model_name
    assert state.registry.policy.allowed_calls == frozenset({SHOUT})
    assert state.guard.hosts.allows("gpu-box.lan:8123") and not state.guard.hosts.allows("gpu-box.lan:8000")
    assert served["port"] == 8123 and SHOUT in result.output
    state.close()
