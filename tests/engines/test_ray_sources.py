"""Ray Data inputs (Parquet files and folders, CSV/TSV/JSONL and ``local://`` URIs read on the
cluster, in order) streaming to the actor pool; ``Pipeline.run_batch(engine="ray")``; the
driver's progress bar with records/s and failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from openautoglm.core.engines.sources import stream_records
from openautoglm.core.records import iter_records
from openautoglm.errors import InputDataError

from .conftest import FAKE_PIPELINE, cli_env

pytestmark = pytest.mark.ray
pytest.importorskip("ray")


def _records(n: int) -> list[dict[str, Any]]:
    return [{"id": str(i), "text": f"{'positive' if i % 2 else 'negative'} film, \"quoted\", number {i}"}
            for i in range(n)]


def test_ray_data_reads_csv_tsv_and_jsonl_like_the_local_reader(ray_address: str, tmp_path: Path) -> None:
    rows = _records(2500)  # more than one block (1024 rows)
    csv_path, tsv_path, jsonl_path = tmp_path / "a.csv", tmp_path / "a.tsv", tmp_path / "a.jsonl"
    import csv

    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "text"])
        writer.writeheader()
        writer.writerows(rows)
    tsv_path.write_text("id\ttext\n" + "".join(f"{r['id']}\t{r['text']}\n" for r in rows), encoding="utf-8")
    jsonl_path.write_text("".join(json.dumps({"n": i, **r}) + "\n" for i, r in enumerate(rows)), encoding="utf-8")
    for path in (csv_path, tsv_path):
        assert list(stream_records(path, via_ray=True)) == list(iter_records(path)) == rows  # text stays text
    assert list(stream_records(f"local://{jsonl_path}")) == list(iter_records(jsonl_path))  # a URI: Ray Data
    assert list(stream_records(csv_path, via_ray=True, limit=3)) == rows[:3]


def test_a_parquet_folder_streams_in_order(ray_address: str, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _records(3000)
    folder = tmp_path / "parts"
    folder.mkdir()
    for k in range(3):
        pq.write_table(pa.Table.from_pylist(rows[k * 1000:(k + 1) * 1000]), folder / f"part-{k}.parquet")
    assert list(stream_records(folder / "part-0.parquet")) == rows[:1000]  # here, with pyarrow
    assert list(stream_records(folder)) == rows  # a folder of files, in name order
    assert list(stream_records(folder, via_ray=True)) == rows  # by Ray Data, in the same order
    assert list(stream_records(f"local://{folder}")) == rows  # a URI: Ray Data


def test_missing_and_empty_inputs_through_ray_data(ray_address: str, tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="cannot read it with Ray Data"):
        list(stream_records(f"local://{tmp_path}/nothing.parquet"))
    empty = tmp_path / "e.jsonl"
    empty.write_text("", encoding="utf-8")
    assert list(stream_records(f"local://{empty}", allow_empty=True)) == []


def test_run_on_a_parquet_input_with_engine_ray(ray_address: str, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _records(40)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    yaml = tmp_path / "p.yaml"
    yaml.write_text(FAKE_PIPELINE.format(model="fake"), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    res = subprocess.run([sys.executable, "-m", "openautoglm.cli", "run", str(yaml), "-i", str(tmp_path / "in.parquet"),
                          "-o", str(out), "--store", str(tmp_path / "s.db"), "--engine", "ray", "--address",
                          ray_address, "--workers", "2", "--batch-size", "8", "--no-progress"],
                         capture_output=True, text=True, timeout=300, env=cli_env())
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["input"] for r in lines] == rows
    assert all(r["output"]["label"] in ("positive", "negative") for r in lines)


def test_pipeline_run_batch_with_engine_ray_and_its_progress_bar(ray_address: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from openautoglm import Pipeline, Task

    task = Task(name="s", template="Review: {text}", labels=["positive", "negative"])
    pipe = Pipeline(model="fake", task=task, store=False)
    data: list[dict[str, Any]] = [{"text": r["text"]} for r in _records(30)]
    data[4] = {"review": "no text column"}  # fails alone
    local = pipe.run_batch(data, batch_size=4)
    remote = pipe.run_batch(data, batch_size=4, engine="ray", workers=2, progress=True)
    assert [dict(r) for r in remote] == [dict(r) for r in local]
    assert "error" in remote[4] and "error" not in remote[3]
    err = capsys.readouterr().err
    assert "rec/s" in err and "1 failed" in err and "30/30" in err


def test_a_uri_input_leaves_a_cpu_to_ray_data(ray_address: str, tmp_path: Path) -> None:
    """Ray Data's read tasks need a free CPU: a pool taking them all would wait forever."""
    rows = _records(30)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    yaml = tmp_path / "p.yaml"
    yaml.write_text(FAKE_PIPELINE.format(model="fake"), encoding="utf-8")
    base = [sys.executable, "-m", "openautoglm.cli", "run", str(yaml), "-i", f"local://{src}", "--store",
            str(tmp_path / "s.db"), "--engine", "ray", "--address", ray_address, "--no-progress"]
    full = subprocess.run([*base, "-o", str(tmp_path / "a.jsonl"), "--workers", "2"], capture_output=True, text=True,
                          timeout=300, env=cli_env())
    assert full.returncode != 0 and "must stay free for Ray Data" in full.stderr
    ok = subprocess.run([*base, "-o", str(tmp_path / "b.jsonl")], capture_output=True, text=True, timeout=300,
                        env=cli_env())
    assert ok.returncode == 0, ok.stderr
    assert [json.loads(line)["input"] for line in (tmp_path / "b.jsonl").read_text().splitlines()] == rows
