"""Parquet: read with ``pyarrow.parquet.ParquetFile.iter_batches``, written with ``pyarrow.parquet.ParquetWriter``.

Reading needs a seekable source (the footer, at the end, says where everything is): an import spools a
non-seekable download to a temporary file first (``seekable = True`` says so). Memory: one row group's pages of
the columns read, and one batch. Read option: ``columns`` (a list of names; all by default). Write options:
``compression`` ("zstd"), ``row_group_rows`` (131,072: batches are gathered to row groups of this many rows, so
small batches do not make a file of tiny row groups, and memory stays bounded).

Example::

    for batch in ParquetFormat().read(open("t.parquet", "rb"), {}, batch_size=10_000): ...
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import SourceError
from engine.registry import Format, hookimpl
from plugins.formats._common import Options, check_batch_size, rebatch

NAME = "parquet"
COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "brotli", "none")
ROW_GROUP_ROWS = 128 * 1024


class ParquetFormat:
    media_type: str = "application/vnd.apache.parquet"
    extensions: tuple[str, ...] = (".parquet", ".pq")
    seekable: bool = True

    def read(self, source: BinaryIO, options: Mapping[str, Any], batch_size: int) -> Iterator[pa.RecordBatch]:
        check_batch_size(NAME, batch_size)
        opts = Options(NAME, options, ("columns",))
        columns = opts.strings("columns", []) if "columns" in opts.values else None
        parquet = _open(source)
        missing = [c for c in columns or () if c not in parquet.schema_arrow.names]
        if missing:
            raise opts.fail(
                "columns",
                f"names '{missing[0]}', which the file does not have ({', '.join(parquet.schema_arrow.names)})",
            )
        return _read(parquet, columns, batch_size)

    def write(
        self, batches: Iterable[pa.RecordBatch], schema: pa.Schema, sink: BinaryIO, options: Mapping[str, Any]
    ) -> None:
        opts = Options(NAME, options, ("compression", "row_group_rows"))
        compression = opts.choice("compression", "zstd", COMPRESSIONS)
        rows = opts.positive("row_group_rows", ROW_GROUP_ROWS)
        with pq.ParquetWriter(sink, schema, compression=compression) as writer:
            for group in rebatch(batches, rows):
                writer.write_batch(group, row_group_size=rows)


def _open(source: BinaryIO) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(NAME, f"not a Parquet file, or a truncated one: {exc}") from exc


def _read(parquet: pq.ParquetFile, columns: list[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
    rows = 0
    try:
        for batch in parquet.iter_batches(batch_size=batch_size, columns=columns, use_threads=False):
            rows += batch.num_rows
            yield batch
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(NAME, f"the file is damaged after {rows} rows: {exc}", record=rows + 1) from exc


@hookimpl
def tessera_formats() -> Mapping[str, Format]:
    return {NAME: ParquetFormat()}


__all__ = ["ParquetFormat"]
