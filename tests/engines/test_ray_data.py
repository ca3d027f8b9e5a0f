"""The data toolkit with ``--engine ray`` on the loopback cluster: per-row steps on workers,
dedup as one global pass on the driver (duplicates across chunks found), the same output
and audit as in-process; Ray Data inputs (Parquet) streaming to the actor pool."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import cli_env

pytestmark = pytest.mark.ray
pytest.importorskip("ray")


def _rows() -> list[dict[str, Any]]:
    base = [f"review {i}: the {w} film had a story about {w} people and {i} songs" for i, w in
            enumerate(["quiet", "loud", "sad", "funny", "long", "short", "odd", "kind"] * 4)]
    rows = [{"id": i, "text": t} for i, t in enumerate(base)]
    rows[9]["text"] = "mail me at someone@example.com about the film"
    rows[12]["text"] = "The  café was good\u200b"  # whitespace and a zero-width space
    rows[14]["text"] = "   "  # empty
    rows[17]["text"] = rows[2]["text"].upper()  # an exact duplicate (casefolded) in another chunk
    rows[26]["text"] = rows[5]["text"] + " indeed"  # a near duplicate three chunks later
    rows[30]["text"] = "CafÃ© owners"  # mojibake
    return rows


def _clean(tmp_path: Path, name: str, **options: Any) -> tuple[list[str], list[dict[str, Any]], dict[str, Any]]:
    from openautoglm.data.clean import clean

    out = tmp_path / f"{name}.jsonl"
    result = clean(_rows(), out, **options)
    audit = [json.loads(line) for line in (tmp_path / f"{name}.jsonl.audit.jsonl").read_text().splitlines()]
    return out.read_text(encoding="utf-8").splitlines(), audit, result.summary()


def test_clean_on_ray_dedups_across_chunks_and_matches_in_process(ray_address: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    clean_module = importlib.import_module("openautoglm.data.clean")

    monkeypatch.setattr(clean_module, "BATCH", 8)  # 4 chunks: duplicates sit in other chunks than their originals
    local = _clean(tmp_path, "local")
    remote = _clean(tmp_path, "ray", engine="ray", workers=2)
    assert remote[0] == local[0]
    assert remote[1] == local[1]
    assert {k: v for k, v in remote[2].items() if k not in ("output", "audit")} == \
        {k: v for k, v in local[2].items() if k not in ("output", "audit")}
    drops = {(e["row"], e["reason"], e.get("of_row")) for e in remote[1] if e["action"] == "drop"}
    assert (17, "exact_duplicate", 2) in drops and (26, "near_duplicate", 5) in drops and (14, "empty", None) in drops
    assert remote[2]["pii"] == {"email": 1} and remote[2]["actions"]["repair:mojibake"] == 1


def test_clean_on_ray_with_a_fixed_shingle_unit_signs_every_chunk_on_workers(ray_address: str, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    clean_module = importlib.import_module("openautoglm.data.clean")
    dedup = importlib.import_module("openautoglm.data.dedup")

    monkeypatch.setattr(clean_module, "BATCH", 8)
    local = _clean(tmp_path, "local", shingle_unit="word")
    driver_signed: list[int] = []
    original = dedup.NearDuplicateIndex.add
    monkeypatch.setattr(dedup.NearDuplicateIndex, "add",
                        lambda self, texts, **kw: driver_signed.append(len(texts)) or original(self, texts, **kw))
    remote = _clean(tmp_path, "ray", shingle_unit="word", engine="ray", workers=2)
    assert remote[:2] == local[:2]
    assert driver_signed == []  # every signature came from a worker; the driver only joined them


def test_data_clean_cli_with_engine_ray(ray_address: str, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    args = [sys.executable, "-m", "openautoglm.cli", "data", "clean", str(src), "--no-progress"]
    local = subprocess.run([*args, "-o", str(tmp_path / "a.jsonl")], capture_output=True, text=True, timeout=300,
                           env=cli_env())
    assert local.returncode == 0, local.stderr
    remote = subprocess.run([*args, "-o", str(tmp_path / "b.jsonl"), "--engine", "ray", "--address", ray_address,
                             "--workers", "2"], capture_output=True, text=True, timeout=300, env=cli_env())
    assert remote.returncode == 0, remote.stderr
    assert (tmp_path / "b.jsonl").read_text() == (tmp_path / "a.jsonl").read_text()
    assert (tmp_path / "b.jsonl.audit.jsonl").read_text() == (tmp_path / "a.jsonl.audit.jsonl").read_text()
    refused = subprocess.run([*args, "-o", str(tmp_path / "c.jsonl"), "--workers", "2"], capture_output=True,
                             text=True, timeout=120, env=cli_env())
    assert refused.returncode != 0 and "need --engine ray" in refused.stderr


def test_profile_on_ray_matches_in_process(ray_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile_module = importlib.import_module("openautoglm.data.profile")
    from openautoglm.data.profile import profile

    monkeypatch.setattr(profile_module, "BATCH", 8)
    rows = [{**r, "label": "a" if r["id"] % 3 else "b"} for r in _rows()]
    local = profile(rows, label_column="label")
    remote = profile(rows, label_column="label", engine="ray", workers=2)
    assert remote.stats == local.stats and remote.examples == local.examples and remote.lengths == local.lengths
    s = remote.stats
    assert (s["rows"], s["empty"], s["exact_duplicates"], s["near_duplicates"]) == (32, 1, 1, 1)
    assert remote.examples["near_duplicate"][0]["row"] == 26 and remote.examples["near_duplicate"][0]["of_row"] == 5
    assert s["pii"] == {"email": 1} and s["encoding"]["mojibake_rows"] == 1


def test_data_profile_cli_with_engine_ray_reads_parquet_through_the_toolkit(ray_address: str, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(_rows()), src)
    args = [sys.executable, "-m", "openautoglm.cli", "data", "profile", str(src), "--no-progress", "--no-lang"]
    local = subprocess.run([*args, "-o", str(tmp_path / "a")], capture_output=True, text=True, timeout=300,
                           env=cli_env())
    assert local.returncode == 0, local.stderr
    remote = subprocess.run([*args, "-o", str(tmp_path / "b"), "--engine", "ray", "--address", ray_address],
                            capture_output=True, text=True, timeout=300, env=cli_env())
    assert remote.returncode == 0, remote.stderr
    a, b = (json.loads((tmp_path / d / "profile.json").read_text()) for d in ("a", "b"))
    assert a == b and a["stats"]["rows"] == 32


def test_a_data_worker_that_cannot_start_stops_the_job_once(ray_address: str) -> None:
    from openautoglm.core.engines.ray_engine import WorkerStartError
    from openautoglm.core.engines.ray_map import chunk_pool
    from openautoglm.data.clean import CleanConfig
    from openautoglm.data.distributed import CleanWorker

    broken = CleanConfig(keep_languages=["en"], lang_engine="no-such-engine")  # fails where the worker builds it
    with pytest.raises(WorkerStartError, match="no-such-engine") as info:
        with chunk_pool(CleanWorker, (broken,), workers=2) as pool:
            list(pool.map([([0], ["text"], None)]))
    assert "could not start" in str(info.value)


def test_a_data_worker_that_dies_is_replaced_and_the_results_stay_in_order(ray_address: str, tmp_path: Path) -> None:
    import os

    from openautoglm.core.engines.ray_map import chunk_pool

    marker = str(tmp_path / "died")

    def factory(marker: str) -> Any:  # local: Ray pickles it by value
        def work(chunk: int) -> tuple[int, int]:
            import os

            if chunk == 3 and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)  # the actor process dies mid-chunk
            return chunk, os.getpid()

        return work

    with chunk_pool(factory, (marker,), workers=2) as pool:
        out = list(pool.map(range(8)))
    assert [c for c, _ in out] == list(range(8))
    assert os.path.exists(marker) and len({pid for _, pid in out}) >= 2
