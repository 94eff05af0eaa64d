"""The messages between a sandbox worker and its parent: framing and column codecs.

Both sides import this module, so it uses only the standard library and orjson (a worker runs under an
address-space limit and never imports pyarrow). Nothing here unpickles: a worker may be running hostile code, and
what it sends back is parsed as JSON and raw numeric buffers only.

A message is ``<u32 header length><u32 body length><header JSON><body>``. The header's ``"buffers"`` lists the
lengths of the byte buffers concatenated in the body. A column of ``n`` values is ``{"kind", "n", "mask"}`` plus
buffers: ``f64`` / ``i64`` (little-endian numbers; ``ts`` is ``i64`` microseconds since the epoch, UTC) and ``bool``
(one byte per value) carry their values in one buffer, and a validity mask (one byte per value, 0 for null) in a
second buffer when ``mask`` is true; ``list`` carries a JSON array of the values (``None`` for null).
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Sequence
from typing import Any

import orjson

PREFIX = struct.Struct("<II")
MAX_HEADER = 1 << 20
MAX_MESSAGE = 1 << 31  # a body larger than this is a protocol error, not a message
NUMERIC = {"f64": "d", "i64": "q", "ts": "q"}
_LITTLE = sys.byteorder == "little"


class ProtocolError(Exception):
    """A message that does not follow the format (a worker that misbehaves, or a torn pipe)."""


def pack(header: dict[str, Any], buffers: Sequence[bytes | memoryview] = ()) -> list[bytes | memoryview]:
    """The parts of one message, to be written in order."""
    sizes = [memoryview(b).nbytes for b in buffers]
    head = orjson.dumps({**header, "buffers": sizes})
    body = sum(sizes)
    return [PREFIX.pack(len(head), body), head, *buffers]


def unpack_header(prefix: bytes, head: bytes) -> tuple[dict[str, Any], int]:
    """The header and the body's length, checked against the caps."""
    head_len, body_len = PREFIX.unpack(prefix)
    if head_len != len(head) or body_len > MAX_MESSAGE:
        raise ProtocolError("bad message lengths")
    header = orjson.loads(head)
    if not isinstance(header, dict) or not isinstance(header.get("buffers"), list):
        raise ProtocolError("a message header must be an object with buffers")
    if sum(header["buffers"]) != body_len or any(type(n) is not int or n < 0 for n in header["buffers"]):
        raise ProtocolError("buffer lengths do not add up to the body")
    return header, body_len


def split(header: dict[str, Any], body: bytes | memoryview) -> list[memoryview]:
    view, out, at = memoryview(body), [], 0
    for n in header["buffers"]:
        out.append(view[at : at + n])
        at += n
    return out


# -- columns of Python values (the worker's side) ------------------------------------------------------------------
def decode_column(desc: dict[str, Any], buffers: list[memoryview]) -> list[Any]:
    """A column's values as a Python list (``ts`` as microseconds; the caller converts)."""
    kind, n = desc["kind"], desc["n"]
    if kind == "list":
        values = orjson.loads(buffers.pop(0))
        if not isinstance(values, list) or len(values) != n:
            raise ProtocolError("a list column must be a JSON array of n values")
        return values
    data = buffers.pop(0)
    if kind == "bool":
        values = [b != 0 for b in bytes(data)]
    elif kind in NUMERIC:
        arr = array(NUMERIC[kind])
        arr.frombytes(data)
        if not _LITTLE:
            arr.byteswap()
        values = arr.tolist()
    else:
        raise ProtocolError(f"unknown column kind {kind!r}")
    if len(values) != n:
        raise ProtocolError("a column's buffer does not hold n values")
    if desc.get("mask"):
        mask = bytes(buffers.pop(0))
        values = [v if m else None for v, m in zip(values, mask, strict=True)]
    return values


def encode_numbers(kind: str, values: list[Any], nulls: bool = True) -> tuple[dict[str, Any], list[bytes]]:
    """A list of numbers (or None) as an ``f64`` / ``i64`` / ``ts`` column; raises TypeError / OverflowError for a
    value that does not fit (the caller then finds which). ``nulls=False`` promises there is no None."""
    n = len(values)
    if nulls and None in values:
        mask = bytes(v is not None for v in values)
        zero = 0.0 if kind == "f64" else 0
        values = [zero if v is None else v for v in values]
    else:
        mask = b""
    arr = array(NUMERIC[kind], values)
    if not _LITTLE:
        arr.byteswap()
    buffers = [arr.tobytes(), *([mask] if mask else [])]
    return {"kind": kind, "n": n, "mask": bool(mask)}, buffers


def encode_bools(values: list[Any]) -> tuple[dict[str, Any], list[bytes]]:
    mask = bytes(v is not None for v in values) if None in values else b""
    data = bytes(v is True for v in values)
    return {"kind": "bool", "n": len(values), "mask": bool(mask)}, [data, *([mask] if mask else [])]


def encode_list(values: list[Any]) -> tuple[dict[str, Any], list[bytes]]:
    return {"kind": "list", "n": len(values)}, [orjson.dumps(values)]
