from __future__ import annotations

import subprocess
import sys


def test_import_is_light_and_cli_registers():
    code = ("import sys, typer; import openautoglm.automl, openautoglm.automl.cli as c; "
            "app = typer.Typer(); c.register(app); "
            "heavy = [m for m in ('pandas', 'sklearn', 'lightgbm', 'optuna', 'torch') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
