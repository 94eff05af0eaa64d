"""Rows as the chunks of a stream (``POST /batch/stream/{t}``): JSON, JSON Lines, CSV or Arrow IPC, maybe gzipped.

An ``Encoder`` turns the Arrow record batches of a scan (rows as stored: ``json`` cells hold JSON text, timestamps
are ``timestamp[us, UTC]``, dates ``date32``) into bytes: ``begin()`` once, ``encode(batch)`` per batch, ``end()``
once; the concatenation is one document of the format.

- ``jsonl`` (``application/x-ndjson``): one object per line, rendered like ``GET /rows`` renders rows (orjson with
  ``OPT_UTC_Z``): JSON cells spliced in raw, timestamps ``2024-01-02T03:04:05Z`` (``.ffffff`` when not whole
  seconds), dates ``2024-01-02``, NaN as null. Built by polars in Rust: on 100k rows of 7 columns it takes 46 ms
  where orjson over ``to_pylist`` rows takes 630 ms.
- ``json`` (``application/json``): the same objects as one array, ``[`` ... ``,`` ... ``]``.
- ``csv`` (``text/csv``): ``pyarrow.csv``, the header in ``begin()`` when asked for (so 0 rows still have one);
  JSON cells as their text, nested values as JSON text.
- ``arrow`` (``application/vnd.apache.arrow.stream``): the IPC stream format, schema message, one record batch
  message per batch, end-of-stream marker.
- ``compression="gzip"``: one gzip member; every chunk is sync-flushed so a client decodes it as it arrives.

Example::

    enc = encoder("jsonl", batch.schema, json_columns=["meta"])
    body = enc.begin() + enc.encode(batch) + enc.end()
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from typing import Literal, Protocol, get_args

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from engine.errors import InvalidRequest

StreamFormat = Literal["json", "jsonl", "csv", "arrow"]
Compression = Literal["gzip"]
FORMATS: tuple[str, ...] = get_args(StreamFormat)
COMPRESSIONS: tuple[str, ...] = get_args(Compression)

_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # the IPC stream's end: continuation marker, length 0
# orjson's OPT_UTC_Z rendering: microseconds only when there are some, then "Z".
_TIMESTAMP = "%Y-%m-%dT%H:%M:%S%.6fZ"
_WHOLE_SECOND = ".000000Z"


class Encoder(Protocol):
    """One stream's encoder: call ``begin()``, ``encode(batch)`` for each batch, then ``end()``, in that order."""

    media_type: str
    content_encoding: str | None

    def begin(self) -> bytes: ...

    def encode(self, batch: pa.RecordBatch) -> bytes: ...

    def end(self) -> bytes: ...


def encoder(
    fmt: str,
    schema: pa.Schema,
    *,
    json_columns: Sequence[str] = (),
    include_headers: bool = True,
    compression: str | None = None,
) -> Encoder:
    """The encoder of ``fmt`` for batches of ``schema``; ``json_columns`` hold JSON text (spliced raw into JSON).

    >>> enc = encoder("json", pa.schema([("a", pa.int64())]))
    >>> enc.begin() + enc.encode(pa.record_batch({"a": [1, 2]})) + enc.end()
    b'[{"a":1},{"a":2}]'
    """
    if fmt not in FORMATS:
        raise InvalidRequest(f"format '{fmt}' is not a stream format; use one of {', '.join(FORMATS)}", field="format")
    if compression is not None and compression not in COMPRESSIONS:
        raise InvalidRequest(f"compression '{compression}' is not supported; use gzip or none", field="compression")
    missing = [c for c in json_columns if c not in schema.names]
    if missing:
        raise InvalidRequest(f"json column '{missing[0]}' is not a column of the stream", field="json_columns")
    plain: Encoder
    if fmt == "jsonl":
        plain = _JsonLines(schema, json_columns)
    elif fmt == "json":
        plain = _JsonArray(schema, json_columns)
    elif fmt == "csv":
        plain = _Csv(schema, include_headers)
    else:
        plain = _ArrowStream(schema)
    return _Gzip(plain) if compression == "gzip" else plain


