"""Real databases for the text-to-SQL tests: a SQLite shop file and a PostgreSQL server
started on loopback from Debian's postgresql package (``scripts/system-deps.sh``)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

SHOP_DDL = [
    "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price REAL)",
    "CREATE TABLE sales (id INTEGER PRIMARY KEY, product_id INTEGER REFERENCES products(id), year INTEGER, "
    "amount REAL)",
]
PRODUCTS = [(1, "Laptop", "Electronics", 900.0), (2, "Phone", "Electronics", 600.0), (3, "Desk", "Furniture", 250.0),
            (4, "Chair", "Furniture", 120.0), (5, "Novel", "Books", 15.0), (6, "Atlas", "Books", 40.0)]
SALES = [(1, 1, 2023, 1_500_000.0), (2, 2, 2023, 800_000.0), (3, 3, 2023, 300_000.0), (4, 4, 2022, 1_200_000.0),
         (5, 5, 2023, 90_000.0), (6, 6, 2022, 50_000.0), (7, 1, 2022, 700_000.0)]
REPO = Path(__file__).resolve().parents[2]
SPIDER = REPO.parent / "shared" / "data" / "spider"


def build_shop_sqlite(path: Path) -> Path:
    con = sqlite3.connect(path)
    for ddl in SHOP_DDL:
        con.execute(ddl)
    con.executemany("INSERT INTO products VALUES (?,?,?,?)", PRODUCTS)
    con.executemany("INSERT INTO sales VALUES (?,?,?,?)", SALES)
    con.commit()
    con.close()
    return path


@pytest.fixture()
def shop_db(tmp_path: Path) -> Path:
    return build_shop_sqlite(tmp_path / "shop.db")


@pytest.fixture(scope="session")
def spider_dir() -> Path:
    if not (SPIDER / "dev.json").is_file():
        pytest.skip(f"Spider data not found at {SPIDER}")
    return SPIDER


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway server: ``url`` of the shop database (as the superuser that
    created it, so checks can look behind the read-only layer) and ``root``, a folder
    the server process can read."""

    url: str
    root: Path


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server on 127.0.0.1 with the shop tables.

    Its data folder is not under pytest's tmp_path: pytest sessions started meanwhile
    (other test runs on the machine) delete all but the newest three of those, and a
    server whose data folder disappears shuts down mid-run."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries not found (run scripts/system-deps.sh)")
    root = Path(tempfile.mkdtemp(prefix="openautoglm-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: use Debian's postgres account
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "owner", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                    f"-p {port} -k {sock} -h 127.0.0.1 -c fsync=off", "start"], check=True, capture_output=True)
    import psycopg

    admin = f"postgresql://owner@127.0.0.1:{port}/postgres"
    for _ in range(50):
        try:
            with psycopg.connect(admin, autocommit=True) as con:
                con.execute("CREATE DATABASE shop")
            break
        except psycopg.OperationalError:
            time.sleep(0.2)
    with psycopg.connect(f"postgresql://owner@127.0.0.1:{port}/shop", autocommit=True) as con:
        con.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, "
                    "price DOUBLE PRECISION)")
        con.execute("CREATE TABLE sales (id INTEGER PRIMARY KEY, product_id INTEGER REFERENCES products(id), "
                    "year INTEGER, amount DOUBLE PRECISION)")
        con.execute("CREATE SEQUENCE order_numbers")  # nextval() is a write that a rollback does not undo
        with con.cursor() as cur:
            cur.executemany("INSERT INTO products VALUES (%s,%s,%s,%s)", PRODUCTS)
            cur.executemany("INSERT INTO sales VALUES (%s,%s,%s,%s)", SALES)
    try:
        yield PostgresServer(f"postgresql://owner@127.0.0.1:{port}/shop", root)
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def local_model() -> Iterator[object]:
    """The embedded model, loaded once for the SQL tests that run it (skipped where it is missing)."""
    from openautoglm.backends.registry import create_backend

    try:
        backend = create_backend("local")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"embedded model unavailable: {exc}")
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def byte_tokenizer():  # type: ignore[no-untyped-def]
    """One token per byte (+ EOS), for llguidance: a grammar's verdict cannot depend on how
    text was split (the grammar tests skip without llguidance)."""
    llguidance = pytest.importorskip("llguidance")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    return llguidance.LLTokenizer(tok.to_str(), eos_token=vocab["<|endoftext|>"])
