"""``openautoglm sql``: a database that cannot be reached is a one-line error, not a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openautoglm.cli import app
from openautoglm.sql.database import DatabaseError

ENTRY = Path(sys.executable).parent / "openautoglm"


def unreachable_postgres() -> str:
    pytest.importorskip("psycopg")
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql://reader:s3cret@127.0.0.1:{port}/shop"


def test_ask_without_a_server_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = unreachable_postgres()
    proc = subprocess.run([str(ENTRY), "sql", "ask", "How many products?", "--db", url, "--model", "fake",
                           "--store", str(tmp_path / "s.db")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: cannot reach the database postgresql://reader:***@127.0.0.1")
    assert "Connection refused" in lines[0] and len(lines) <= 2 and "Traceback" not in proc.stderr
    assert "s3cret" not in proc.stderr


def test_chat_says_the_same(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sql", "chat", "--db", unreachable_postgres(), "--model", "fake",
                                      "--store", str(tmp_path / "s.db")], input="How many?\n")
    assert isinstance(result.exception, DatabaseError) and "cannot reach the database" in str(result.exception)