def ndjson(batch: pa.RecordBatch, json_columns: Sequence[str] = ()) -> bytes:
    """The rows of ``batch`` as JSON lines rendered like ``GET /rows`` (each ends with ``\\n``, none holds one);
    also what JSON and JSONL exports write.

    >>> ndjson(pa.record_batch({"a": [1], "j": ['{"x": [1]}']}), ["j"])
    b'{"a":1,"j":{"x": [1]}}\\n'
    """
    return _render(batch, _Rendering(batch.schema, json_columns))


# -- JSON ------------------------------------------------------------------------------------------------------------
class _Rendering:
    """The polars expressions that render a schema's rows, built once per stream."""

    def __init__(self, schema: pa.Schema, json_columns: Sequence[str]) -> None:
        raw = frozenset(json_columns)
        self.prepare = [_prepared(field, field.name in raw) for field in schema]
        # Without JSON cells polars writes the lines itself (twice as fast as building them from pieces).
        self.line = _line(schema.names, raw) if raw else None


def _prepared(field: pa.Field, is_json: bool) -> pl.Expr:
    column = pl.col(field.name)
    if is_json:
        # Outside its strings, valid JSON may hold line breaks (as whitespace); inside them it cannot. A space in
        # their place keeps one row per line.
        return column.str.replace_all(r"[\r\n]", " ")
    if pa.types.is_timestamp(field.type):
        if field.type.tz is not None:
            column = column.dt.convert_time_zone("UTC")
        return column.dt.to_string(_TIMESTAMP).str.replace(_WHOLE_SECOND, "Z", literal=True)
    return column


def _line(names: Sequence[str], raw: frozenset[str]) -> pl.Expr:
    """A row's JSON line: runs of ordinary columns encoded by polars (an object, its braces cut off) and JSON cells
    as they are, joined in column order."""
    pieces: list[pl.Expr] = []
    run: list[str] = []
    for name in [*names, None]:
        if name is not None and name not in raw:
            run.append(name)
            continue
        if run:
            pieces.append(pl.struct(run).struct.json_encode().str.strip_prefix("{").str.strip_suffix("}"))
            run = []
        if name is not None:
            key = orjson.dumps(name).decode() + ":"
            pieces.append(pl.concat_str([pl.lit(key), pl.col(name).fill_null("null")]))
    return pl.concat_str([pl.lit("{"), pl.concat_str(pieces, separator=","), pl.lit("}\n")])


def _render(batch: pa.RecordBatch, rendering: _Rendering) -> bytes:
    if not batch.num_rows:
        return b""
    frame = pl.from_arrow(batch).select(rendering.prepare)  # type: ignore[union-attr]  # a batch gives a DataFrame
    if rendering.line is None:
        buffer = io.BytesIO()
        frame.write_ndjson(buffer)
        return buffer.getvalue()
    return _concatenated(frame.select(rendering.line).to_series().to_arrow())


def _concatenated(values: pa.Array) -> bytes:
    """The text of every value of a string array, end to end: one slice of its data buffer."""
    values = values.cast(pa.large_string())
    _, offsets, data = values.buffers()
    ends = memoryview(offsets).cast("q")  # int64 offsets: a large_string's
    return memoryview(data)[ends[values.offset] : ends[values.offset + len(values)]].tobytes()


class _JsonLines:
    media_type = "application/x-ndjson"
    content_encoding: str | None = None

    def __init__(self, schema: pa.Schema, json_columns: Sequence[str]) -> None:
        self._rendering = _Rendering(schema, json_columns)

    def begin(self) -> bytes:
        return b""

    def encode(self, batch: pa.RecordBatch) -> bytes:
        return _render(batch, self._rendering)

    def end(self) -> bytes:
        return b""


