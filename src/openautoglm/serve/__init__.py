"""The server: task/pipeline API, OpenAI-compatible API, metrics and web UI (``openautoglm serve``).

``import openautoglm.serve`` is cheap; FastAPI and the model load on first use::

    from openautoglm.serve import ServerConfig, create_app
    app = create_app(ServerConfig(model="local"))
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY = {
    "create_app": "openautoglm.serve.app",
    "ServerConfig": "openautoglm.serve.app",
    "create_openai_app": "openautoglm.serve.openai_api",
    "BatchingBackend": "openautoglm.serve.batching",
    "KeyStore": "openautoglm.serve.security",
    "Metrics": "openautoglm.serve.metrics",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
