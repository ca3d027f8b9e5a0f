"""Input records as a stream, in input order, for runs whose driver must not hold them all.

* A local CSV/TSV/JSONL/JSON file streams through :func:`~openautoglm.core.records.iter_records`:
  the same records, strict checks and error messages as the in-process engine, so a run can
  move between engines and resume.
* Parquet (a file or a folder of files) and any URI Ray Data can read (``s3://``, ``gs://``,
  ``abfs://``, ``hdfs://``, ``local://``...) are read by Ray Data on the cluster and arrive here
  block by block, in order (``preserve_order``).  CSV/TSV columns are read as text, as the
  local reader does; JSONL values keep their JSON types.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from ...errors import InputDataError
from ..records import _no_records, detect_format, iter_records

#: records per block handed from Ray Data to the driver
BLOCK_ROWS = 1024


def is_remote(path: str | Path) -> bool:
    return "://" in str(path)


def stream_records(path: str | Path, *, encoding: str = "utf-8", limit: int | None = None,
                   allow_empty: bool = False, via_ray: bool | None = None) -> Iterator[dict[str, Any]]:
    """Yield the records of ``path`` in order (see the module docstring for who reads what).

    ``via_ray``: read with Ray Data (default: for Parquet and URIs).  Ray must be connected
    before the first record is asked for.
    """
    text = str(path)
    fmt = detect_format(PurePosixPath(text.split("://", 1)[-1]) if is_remote(text) else Path(text))
    if via_ray is None:
        via_ray = fmt == "parquet" or is_remote(text)
    if not via_ray:
        yield from iter_records(text, encoding=encoding, limit=limit, allow_empty=allow_empty)
        return
    count = 0
    for record in _ray_records(text, fmt, encoding):
        if limit is not None and count >= limit:
            return
        count += 1
        yield record
    if count == 0 and not allow_empty and limit != 0:
        raise _no_records(Path(text), fmt)


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
            ds = ray.data.read_json(uri, lines=True)
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