class _JsonArray:
    media_type = "application/json"
    content_encoding: str | None = None

    def __init__(self, schema: pa.Schema, json_columns: Sequence[str]) -> None:
        self._rendering = _Rendering(schema, json_columns)
        self._first = True

    def begin(self) -> bytes:
        return b"["

    def encode(self, batch: pa.RecordBatch) -> bytes:
        lines = _render(batch, self._rendering)
        if not lines:
            return b""
        # No line holds a raw line break, so the breaks between rows are exactly where the commas go.
        rows = lines[:-1].replace(b"\n", b",")
        if self._first:
            self._first = False
            return rows
        return b"," + rows

    def end(self) -> bytes:
        return b"]"


# -- CSV -------------------------------------------------------------------------------------------------------------
class _Csv:
    media_type = "text/csv"
    content_encoding: str | None = None

    def __init__(self, schema: pa.Schema, include_headers: bool) -> None:
        self._names = schema.names
        self._header = include_headers
        self._nested = [i for i, field in enumerate(schema) if pa.types.is_nested(field.type)]

    def begin(self) -> bytes:
        if not self._header:
            return b""
        header = pa.RecordBatch.from_pylist([], schema=pa.schema([(n, pa.string()) for n in self._names]))
        return _csv(header, include_header=True)

    def encode(self, batch: pa.RecordBatch) -> bytes:
        if not batch.num_rows:
            return b""
        for i in self._nested:  # pyarrow's CSV writer takes no lists or structs
            batch = batch.set_column(i, batch.schema.field(i).with_type(pa.string()), _json_text(batch.column(i)))
        return _csv(batch, include_header=False)

    def end(self) -> bytes:
        return b""


def _csv(batch: pa.RecordBatch, *, include_header: bool) -> bytes:
    buffer = io.BytesIO()
    pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=include_header))
    return buffer.getvalue()


def _json_text(values: pa.Array) -> pa.Array:
    """Nested values as JSON text (null stays null), encoded by polars."""
    value = pl.col("v")
    text = pl.struct(value).struct.json_encode().str.strip_prefix('{"v":').str.strip_suffix("}")
    frame = pl.DataFrame({"v": pl.from_arrow(values)})
    return frame.select(pl.when(value.is_not_null()).then(text)).to_series().to_arrow().cast(pa.string())


# -- Arrow IPC -------------------------------------------------------------------------------------------------------
class _ArrowStream:
    """The IPC stream format written message by message. ``pa.ipc.new_stream`` writes its schema only with the
    first batch, so ``begin()`` could not send it; these messages are byte for byte what that writer writes."""

    media_type = "application/vnd.apache.arrow.stream"
    content_encoding: str | None = None

    def __init__(self, schema: pa.Schema) -> None:
        self._schema = schema

    def begin(self) -> bytes:
        return self._schema.serialize().to_pybytes()

    def encode(self, batch: pa.RecordBatch) -> bytes:
        if not batch.num_rows:
            return b""
        return batch.serialize().to_pybytes()

    def end(self) -> bytes:
        return _END_OF_STREAM


# -- gzip ------------------------------------------------------------------------------------------------------------
class _Gzip:
    """Another encoder's chunks as one gzip member, each chunk sync-flushed: a client can decode every chunk as it
    arrives (a chunk of rows ends in whole rows), and the whole body gunzips to the plain encoding."""

    content_encoding: str | None = "gzip"

    def __init__(self, plain: Encoder) -> None:
        self._plain = plain
        self.media_type = plain.media_type
        self._gzip = zlib.compressobj(wbits=31)  # 31: a gzip header and trailer around the deflate data

    def begin(self) -> bytes:
        return self._chunk(self._plain.begin())

    def encode(self, batch: pa.RecordBatch) -> bytes:
        return self._chunk(self._plain.encode(batch))

    def end(self) -> bytes:
        return self._gzip.compress(self._plain.end()) + self._gzip.flush(zlib.Z_FINISH)

    def _chunk(self, data: bytes) -> bytes:
        if not data:  # an empty sync flush would still cost 5 bytes
            return b""
        return self._gzip.compress(data) + self._gzip.flush(zlib.Z_SYNC_FLUSH)


__all__ = ["COMPRESSIONS", "FORMATS", "Compression", "Encoder", "StreamFormat", "encoder", "ndjson"]
