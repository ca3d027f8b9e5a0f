"""``openautoglm models``: configured is not reachable; ``--check`` probes endpoints on loopback."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
from typer.testing import CliRunner

from openautoglm.backends.presets import PRESETS
from openautoglm.backends.probe import probe_endpoint
from openautoglm.backends.registry import list_models
from openautoglm.cli import app

WIDE = {"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}


def free_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class Models(BaseHTTPRequestHandler):
    status = 200
    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        Models.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"object": "list", "data": [{"id": "llama3"}, {"id": "qwen2"}]}).encode()
        self.send_response(self.status if self.path == "/v1/models" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Models)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Models.status, Models.seen = 200, []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_a_listening_server_is_reachable_and_lists_its_models(server: str) -> None:
    found = probe_endpoint(server, api_key="sk-test", timeout=2)
    assert found.reachable and "llama3, qwen2" in found.detail
    assert Models.seen == ["Bearer sk-test"]


def test_a_server_refusing_the_key_still_answers(server: str) -> None:
    Models.status = 401
    found = probe_endpoint(server, timeout=2)
    assert found.reachable and "refuses the key (HTTP 401)" in found.detail and Models.seen == [None]


def test_nothing_listening_is_not_reachable() -> None:
    url = free_url()
    found = probe_endpoint(url, timeout=2)
    assert not found.reachable and f"nothing answers at {url}" in found.detail


def loopback_env(ollama: str) -> dict[str, str]:
    """Every preset pointed at loopback (nothing leaves the machine), ollama at ``ollama``."""
    env = {p.base_url_env: free_url() for p in PRESETS.values()}
    env[PRESETS["ollama"].base_url_env] = ollama
    return env


def test_list_models_says_configured_and_checks_only_when_asked(server: str) -> None:
    env = loopback_env(server)
    plain = {r["model"]: r for r in list_models(env=env)}
    vllm = plain["vllm:<model>"]
    assert vllm["configured"] is True and "reachable" not in vllm and "needs a server running" in vllm["detail"]
    checked = {r["model"]: r for r in list_models(env={**env, "OPENAI_API_KEY": "sk-secret"}, check=True, timeout=2)}
    assert checked["vllm:<model>"]["reachable"] is False and "nothing answers" in checked["vllm:<model>"]["probe"]
    assert checked["ollama:<model>"]["reachable"] is True and "llama3" in checked["ollama:<model>"]["probe"]
    assert checked["fake"]["reachable"] is None
    assert "sk-secret" not in json.dumps(checked)  # a key is sent to its endpoint, never listed


def test_models_command_shows_configured_and_check_adds_reachable(server: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in loopback_env(server).items():
        monkeypatch.setenv(name, value)
    plain = CliRunner().invoke(app, ["models"], env=WIDE)
    assert plain.exit_code == 0, plain.output
    assert "configured" in plain.stdout and "available" not in plain.stdout and "reachable" not in plain.stdout
    checked = CliRunner().invoke(app, ["models", "--check", "--timeout", "2"], env=WIDE)
    assert checked.exit_code == 0, checked.output
    lines = {line.split("│")[1].strip(): line for line in checked.stdout.splitlines() if line.count("│") > 4}
    assert [c.strip() for c in lines["vllm:<model>"].split("│")[3:5]] == ["yes", "no"]
    assert [c.strip() for c in lines["ollama:<model>"].split("│")[3:5]] == ["yes", "yes"]
