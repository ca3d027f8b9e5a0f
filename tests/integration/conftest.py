"""Integration tests on the real embedded model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def local_backend():
    from openautoglm.backends.local import LocalBackend

    backend = LocalBackend()
    yield backend
    backend.close()
