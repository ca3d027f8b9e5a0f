from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / "../shared/data"


@pytest.fixture()
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("shared datasets (../shared/data) are not available")
    return SHARED.resolve()


@pytest.fixture()
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run pipelines with their SQLite store in a temporary project directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
