"""JSON: one array of objects, read incrementally with ijson (its yajl2 C backend), written with polars.

ijson yields the array's elements one at a time as the bytes arrive, so memory holds one batch of records
(``batch_size`` dicts) and ijson's buffer, never the whole array. Each batch becomes Arrow with ``pyarrow.array``
(types inferred from the batch; ``GrowingSchema`` keeps them consistent across batches, ``options["schema"]``
fixes them). Numbers with a fraction are floats (``use_float``), not ``Decimal``.

Written as ``[`` + polars' JSON lines joined with commas + ``]``: a JSON line holds no raw line break (those in
strings are escaped), so joining the lines is a valid array.

Example::

    for batch in JsonFormat().read(open("people.json", "rb"), {}, batch_size=1000): ...
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import ijson
import pyarrow as pa

from engine.errors import SourceError
from engine.registry import Format, hookimpl
from plugins.formats._common import GrowingSchema, Options, check_batch_size, first_failing
from plugins.formats.jsonl import BOM, ndjson

NAME = "json"
_PEEK = 1 << 16


class JsonFormat:
    media_type: str = "application/json"
    extensions: tuple[str, ...] = (".json",)
    seekable: bool = False

    def read(self, source: BinaryIO, options: Mapping[str, Any], batch_size: int) -> Iterator[pa.RecordBatch]:
        check_batch_size(NAME, batch_size)
        schema = Options(NAME, options, ("schema",)).schema()
        return _read(source, schema, batch_size)

    def write(
        self, batches: Iterable[pa.RecordBatch], schema: pa.Schema, sink: BinaryIO, options: Mapping[str, Any]
    ) -> None:
        Options(NAME, options, ())
        sink.write(b"[")
        separator = b"\n"
        for batch in batches:
            if batch.num_rows:
                sink.write(separator)
                sink.write(ndjson(batch).rstrip(b"\n").replace(b"\n", b",\n"))
                separator = b",\n"
        sink.write(b"\n]\n" if separator != b"\n" else b"]\n")


class _Prefixed:
    """``source`` with the bytes already read from it put back in front (ijson reads with ``read(n)``)."""

    def __init__(self, head: bytes, source: BinaryIO) -> None:
        self.head, self.source = head, source

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = (self.head, b"") if n < 0 or n >= len(self.head) else (self.head[:n], self.head[n:])
            return out
        return self.source.read(n)


def _opened(source: BinaryIO) -> _Prefixed:
    """The source, checked to hold a JSON array (its first character, past a BOM and white space, is ``[``)."""
    head = source.read(_PEEK).removeprefix(BOM)
    start = head.lstrip()
    while not start and head:  # white space longer than a peek
        head = source.read(_PEEK)
        start = head.lstrip()
    if not start:
        raise SourceError(NAME, "the source is empty, not a JSON array")
    if start[:1] != b"[":
        shown = start[:1].decode(errors="replace")
        raise SourceError(NAME, f"the source is not a JSON array of objects (it starts with '{shown}')")
    return _Prefixed(start, source)


def _read(source: BinaryIO, fixed: pa.Schema | None, batch_size: int) -> Iterator[pa.RecordBatch]:
    schema = GrowingSchema(NAME, fixed)
    rows: list[dict[str, Any]] = []
    record = 0
    items = ijson.items(_opened(source), "item", use_float=True)
    while True:
        try:
            item = next(items, None)
        except ijson.JSONError as exc:
            raise SourceError(NAME, f"malformed JSON: {_plain(exc)}", record=record + 1) from None
        if item is None:
            break
        record += 1
        if not isinstance(item, dict):
            raise SourceError(NAME, f"the element is {type(item).__name__}, not an object", record=record)
        rows.append(item)
        if len(rows) == batch_size:
            yield schema.fit(_batch(rows, record - len(rows) + 1), record - len(rows) + 1, "record")
            rows = []
    if rows:
        yield schema.fit(_batch(rows, record - len(rows) + 1), record - len(rows) + 1, "record")


def _batch(rows: list[dict[str, Any]], first_record: int) -> pa.RecordBatch:
    try:
        return pa.RecordBatch.from_struct_array(pa.array(rows))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        k = first_failing(len(rows), lambda k: not _converts(rows[:k]))
        raise SourceError(
            NAME, f"a value's type differs from the records before it: {exc}", record=first_record + k - 1
        ) from None


def _converts(rows: list[dict[str, Any]]) -> bool:
    try:
        pa.array(rows)
        return True
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False


def _plain(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@hookimpl
def tessera_formats() -> Mapping[str, Format]:
    return {NAME: JsonFormat()}


__all__ = ["JsonFormat"]
