"""The Python client's imports, exports and streams (``Table.import_file``, ``Table.export``, ``Table.stream``)
and its DataFrame conversions, over ``engine.transfer``.

In-process calls run the same code as the ``data_import`` and ``data_export`` jobs, without the job queue: an
import is still one transaction with its result, an export still one table version written atomically.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from engine.errors import InvalidRequest
from engine.model.batches import rebatch
from engine.registry import Format
from engine.transfer import exporter, importer

if TYPE_CHECKING:
    from engine.client.table import Table


class _Call:
    """What an import expects of its job, for a direct call: no progress to report, never cancelled."""

    def __init__(self) -> None:
        self.job_id = f"client-{uuid.uuid4().hex}"
        self.logs: list[str] = []

    def progress(self, pct: float, message: str | None = None) -> None:
        pass

    def log(self, line: str) -> None:
        self.logs.append(line)

    def check_cancelled(self) -> None:
        pass


def format_for(formats: Mapping[str, Format], name: str | None, path: str) -> str:
    """``name``, or the format whose extension ``path`` ends with (a ``.gz`` or ``.zip`` suffix aside)."""
    if name is not None:
        exporter.format_of(formats, name)
        return name
    base = path.lower().removesuffix(".gz").removesuffix(".zip")
    for fmt_name, fmt in formats.items():
        if any(base.endswith(ext) for ext in fmt.extensions):
            return fmt_name
    raise InvalidRequest(
        f"format: cannot tell the format of {path!r} from its name; pass format= ({', '.join(sorted(formats))})",
        field="format",
    )


def import_file(
    table: Table,
    source: str | os.PathLike[str],
    format: str | None,
    *,
    mapping: Mapping[str, str] | None,
    options: Mapping[str, Any] | None,
    validation_rules: Mapping[str, Any] | None,
    on_error: str,
    batch_size: int,
) -> dict[str, Any]:
    db = table.db
    formats = db.registry.formats()
    text = os.fspath(source)
    local = None if "://" in text else os.path.abspath(text)
    if local is not None and not os.path.isfile(local):
        raise InvalidRequest(f"source: no file {text!r}", field="source")
    parameters = {
        "table_name": table.name,
        "format": format_for(formats, format, text),
        "source_url": text if local is None else f"file://{local}",
        "mapping": dict(mapping or {}),
        "options": dict(options or {}),
        "validation_rules": dict(validation_rules or {}),
        "on_error": on_error,
        "batch_size": batch_size,
    }
    request = importer.check(parameters, formats)
    return importer.run(db, request, _Call(), local_file=local)


def export(
    table: Table,
    path: str | os.PathLike[str],
    format: str | None,
    *,
    columns: Sequence[str] | None,
    where: Any,
    order_by: Sequence[Any] | None,
    limit: int | None,
    options: Mapping[str, Any] | None,
    compress: bool,
) -> dict[str, Any]:
    formats = table.db.registry.formats()
    target = os.fspath(path)
    fmt_name = format_for(formats, format, target)
    start = time.perf_counter()
    scan = table.scan(columns, where, order_by, limit)
    rows = exporter.write_file(scan, fmt_name, formats[fmt_name], target, options=options, compress=compress)
    return {
        "rows_exported": rows,
        "file_size_bytes": os.path.getsize(target),
        "path": target,
        "format": fmt_name,
        "duration_seconds": round(time.perf_counter() - start, 3),
    }


def stream(
    table: Table, columns: Sequence[str] | None, where: Any, order_by: Sequence[Any] | None, chunk_size: int
) -> Iterator[pa.RecordBatch]:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InvalidRequest(f"chunk_size must be a positive integer, not {chunk_size!r}", field="chunk_size")
    scan = table.scan(columns, where, order_by)

    def batches() -> Iterator[pa.RecordBatch]:
        with scan:
            yield from rebatch(scan, chunk_size)

    return batches()


def as_arrow(rows: Any) -> Any:
    """A pandas or Polars DataFrame (or anything with ``__arrow_c_stream__``) as an Arrow table; other values as
    they are (dicts, lists of dicts, Arrow tables)."""
    if isinstance(rows, pa.Table | dict | list):
        return rows
    if isinstance(rows, pa.RecordBatch):
        return pa.Table.from_batches([rows])
    module = type(rows).__module__.split(".")[0]
    if module == "pandas":
        return pa.Table.from_pandas(rows, preserve_index=False)
    if hasattr(rows, "__arrow_c_stream__"):
        return pa.table(rows)
    return rows


__all__ = ["as_arrow", "export", "format_for", "import_file", "stream"]
