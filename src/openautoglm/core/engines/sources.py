"""Input records as a stream, in input order, for runs whose driver must not hold them all.

* A local CSV/TSV/JSONL/JSON file streams through :func:`~openautoglm.core.records.iter_records`:
  the same records, strict checks and error messages as the in-process engine, so a run can
  move between engines and resume.  A local folder streams its files in name order.
* Local Parquet (a file or a folder of files) streams here, row group by row group, with
  pyarrow.  Not through Ray Data: its read tasks each need a free CPU, and an actor pool
  that takes every CPU of the cluster (``--workers`` = CPUs) would wait for them forever
  (measured with Ray 2.60, also with ``num_cpus=0`` read tasks); and a local path does not
  exist on the cluster's other machines.
* A URI (``s3://``, ``gs://``, ``abfs://``, ``hdfs://``, ``local://``...) is read by Ray Data
  on the cluster and arrives here block by block, in order (``preserve_order``).  Leave a
  CPU free for its read tasks (``--workers`` below the cluster's CPUs).  CSV/TSV columns are
  read as text, as the local reader does; JSONL lines are parsed with :mod:`json`, so values
  keep their JSON types.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from ...errors import InputDataError
from ..records import FORMATS, _no_records, detect_format, iter_records

#: records per block handed from Ray Data (or a Parquet reader) to the driver
BLOCK_ROWS = 1024


def is_remote(path: str | Path) -> bool:
    return "://" in str(path)


def stream_records(path: str | Path, *, encoding: str = "utf-8", limit: int | None = None,
                   allow_empty: bool = False, via_ray: bool | None = None) -> Iterator[dict[str, Any]]:
    """Yield the records of ``path`` in order (see the module docstring for who reads what).

    ``via_ray``: read with Ray Data (default: for URIs only).  Ray must be connected before
    the first record is asked for.
    """
    text = str(path)
    fmt = _format(text)
    if via_ray is None:
        via_ray = is_remote(text)
    local = Path(text)
    if not via_ray and not local.is_dir() and fmt != "parquet":
        yield from iter_records(text, encoding=encoding, limit=limit, allow_empty=allow_empty)
        return
    count = 0
    for record in (_ray_records(text, fmt, encoding) if via_ray else _local_records(local, fmt, encoding)):
        if limit is not None and count >= limit:
            return
        count += 1
        yield record
    if count == 0 and not allow_empty and limit != 0:
        raise _no_records(Path(text), fmt)


def _format(text: str) -> str:
    """The format from the suffix; a local folder takes its files' (one format), and a URI
    without a suffix names a folder of Parquet files."""
    if is_remote(text):
        remote = PurePosixPath(text.split("://", 1)[-1])
        return detect_format(remote) if remote.suffix else "parquet"
    local = Path(text)
    if local.is_dir():
        found = {FORMATS.get(f.suffix.lower()) for f in local.iterdir() if f.is_file() and not f.name.startswith(".")}
        found.discard(None)
        if len(found) != 1 or "json" in found:
            raise InputDataError(f"{text}: a folder input must hold files of one format (.parquet, .csv, .tsv or "
                                 f".jsonl); found {sorted(f for f in found if f) or 'none'}",
                                 hint="point at one file, or a folder of files of one format")
        return str(found.pop())
    return detect_format(local)


def _local_records(path: Path, fmt: str, encoding: str) -> Iterator[dict[str, Any]]:
    """A local Parquet file, or a folder's files in name order, streamed."""
    files = sorted(f for f in path.iterdir() if f.is_file() and FORMATS.get(f.suffix.lower()) == fmt) \
        if path.is_dir() else [path]
    for file in files:
        if fmt != "parquet":
            yield from iter_records(file, encoding=encoding, allow_empty=True)
            continue
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InputDataError(f"{file}: reading Parquet needs pyarrow", hint="pip install pyarrow") from None
        try:
            reader = pq.ParquetFile(file)
        except (OSError, ValueError) as exc:
            raise InputDataError(f"{file}: cannot read it as Parquet: {exc}", hint="check the file") from None
        for batch in reader.iter_batches(batch_size=BLOCK_ROWS):
            yield from batch.to_pylist()


def _ray_records(uri: str, fmt: str, encoding: str) -> Iterator[dict[str, Any]]:
    from .ray_engine import import_ray

    import_ray()
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    try:
        if fmt == "parquet":
            ds = ray.data.read_parquet(uri)
        elif fmt == "jsonl":
            # lines, parsed here: read_json(lines=True) goes through pandas, which turns the
            # string "007" into the number 7
            ds = ray.data.read_text(uri, encoding=encoding)
            for batch in ds.iter_batches(batch_size=BLOCK_ROWS, batch_format="pyarrow", prefetch_batches=2):
                yield from (_json_record(uri, line) for line in batch.column("text").to_pylist())
            return
        elif fmt in ("csv", "tsv"):
            import pyarrow as pa
            from pyarrow import csv as pacsv

            delimiter = "," if fmt == "csv" else "\t"
            columns = _header(uri, delimiter, encoding)
            ds = ray.data.read_csv(uri, parse_options=pacsv.ParseOptions(delimiter=delimiter,
                                                                          quote_char='"' if fmt == "csv" else False),
                                   read_options=pacsv.ReadOptions(encoding=encoding),
                                   convert_options=pacsv.ConvertOptions(
                                       column_types={c: pa.string() for c in columns}, strings_can_be_null=False))
        else:
            raise InputDataError(f"{uri}: Ray Data reads .csv, .tsv, .jsonl and .parquet inputs, not {fmt}",
                                 hint="convert it to JSONL, or read it from a local path")
        for batch in ds.iter_batches(batch_size=BLOCK_ROWS, batch_format="pyarrow", prefetch_batches=2):
            yield from batch.to_pylist()
    except (FileNotFoundError, OSError) as exc:
        raise InputDataError(f"{uri}: cannot read it with Ray Data: {exc}", hint="check the path") from None


def _json_record(uri: str, line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise InputDataError(f"{uri}: a line is not valid JSON ({exc}): {line[:80]!r}",
                             hint="each line must be one JSON object") from None
    if not isinstance(record, dict):
        raise InputDataError(f"{uri}: a line is not a JSON object: {line[:80]!r}",
                             hint="each line must be one JSON object") from None
    return record


def _header(uri: str, delimiter: str, encoding: str) -> list[str]:
    """The column names of a CSV/TSV file (read with pyarrow's filesystems, like Ray Data)."""
    from pyarrow import fs as pafs

    filesystem, path = pafs.FileSystem.from_uri(uri) if is_remote(uri) else (pafs.LocalFileSystem(),
                                                                             str(Path(uri).resolve()))
    with filesystem.open_input_stream(path) as stream:
        first = io.TextIOWrapper(stream, encoding="utf-8-sig" if encoding.startswith("utf") else encoding).readline()
    header = next(csv.reader([first], delimiter=delimiter), [])
    if not header:
        raise InputDataError(f"{uri}: empty file or no header row", hint="the first line must name the columns")
    return [h.strip() for h in header]
