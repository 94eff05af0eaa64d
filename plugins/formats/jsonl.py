"""JSON Lines: one JSON object per line, read in chunks of whole lines with pyarrow's JSON reader
(``pyarrow.json.read_json``, C++), written with polars' ``write_ndjson`` (Rust).

The chunks are cut here, at the last line break of each ``CHUNK_BYTES`` read, rather than by
``pyarrow.json.open_json``: pyarrow names a bad row only within its block, and counting the lines of each chunk
(``bytes.count``) is what lets a malformed or mistyped line be named by its number. Types: inferred per chunk and
kept consistent across chunks by ``GrowingSchema`` (or fixed by ``options["schema"]``, a ``pyarrow.Schema``).
Memory: one chunk and its batch, plus at most one line longer than a chunk.

Example::

    for batch in JsonlFormat().read(open("events.jsonl", "rb"), {}, batch_size=1000): ...
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.json as pajson

from engine.errors import SourceError
from engine.model.types import json_fields
from engine.registry import Format, hookimpl
from engine.transfer import encode
from plugins.formats._common import GrowingSchema, Options, check_batch_size, first_failing, rebatch

NAME = "jsonl"
CHUNK_BYTES = 1 << 20
BOM = b"\xef\xbb\xbf"


class JsonlFormat:
    media_type: str = "application/x-ndjson"
    extensions: tuple[str, ...] = (".jsonl", ".ndjson")
    seekable: bool = False

    def __init__(self, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.chunk_bytes = chunk_bytes

    def read(self, source: BinaryIO, options: Mapping[str, Any], batch_size: int) -> Iterator[pa.RecordBatch]:
        check_batch_size(NAME, batch_size)
        schema = Options(NAME, options, ("schema",)).schema()
        return rebatch(_read(source, schema, self.chunk_bytes), batch_size)

    def write(
        self, batches: Iterable[pa.RecordBatch], schema: pa.Schema, sink: BinaryIO, options: Mapping[str, Any]
    ) -> None:
        Options(NAME, options, ())
        for batch in batches:
            if batch.num_rows:
                sink.write(ndjson(batch))


def ndjson(batch: pa.RecordBatch) -> bytes:
    """The rows of ``batch`` as JSON lines (each ends with a line break; none has one inside); fields marked as
    JSON text (``engine.model.types.json_fields``) are written as their JSON values."""
    return encode.ndjson(batch, json_fields(batch.schema))


def chunks(source: BinaryIO, size: int) -> Iterator[tuple[int, bytes]]:
    """``(number of the first line, whole lines)`` of about ``size`` bytes each, a UTF-8 BOM dropped."""
    line, rest, first = 1, b"", True
    while block := source.read(size):
        if first:
            block, first = block.removeprefix(BOM), False
        data = rest + block if rest else block
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # a line longer than a chunk: read on until it ends
            rest = data
            continue
        yield line, data[:cut]
        line += data.count(b"\n", 0, cut)
        rest = data[cut:]
    if rest.strip():
        yield line, rest


def _read(source: BinaryIO, fixed: pa.Schema | None, chunk_bytes: int) -> Iterator[pa.RecordBatch]:
    schema = GrowingSchema(NAME, fixed)
    for line, chunk in chunks(source, chunk_bytes):
        table = _parse(chunk, line, fixed)
        for batch in table.to_batches():
            yield schema.fit(batch, line, "line")
            line += batch.num_rows  # only a guide past blank lines: fit names lines of a chunk's first batch


def _parse(chunk: bytes, first_line: int, fixed: pa.Schema | None) -> pa.Table:
    try:
        return _arrow(chunk, fixed)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise _locate(chunk, first_line, fixed, exc) from None


def _arrow(data: bytes, fixed: pa.Schema | None) -> pa.Table:
    return pajson.read_json(
        io.BytesIO(data),
        read_options=pajson.ReadOptions(use_threads=False, block_size=max(len(data), 1 << 16)),
        parse_options=pajson.ParseOptions(explicit_schema=fixed, unexpected_field_behavior="infer"),
    )


def _locate(chunk: bytes, first_line: int, fixed: pa.Schema | None, exc: Exception) -> SourceError:
    """The first line of ``chunk`` that makes it fail (error path only: log2(lines) parses)."""
    lines = chunk.split(b"\n")

    def fails(k: int) -> bool:
        try:
            _arrow(b"\n".join(lines[:k]), fixed)
            return False
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return True

    k = first_failing(len(lines), fails)
    try:
        _arrow(lines[k - 1], fixed)
        problem = str(exc)  # the line is fine alone: its type differs from the lines before it
    except (pa.ArrowInvalid, pa.ArrowTypeError) as alone:
        problem = str(alone)
    return SourceError(NAME, _plain(problem), line=first_line + k - 1)


def _plain(message: str) -> str:
    """pyarrow's message without its block-relative row number."""
    return re.sub(r" in row \d+$", "", message.removeprefix("JSON parse error: ")).strip()


@hookimpl
def tessera_formats() -> Mapping[str, Format]:
    return {NAME: JsonlFormat()}


__all__ = ["JsonlFormat", "chunks", "ndjson"]
