"""``POST /v1/embeddings`` (issue 19 §4) through the official ``openai`` client against the
full server on 127.0.0.1: the project's MiniLM in OpenAI's shape (string or list input,
float or base64 vectors, usage), and the input limits as clear 400/413 errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from .conftest import ServerThread, make_app

openai = pytest.importorskip("openai")
pytest.importorskip("sentence_transformers")
np = pytest.importorskip("numpy")

from openautoglm.serve import openai_embeddings as emb  # noqa: E402

MODEL = emb.EMBEDDING_MODEL


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from openautoglm.embeddings import minilm_path

        minilm_path()
    except Exception as exc:  # noqa: BLE001 - the package is optional
        pytest.skip(f"MiniLM not installed: {exc}")
    app = make_app(tmp_path_factory.mktemp("emb"))
    try:
        with ServerThread(app) as srv:
            yield openai.OpenAI(base_url=srv.base_url + "/v1", api_key="unused", max_retries=0)
    finally:
        app.state.server.close()


def test_string_and_list_inputs_in_openai_shape(client: Any) -> None:
    one = client.embeddings.create(model=MODEL, input="A great film.", encoding_format="float")
    assert one.object == "list" and one.model == MODEL and len(one.data) == 1
    vec = np.array(one.data[0].embedding)
    assert vec.shape == (emb.DIMENSIONS,) and abs(np.linalg.norm(vec) - 1) < 1e-4
    assert one.usage.prompt_tokens == one.usage.total_tokens > 2

    texts = ["An excellent movie.", "The stock market fell sharply today.", "A great film."]
    many = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [d.index for d in many.data] == [0, 1, 2] and all(d.object == "embedding" for d in many.data)
    vecs = np.array([d.embedding for d in many.data])
    assert np.allclose(vecs[2], vec, atol=1e-5)
    assert vecs[0] @ vec > vecs[1] @ vec + 0.2  # meaning, not noise
    assert many.usage.prompt_tokens > one.usage.prompt_tokens


def test_base64_equals_float(client: Any) -> None:
    texts = ["first text", "a second, longer text to embed"]
    floats = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    # the client asks for base64 by default and decodes it to floats itself
    default = client.embeddings.create(model=MODEL, input=texts)
    raw = client.embeddings.with_raw_response.create(model=MODEL, input=texts, encoding_format="base64")
    body = raw.http_response.json()
    assert isinstance(body["data"][0]["embedding"], str)
    for i, item in enumerate(floats.data):
        assert np.allclose(default.data[i].embedding, item.embedding, atol=0)
        decoded = np.frombuffer(__import__("base64").b64decode(body["data"][i]["embedding"]), dtype="<f4")
        assert np.allclose(decoded, item.embedding, atol=0)


def test_aliases_of_the_model_name(client: Any) -> None:
    for name in ("minilm", "sentence-transformers/all-MiniLM-L6-v2"):
        assert client.embeddings.create(model=name, input="x y", encoding_format="float").model == MODEL


def test_limits_and_bad_requests_are_clear_client_errors(client: Any) -> None:
    def refused(status: int, **body: Any) -> str:
        with pytest.raises(openai.APIStatusError) as caught:
            client.embeddings.create(**{"model": MODEL, "encoding_format": "float", **body})
        assert caught.value.status_code == status, caught.value
        return str(caught.value.body)

    assert "too_many_inputs" in refused(400, input=["x"] * (emb.MAX_INPUTS + 1))
    assert "input_too_large" in refused(413, input="a" * (emb.MAX_INPUT_CHARS + 1))
    big = ["b" * emb.MAX_INPUT_CHARS] * (emb.MAX_TOTAL_CHARS // emb.MAX_INPUT_CHARS + 1)
    assert "characters in all" in refused(413, input=big[: emb.MAX_INPUTS])
    assert "non-empty" in refused(400, input=[])
    assert "empty string" in refused(400, input=["ok", ""])
    assert "model_not_found" in refused(404, input="x", model="text-embedding-3-small")
    assert "384" in refused(400, input="x", dimensions=128)
    refused(400, input=[[1, 2, 3]])  # token arrays: text only


def test_usage_counts_in_metrics(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    with TestClient(make_app(tmp_path)) as c:
        assert c.post("/v1/embeddings", json={"model": MODEL, "input": ["hello there"]}).status_code == 200
        metrics = c.get("/metrics").text
    assert 'endpoint="embeddings"' in metrics
