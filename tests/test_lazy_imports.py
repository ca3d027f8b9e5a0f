"""Package-level names stay the functions they document, whatever was imported before."""

from __future__ import annotations

import subprocess
import sys

import pytest

SAME_NAMED = ["profile", "clean", "balance", "drift", "llm_label"]


@pytest.mark.parametrize("name", SAME_NAMED)
def test_a_function_named_like_its_submodule_is_not_shadowed_by_importing_the_submodule(name: str) -> None:
    # a fresh interpreter: the submodule is imported first (as any library code may do), then the name
    code = (
        f"import importlib, openautoglm.data.{name}\n"
        f"from openautoglm.data import {name}\n"
        f"assert callable({name}), type({name})\n"
        f"assert importlib.import_module('openautoglm.data.{name}').__name__ == 'openautoglm.data.{name}'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
