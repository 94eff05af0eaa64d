"""Chunk encoders for streams (``POST /batch/stream/{t}``): each record batch becomes one chunk of bytes.

- ``jsonl`` (``application/x-ndjson``): one object per row, written by Polars (``write_ndjson``: measured 30x
  faster here than orjson over ``to_pylist``); ``json`` columns, stored as JSON text, are spliced in as JSON, not
  as strings. Timestamps read ``2024-01-02T03:04:05.123+00:00`` (ISO-8601, Polars' form), dates ``2024-01-02``.
- ``json`` (``application/json``): the same objects as one array (``[`` ... ``]``; a newline only ever separates
  rows in NDJSON, since newlines in strings are escaped, so the array is the lines joined by commas).
- ``csv`` (``text/csv``): pyarrow's writer, the header in the first chunk when ``include_headers``.
- ``arrow`` (``application/vnd.apache.arrow.stream``): the Arrow IPC stream format, schema first.
- ``compression: gzip``: every chunk is compressed and flushed (``Z_SYNC_FLUSH``), so a client decodes rows as
  they arrive; ``end()`` finishes the gzip member.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from engine.errors import InvalidRequest

FORMATS = ("json", "jsonl", "csv", "arrow")
MEDIA_TYPES = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
    "arrow": "application/vnd.apache.arrow.stream",
}


class Encoder:
    """``begin()``, then ``encode(batch)`` per batch, then ``end()``: the response body is their concatenation."""

    def __init__(self, fmt: str, schema: pa.Schema, json_columns: Sequence[str], include_headers: bool) -> None:
        self.fmt = fmt
        self.schema = schema
        self.json_columns = [c for c in json_columns if c in schema.names]
        self.include_headers = include_headers
        self.media_type = MEDIA_TYPES[fmt]
        self.content_encoding: str | None = None
        self._rows = 0
        self._sink: _Chunks | None = None
        self._ipc: Any = None

    def begin(self) -> bytes:
        if self.fmt == "json":
            return b"["
        if self.fmt == "arrow":
            self._sink = _Chunks()
            self._ipc = pa.ipc.new_stream(self._sink, self.schema)
            return self._sink.take()
        return b""

    def encode(self, batch: pa.RecordBatch) -> bytes:
        first = self._rows == 0
        self._rows += batch.num_rows
        if self.fmt == "arrow":
            assert self._sink is not None
            self._ipc.write_batch(batch)
            return self._sink.take()
        if batch.num_rows == 0:
            return b""
        if self.fmt == "csv":
            out = io.BytesIO()
            pacsv.write_csv(batch, out, pacsv.WriteOptions(include_header=first and self.include_headers))
            return out.getvalue()
        lines = ndjson(batch, self.json_columns)
        if self.fmt == "jsonl":
            return lines
        return (b"" if first else b",") + lines.rstrip(b"\n").replace(b"\n", b",")

    def end(self) -> bytes:
        if self.fmt == "json":
            return b"]"
        if self.fmt == "arrow":
            assert self._sink is not None
            self._ipc.close()
            return self._sink.take()
        if self.fmt == "csv" and self._rows == 0 and self.include_headers:
            out = io.BytesIO()
            pacsv.write_csv(self.schema.empty_table(), out)
            return out.getvalue()
        return b""


class _Gzipped:
    """An encoder whose chunks are gzip, each flushed so it decodes on its own."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.media_type = inner.media_type
        self.content_encoding = "gzip"
        self._z = zlib.compressobj(6, zlib.DEFLATED, 31)

    def begin(self) -> bytes:
        return self._z.compress(self.inner.begin())

    def encode(self, batch: pa.RecordBatch) -> bytes:
        return self._z.compress(self.inner.encode(batch)) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def end(self) -> bytes:
        return self._z.compress(self.inner.end()) + self._z.flush(zlib.Z_FINISH)


def encoder(
    fmt: str,
    schema: pa.Schema,
    *,
    json_columns: Sequence[str] = (),
    include_headers: bool = True,
    compression: str | None = None,
) -> Encoder | _Gzipped:
    if fmt not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}", field="format")
    if compression not in (None, "gzip"):
        raise InvalidRequest(f"compression must be gzip (or absent), not {compression!r}", field="compression")
    inner = Encoder(fmt, schema, json_columns, include_headers)
    return _Gzipped(inner) if compression == "gzip" else inner


def ndjson(batch: pa.RecordBatch, json_columns: Sequence[str] = ()) -> bytes:
    """One JSON object per row, each ending in a newline; ``json_columns`` hold JSON text, written as JSON."""
    if not json_columns:
        return pl.from_arrow(batch).write_ndjson().encode()  # type: ignore[union-attr]
    others = [n for n in batch.schema.names if n not in json_columns]
    if others:
        frame = pl.from_arrow(batch.select(others))
        objects = frame.select(pl.struct(pl.all()).struct.json_encode()).to_series().to_arrow()  # type: ignore[union-attr]
        lines = pc.utf8_slice_codeunits(objects.cast(pa.string()), 0, -1)  # without the closing brace
        separator = ","
    else:
        lines = pa.array(["{"] * batch.num_rows, pa.string())
        separator = ""
    for name in json_columns:
        key = f"{separator}{orjson.dumps(name).decode()}:"
        lines = pc.binary_join_element_wise(lines, key, pc.fill_null(batch.column(name), "null"), "")
        separator = ","
    lines = pc.binary_join_element_wise(lines, "}\n", "")
    return _text(lines)


def _text(lines: pa.Array) -> bytes:
    """The characters of a string array without nulls, back to back."""
    lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    if not len(lines):
        return b""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]].tobytes()


class _Chunks:
    """A write-only file whose bytes are taken chunk by chunk (the IPC writer's sink)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


__all__ = ["FORMATS", "MEDIA_TYPES", "Encoder", "encoder", "ndjson"]
