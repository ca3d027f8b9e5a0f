"""The layer contracts in pyproject.toml ([tool.importlinter]) hold, and can fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (the dev extra has it)")


def _lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_package_keeps_its_layers_and_has_no_cycles_between_folders() -> None:
    result = _lint(ROOT, ROOT / "src")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Layers point down KEPT" in result.stdout and "No import cycles between folders KEPT" in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("core/labels.py", "from ..sql import safety", "openautoglm.core is not allowed to import openautoglm.sql"),
    ("data/text.py", "from ..sql import safety", "openautoglm.data is not allowed to import openautoglm.sql"),
    ("store/calls.py", "from ..backends import base", "openautoglm.store is not allowed to import openautoglm.backends"),
])
def test_a_wrong_import_breaks_the_contracts(tmp_path: Path, module: str, line: str, broken: str) -> None:
    shutil.copytree(ROOT / "src" / "openautoglm", tmp_path / "src" / "openautoglm",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "static", "templates"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "openautoglm" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # deliberately wrong\n", encoding="utf-8")
    result = _lint(tmp_path, tmp_path / "src")
    assert result.returncode != 0
    assert broken in result.stdout, result.stdout[-3000:]
