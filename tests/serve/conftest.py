"""Fixtures for the server tests: an app on the fake backend, and a real uvicorn thread."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

REPO = Path(__file__).resolve().parents[2]
SENTIMENT_YAML = """name: sentiment
task:
  name: sentiment
  template: "Review: {text}"
  labels: [positive, negative]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: Any, log_config: Any = None) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="info", lifespan="on",
                                log_config=log_config)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.base_url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def robust_fake(**options: Any) -> Any:
    """The fake backend, made to answer empty prompts too (its echo rule indexes the last line)."""
    from dataclasses import replace

    from openautoglm.backends.fake import FakeBackend, prompt_text

    class RobustFake(FakeBackend):
        def generate(self, requests):  # type: ignore[no-untyped-def]
            fixed = [r if prompt_text(r.prompt).splitlines() else replace(r, prompt="(empty)") for r in requests]
            return super().generate(fixed)

    return RobustFake(**options)


#: the Host name Starlette's TestClient sends (an operator would list it with --allowed-host)
TEST_HOST = "testserver"


def make_app(tmp_path: Path, backend: Any = None, **options: Any) -> Any:
    from openautoglm.serve import ServerConfig, create_app

    options.setdefault("allowed_hosts", [TEST_HOST])
    config = ServerConfig(model="fake", home=tmp_path, **options)
    return create_app(config, backend=backend or robust_fake())


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(make_app(tmp_path)) as c:
        yield c


def wait_for_run(client: Any, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(f"/api/runs/{run_id}").json()
        if run["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return run
        time.sleep(0.05)
