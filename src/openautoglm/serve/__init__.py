"""The server: task/pipeline API, OpenAI-compatible API, metrics and web UI (``openautoglm serve``).

``import openautoglm.serve`` is cheap; FastAPI and the model load on first use::

    from openautoglm.serve import ServerConfig, create_app
    app = create_app(ServerConfig(model="local"))
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "create_app": "openautoglm.serve.app",
    "ServerConfig": "openautoglm.serve.app",
    "create_openai_app": "openautoglm.serve.openai_api",
    "BatchingBackend": "openautoglm.serve.batching",
    "KeyStore": "openautoglm.serve.security",
    "Metrics": "openautoglm.serve.metrics",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'openautoglm.serve' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
