"""The OpenAI-compatible endpoints through the official ``openai`` client (streaming included),
and the ``serve`` CLI (keys add/list/revoke, refusing to bind beyond loopback without keys)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from .conftest import ServerThread, make_app


def test_official_openai_client_streams_and_batches(tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    with ServerThread(make_app(tmp_path)) as srv:
        client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list()] == ["fake"]
        whole = client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "say a b c"}])
        stream = client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "say a b c"}],
                                                stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == whole.choices[0].message.content == "echo: say a b c"
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # really chunked
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
        pieces = list(client.completions.create(model="fake", prompt="hello world", stream=True, max_tokens=8))
        assert "".join(p.choices[0].text for p in pieces) == "echo: hello world"
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])


def _cli() -> typer.Typer:
    from openautoglm.serve.cli import register

    app = typer.Typer()

    @app.command()
    def version() -> None:  # a second command, so `serve` stays a sub-command
        print("0")

    register(app)
    return app


def test_serve_cli_keys_and_refusal(tmp_path: Path) -> None:
    runner = CliRunner()
    app = _cli()
    store = str(tmp_path / "store.db")
    help_text = runner.invoke(app, ["serve", "--help"]).output
    assert "--api-key" in help_text and "--no-batching" in help_text and "keys" in help_text
    added = runner.invoke(app, ["serve", "keys", "add", "ci-bot", "--rate-limit", "30", "--store", store])
    assert added.exit_code == 0, added.output
    key = added.stdout.strip().splitlines()[0]
    assert key.startswith("oag-")
    listed = runner.invoke(app, ["serve", "keys", "list", "--store", store])
    assert "ci-bot" in listed.output and "30/min" in listed.output and key not in listed.output
    assert runner.invoke(app, ["serve", "keys", "revoke", "ci-bot", "--store", store]).exit_code == 0
    assert "revoked" in runner.invoke(app, ["serve", "keys", "list", "--store", store]).output
    again = runner.invoke(app, ["serve", "keys", "revoke", "ci-bot", "--store", store])
    assert again.exit_code != 0 and "keys list" in str(again.exception)
    refused = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--model", "fake", "--store", store])
    assert refused.exit_code != 0 and "keys add" in str(refused.exception)


@pytest.mark.slow
def test_dspy_uses_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network for litellm's price list
    dspy = pytest.importorskip("dspy")
    with ServerThread(make_app(tmp_path)) as srv:
        lm = dspy.LM("openai/fake", api_base=srv.base_url + "/v1", api_key="unused", cache=False, num_retries=0)
        out = lm("ping from dspy")
        assert out == ["echo: ping from dspy"]
        import httpx

        traces = httpx.get(srv.base_url + "/api/traces", params={"q": "dspy"}).json()["traces"]
        assert traces and traces[0]["step"] == "/v1/chat/completions"


def _gated_streaming_backend():  # type: ignore[no-untyped-def]
    """Reports "Hello" live, then finishes only once the client has read it (or after 20 s)."""
    import threading

    from openautoglm.backends.base import Completion
    from openautoglm.backends.fake import FakeBackend

    class Gated(FakeBackend):
        client_saw_first_chunk = threading.Event()

        def generate(self, requests):  # type: ignore[no-untyped-def]
            (req,) = requests
            assert req.on_text is not None, "a streamed chat must pass a live text callback"
            req.on_text(0, "Hello")
            waited = self.client_saw_first_chunk.wait(timeout=20)
            req.on_text(0, ", world" if waited else ", too late")
            return [Completion(texts=["Hello, world!" if waited else "Hello, too late!"], finish_reasons=["stop"],
                               prompt_tokens=3, completion_tokens=4)]

    return Gated()


def test_chat_streams_text_while_the_backend_is_still_generating(tmp_path: Path) -> None:
    import httpx

    backend = _gated_streaming_backend()
    with ServerThread(make_app(tmp_path, backend=backend, micro_batching=False)) as srv:
        body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        pieces = []
        with httpx.stream("POST", srv.base_url + "/v1/chat/completions", json=body, timeout=30) as resp:
            assert resp.status_code == 200
            for line in resp.iter_lines():
                if not line.startswith("data: {"):
                    continue
                delta = __import__("json").loads(line[6:])["choices"][0]["delta"]
                if delta.get("content"):
                    pieces.append(delta["content"])
                    backend.client_saw_first_chunk.set()  # only a live stream gets here before the end
    # the first chunk reached the client while generate() was still waiting for it; the "!"
    # that only the finished completion has comes after the live pieces
    assert pieces == ["Hello", ", world", "!"]
