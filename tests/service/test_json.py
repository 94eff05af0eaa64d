"""The body parser on its own (no server): strict JSON, exact big integers, and the scan that decides when to
parse twice."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from engine.errors import MalformedJson
from service.json import JSONResponse, _has_long_integer, loads

LONG_INTEGER_CASES = [
    (b'{"a": 1234567890123456789}', True),
    (b'{"a":1234567890123456789}', True),
    (b"[1,-9223372036854775809]", True),
    (b'{"a":\n 12345678901234567890123}', True),
    (b"12345678901234567890", True),
    (b'"id 12345678901234567890"', True),  # in a string: a harmless false positive
    (b'{"a": 0.1234567890123456789}', False),
    (b'{"a": 0.000012345678901234567890}', False),
    (b'{"a": 1234567890123456789.5}', False),
    (b'{"a": 1234567890123456789e5}', False),
    (b'{"a": 1234567890123456789E5}', False),
    (b"[123456789012345678]", False),
    (b'{"a": "x"}', False),
]


@pytest.mark.parametrize(("body", "expected"), LONG_INTEGER_CASES)
def test_long_integer_scan(body: bytes, expected: bool) -> None:
    assert _has_long_integer(body) is expected


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b'{"a": -9223372036854775809}', {"a": -(2**63) - 1}),
        (b'{"a": 1180591620717411303424, "b": 0.5}', {"a": 2**70, "b": 0.5}),
        (b'{"a": 18446744073709551615}', {"a": 2**64 - 1}),
        (b'{"a": [1, 2.5, "x", null, true]}', {"a": [1, 2.5, "x", None, True]}),
    ],
)
def test_integers_are_exact(body: bytes, value: Any) -> None:
    assert loads(body) == value


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty"),
        (b" \n", "empty"),
        (b"NaN", "Malformed JSON"),
        (b'{"a": Infinity}', "Malformed JSON"),
        (b'{"a": -Infinity}', "Malformed JSON"),
        (b'{"a": 1e999}', "Malformed JSON"),
        (b"[" * 100_000, "nested too deeply"),
        (b"[" * 1100 + b"]" * 1100, "nested too deeply"),
        (b'{"a": 1,}', "Malformed JSON"),
        (b"\xff", "Malformed JSON"),
    ],
)
def test_malformed(body: bytes, says: str) -> None:
    with pytest.raises(MalformedJson, match=says):
        loads(body)


def test_nested_big_integer() -> None:
    value = loads(b"[" * 100 + b"12345678901234567890" + b"]" * 100)
    for _ in range(100):
        value = value[0]
    assert value == 12345678901234567890


def test_exact_parser_depth_limit_is_reported() -> None:
    """The stdlib parser (used only for big integers) stops near Python's recursion limit, below orjson's 1024."""
    with pytest.raises(MalformedJson, match="nested too deeply"):
        loads(b"[" * 1020 + b"12345678901234567890" + b"]" * 1020)


def test_response_rendering() -> None:
    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    body = JSONResponse({"t": when, "naive": when.replace(tzinfo=None), "j": orjson.Fragment(b'{"k":[1]}')}).body
    assert orjson.loads(body) == {"t": "2024-05-01T12:00:00Z", "naive": "2024-05-01T12:00:00Z", "j": {"k": [1]}}
    assert orjson.loads(JSONResponse({"odd": object()}).body)["odd"].startswith("<object")
