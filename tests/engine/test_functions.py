"""Built-in functions, steps and evaluation with cell errors: values against Python's own. Pure, no Ray."""

from __future__ import annotations

import datetime as dt
import json
import math
import operator
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import CellError, InvalidExpression, InvalidValue
from engine.expr.compiler import compile_expression
from engine.expr.core import ArgumentError, Compiled, StepCall, StepResult
from engine.expr.evaluate import Evaluated, evaluate
from engine.model.coerce import INT_MAX, INT_MIN
from engine.model.schema import build_schema
from engine.model.types import OnError, arrow_type
from engine.registry import current

SCHEMA = build_schema(
    "t",
    {
        "a": "int",
        "b": "int",
        "c": "int",
        "f": "float",
        "g": "float",
        "s": "string",
        "u": "string",
        "p": "string",
        "ok": "bool",
        "at": "timestamp",
        "later": "timestamp",
        "day": "date",
        "pic": "image",
        "j": "json",
    },
    None,
)
ARROW = pa.schema([SCHEMA.arrow_schema().field(name) for name in SCHEMA.names])
UTC = dt.UTC


def rows(**columns: list[Any]) -> list[dict[str, Any]]:
    """Column-wise test data as rows: ``rows(a=[1, 2], b=[3, 4])``."""
    n = len(next(iter(columns.values())))
    return [{name: values[i] for name, values in columns.items()} for i in range(n)]


def run(text: str, data: list[dict[str, Any]], on_error: OnError = "null", **kwargs: Any) -> Evaluated:
    compiled = compile_expression(text, SCHEMA, **kwargs)
    return evaluate(compiled, pa.Table.from_pylist(data, schema=ARROW), on_error)


def values(text: str, data: list[dict[str, Any]]) -> list[Any]:
    result = run(text, data)
    assert result.errors == 0, result.first_error
    return result.values.to_pylist()


def py(function: Callable[..., Any], *columns: list[Any]) -> list[Any]:
    """Python's results row by row; a None argument gives None, as in Arrow."""
    return [None if None in row else function(*row) for row in zip(*columns, strict=True)]


INTS = [-7, 0, 3, None, 2**62, -(2**63)]
SMALL = [-7, 0, 3, None, 12]
FLOATS = [2.5, -2.5, 0.5, 3.7, -0.0, None, 1e-3, 123.456, -1e15]
POSITIVE = [0.5, 1.0, 2.0, None, 1e300, 1e-300]
TEXTS = ["Hello", "  pad\t", "", None, "héllo wörld", "ABC"]
MOMENTS = [
    dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC),
    dt.datetime(1999, 12, 31, tzinfo=UTC),
    None,
    dt.datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC),
]
DAYS = [dt.date(2024, 2, 29), dt.date(1970, 1, 1), None, dt.date(2024, 3, 10)]


def least(*xs: Any) -> Any:
    present = [x for x in xs if x is not None]
    return min(present) if present else None


def greatest(*xs: Any) -> Any:
    present = [x for x in xs if x is not None]
    return max(present) if present else None


def first(*xs: Any) -> Any:
    return next((x for x in xs if x is not None), None)


CASES: list[tuple[str, list[dict[str, Any]], list[Any]]] = [
    # numbers
    ("abs(a)", rows(a=INTS[:-1]), py(abs, INTS[:-1])),
    ("abs(f)", rows(f=FLOATS), py(abs, FLOATS)),
    ("round(f)", rows(f=FLOATS), py(round, FLOATS)),  # halves to even, an int
    ("round(a)", rows(a=INTS), INTS),
    (
        "round(f, 1)",
        rows(f=[2.5, -1.25, 123.456, None, 1e300, 7.0]),
        py(lambda x: round(x, 1), [2.5, -1.25, 123.456, None, 1e300, 7.0]),
    ),
    ("round(f, 2)", rows(f=[0.125, 0.375, -0.625]), [0.12, 0.38, -0.62]),
    ("round(f, -1)", rows(f=[15.0, 25.0, 14.9, -35.0]), py(lambda x: round(x, -1), [15.0, 25.0, 14.9, -35.0])),
    ("round(f, 400)", rows(f=[1.5, 1e300]), [1.5, 1e300]),
    ("round(f, -400)", rows(f=[1.5, -1e300]), [round(1.5, -400), round(-1e300, -400)]),
    ("round(a, -1)", rows(a=[15, 25, -35, None, 4]), py(lambda x: round(x, -1), [15, 25, -35, None, 4])),
    ("round(a, 2)", rows(a=[15, None]), [15, None]),
    ("round(a, -20)", rows(a=[INT_MAX, INT_MIN, 5]), [0, 0, 0]),
    ("floor(f)", rows(f=FLOATS), py(math.floor, FLOATS)),
    ("ceil(f)", rows(f=FLOATS), py(math.ceil, FLOATS)),
    ("floor(a) + ceil(a)", rows(a=SMALL), py(lambda x: 2 * x, SMALL)),
    ("sqrt(f)", rows(f=[*POSITIVE, 0.0]), py(math.sqrt, [*POSITIVE, 0.0])),
    ("sqrt(a)", rows(a=[4, 2, None]), py(math.sqrt, [4, 2, None])),
    ("log(f)", rows(f=POSITIVE), py(math.log, POSITIVE)),
    ("log(f, 2)", rows(f=POSITIVE), py(lambda x: math.log(x, 2), POSITIVE)),
    ("log(a, b)", rows(a=[8, 100, 5], b=[2, 10, None]), py(math.log, [8, 100, 5], [2, 10, None])),
    ("log10(f)", rows(f=POSITIVE), py(math.log10, POSITIVE)),
    ("pow(a, 2)", rows(a=SMALL), py(lambda x: pow(x, 2), SMALL)),
    ("pow(a, b)", rows(a=[2, 4, None], b=[3, -1, 2]), py(pow, [2, 4, None], [3, -1, 2])),
    ("pow(f, 0.5)", rows(f=[4.0, 2.0]), [2.0, 2.0**0.5]),
    ("min(a, b)", rows(a=[1, 5, None, None], b=[2, -1, 3, None]), [1, -1, 3, None]),  # nulls skipped
    ("max(a, b, c)", rows(a=[1, None, 7], b=[2, None, None], c=[0, None, 9]), [2, None, 9]),
    ("min(a, f)", rows(a=[1, 3], f=[1.5, 2.5]), [1.0, 2.5]),
    ("max(s, u)", rows(s=["b", None, "a"], u=["a", "z", None]), ["b", "z", "a"]),
    ("min(at, later)", rows(at=MOMENTS[:2], later=MOMENTS[2:]), [MOMENTS[0], MOMENTS[1]]),
    ("max(day, day)", rows(day=DAYS), DAYS),
    ("coalesce(a, b, 0)", rows(a=[1, None, None], b=[2, 3, None]), [1, 3, 0]),
    ("coalesce(s, 'none')", rows(s=["x", None]), ["x", "none"]),
    ("coalesce(a, f)", rows(a=[1, None], f=[0.5, 0.5]), [1.0, 0.5]),
    # text
    ("lower(s)", rows(s=TEXTS), py(str.lower, TEXTS)),
    ("upper(s)", rows(s=TEXTS), py(str.upper, TEXTS)),
    ("strip(s)", rows(s=TEXTS), py(str.strip, TEXTS)),
    ("strip(s, 'Hl')", rows(s=TEXTS), py(lambda x: x.strip("Hl"), TEXTS)),
    ("len(s)", rows(s=TEXTS), py(len, TEXTS)),  # characters, not bytes
    ("len(pic)", rows(pic=["p.png", None]), [5, None]),
    ("concat(s, '-', u)", rows(s=["a", "b", None], u=["x", None, "z"]), ["a-x", None, None]),
    ("concat(s)", rows(s=["a", None]), ["a", None]),
    ("concat(s, pic, j)", rows(s=["a"], pic=["p"], j=["{}"]), ["ap{}"]),
    ("substr(s, 1)", rows(s=TEXTS), py(lambda x: x[1:], TEXTS)),
    ("substr(s, 1, 3)", rows(s=TEXTS), py(lambda x: x[1:][:3], TEXTS)),
    ("substr(s, -3)", rows(s=TEXTS), py(lambda x: x[-3:], TEXTS)),
    ("substr(s, -3, 2)", rows(s=[*TEXTS, "ab"]), py(lambda x: x[-3:][:2], [*TEXTS, "ab"])),
    ("substr(s, 20, 2)", rows(s=TEXTS), py(lambda x: x[20:][:2], TEXTS)),
    ("substr(s, 0, 0)", rows(s=TEXTS), py(lambda x: "", TEXTS)),
    ("replace(s, 'l', 'LL')", rows(s=TEXTS), py(lambda x: x.replace("l", "LL"), TEXTS)),
    ("contains(s, 'l')", rows(s=TEXTS), py(lambda x: "l" in x, TEXTS)),
    ("contains(s, '')", rows(s=TEXTS), py(lambda x: "" in x, TEXTS)),
    ("startswith(s, 'He')", rows(s=TEXTS), py(lambda x: x.startswith("He"), TEXTS)),
    ("endswith(s, 'C')", rows(s=TEXTS), py(lambda x: x.endswith("C"), TEXTS)),
    ("upper(s) + lower(u)", rows(s=["a"], u=["B"]), ["Ab"]),
    # dates, in UTC; a date is its midnight
    *[
        (f"{part}(at)", rows(at=MOMENTS), py(lambda t, part=part: getattr(t, part), MOMENTS))
        for part in ("year", "month", "day", "hour", "minute", "second")
    ],
    ("weekday(at)", rows(at=MOMENTS), py(dt.datetime.weekday, MOMENTS)),
    *[
        (f"{part}(day)", rows(day=DAYS), py(lambda d, part=part: getattr(d, part), DAYS))
        for part in ("year", "month", "day")
    ],
    ("weekday(day)", rows(day=DAYS), py(dt.date.weekday, DAYS)),
    ("hour(day) + minute(day) + second(day)", rows(day=DAYS), py(lambda d: 0, DAYS)),
    # conversions
    ("int(f)", rows(f=FLOATS), py(int, FLOATS)),
    ("int(ok)", rows(ok=[True, False, None]), [1, 0, None]),
    ("int(s)", rows(s=["12", " -3 ", "+7", "007", None]), py(int, ["12", " -3 ", "+7", "007", None])),
    ("float(a)", rows(a=SMALL), py(float, SMALL)),
    ("float(s)", rows(s=["1.5", " -2e3 ", "+.5", "inf", None]), py(float, ["1.5", " -2e3 ", "+.5", "inf", None])),
    ("str(a)", rows(a=INTS), py(str, INTS)),
    ("str(ok)", rows(ok=[True, False, None]), ["True", "False", None]),
    ("str(day)", rows(day=DAYS), py(str, DAYS)),
    ("str(at)", rows(at=MOMENTS), py(str, MOMENTS)),
    ("str(f)", rows(f=[1.5, 0.1, None]), ["1.5", "0.1", None]),
    ("str(s)", rows(s=["x"]), ["x"]),
]

# Documented differences from Python, pinned so a change is noticed.
DIFFERENCES: list[tuple[str, list[dict[str, Any]], list[Any]]] = [
    ("round(f, 2)", rows(f=[2.675]), [2.68]),  # Arrow rounds 267.49999999999997 up; Python's exact method gives 2.67
    ("str(f)", rows(f=[1.0, 1e15]), ["1", "1e+15"]),  # Arrow's shortest form; Python writes 1.0 and 1000000000000000.0
    ("min(f, g)", rows(f=[math.nan], g=[1.0]), [1.0]),  # NaN is skipped like null; Python's min(nan, 1.0) is nan
    ("exp(f)", rows(f=[1000.0]), [math.inf]),  # Python raises OverflowError
]


@pytest.mark.parametrize(("text", "data", "expected"), CASES + DIFFERENCES, ids=[c[0] for c in CASES + DIFFERENCES])
def test_functions_match_python(text: str, data: list[dict[str, Any]], expected: list[Any]) -> None:
    assert values(text, data) == expected


@pytest.mark.parametrize("text", ["exp(f)", "exp(a)"])
def test_exp_matches_python_closely(text: str) -> None:
    """Arrow's exp may differ from the C library's in the last bit."""
    data = [-2.0, 0.0, 0.5, 3.0, None]
    got = values(text, rows(f=data, a=[None if x is None else int(x) for x in data]))
    column = data if text == "exp(f)" else [None if x is None else float(int(x)) for x in data]
    assert got == [None if x is None else pytest.approx(math.exp(x), rel=1e-15) for x in column]


DOC = {"a": {"b": [1, {"c": "x"}], "é": "ü"}, "name": "Bob", "n": None, "t": True, "f": 1.5, "first name": "Al"}
DOCS = [json.dumps(DOC), '{"a": 1}', '[{"a": 2}, 3]', '{"a": {"b": []}}', None, '"text"', "null", '{"name": "Émile"}']
PATHS = [
    "a",
    "a.b",
    "a.b[0]",
    "a.b[1].c",
    "a.b[5]",
    "a.é",
    "name",
    "n",
    "t",
    "f",
    "missing",
    "a.b.c",
    "[0].a",
    "first name",
]


def json_reference(doc: str, path: str) -> str | None:
    """json_get in Python: lax, strings unquoted, the rest as compact JSON text."""
    value = json.loads(doc)
    for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        if key and isinstance(value, dict):
            value = value.get(key)
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return None
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("path", PATHS)
def test_json_get_matches_a_python_reference(path: str) -> None:
    expected = [None if d is None else json_reference(d, path) for d in DOCS]
    assert values(f"json_get(j, {path!r})", rows(j=DOCS)) == expected
    assert values("json_get(j, p)", rows(j=DOCS, p=[path] * len(DOCS))) == expected  # a path computed per row
    assert values(f"json_get(s, {path!r})", rows(s=DOCS)) == expected  # JSON text in a string column


TYPES = [
    ("abs(a)", "int"),
    ("abs(f)", "float"),
    ("round(f)", "int"),
    ("round(f, 1)", "float"),
    ("round(a, -1)", "int"),
    ("floor(f)", "int"),
    ("ceil(a)", "int"),
    ("sqrt(a)", "float"),
    ("exp(a)", "float"),
    ("log(a, 2)", "float"),
    ("log10(f)", "float"),
    ("pow(a, 2)", "int"),
    ("pow(a, -2)", "float"),
    ("pow(a, b)", "float"),
    ("min(a, b)", "int"),
    ("max(a, f)", "float"),
    ("min(s, pic)", "string"),
    ("max(at, later)", "timestamp"),
    ("min(day, day)", "date"),
    ("min(None, None)", "null"),
    ("coalesce(a, None)", "int"),
    ("coalesce(j, j)", "json"),
    ("lower(j)", "string"),
    ("len(s)", "int"),
    ("concat(s, pic)", "string"),
    ("substr(s, 1, 2)", "string"),
    ("contains(s, 'x')", "bool"),
    ("year(at)", "int"),
    ("weekday(day)", "int"),
    ("int(s)", "int"),
    ("float(ok)", "float"),
    ("str(at)", "string"),
    ("json_get(j, 'a')", "string"),
    ("int(json_get(j, 'a')) + 1", "int"),
]


@pytest.mark.parametrize(("text", "type_"), TYPES, ids=[t[0] for t in TYPES])
def test_infers_the_result_type(text: str, type_: str) -> None:
    compiled = compile_expression(text, SCHEMA)
    assert compiled.type == type_
    result = evaluate(compiled, pa.Table.from_pylist([], schema=ARROW))
    assert result.values.type == (pa.null() if type_ == "null" else arrow_type(type_))


REJECTED: list[tuple[str, str, int, int]] = [
    # (text, message, line, col): counts point at the call, types at the argument
    ("nope(a)", "function calls are not allowed ('nope' is not a known function)", 1, 1),
    ("abs()", "abs(): takes 1 argument (0 given)", 1, 1),
    ("a + abs(a, b)", "abs(): takes 1 argument (2 given)", 1, 5),
    ("log(f, 2, 3)", "log(): takes 1 or 2 arguments (3 given)", 1, 1),
    ("substr(s)", "substr(): takes 2 or 3 arguments (1 given)", 1, 1),
    ("min(a)", "min(): takes at least 2 arguments (1 given)", 1, 1),
    ("coalesce()", "coalesce(): takes at least 1 arguments (0 given)", 1, 1),
    ("abs(s)", "abs(): argument 1 must be a number, got string", 1, 5),
    ("sqrt(None)", "sqrt(): argument 1 must be a number, got null", 1, 6),
    ("round(f, a)", "round(): argument 2 must be a constant int, got a column", 1, 10),
    ("round(f, 1.5)", "round(): argument 2 must be a constant int, got float", 1, 10),
    ("round(f, 1 // 0)", "round(): argument 2 cannot be computed: divide by zero", 1, 10),
    ("pow(s, 2)", "pow(): argument 1 must be a number, got string", 1, 5),
    ("min(a, s)", "min(): argument 2 has type string, which does not mix with int", 1, 8),
    ("max(ok, ok)", "max(): argument 1 must be a number, string, date or timestamp, got bool", 1, 5),
    ("max(j, j)", "max(): argument 1 must be a number, string, date or timestamp, got json", 1, 5),
    ("coalesce(a, s)", "coalesce(): argument 2 has type string, which does not mix with int", 1, 13),
    ("lower(a)", "lower(): argument 1 must be a string, got int", 1, 7),
    ("concat(s, a)", "concat(): argument 2 must be a string, got int (convert it with str())", 1, 11),
    ("substr(s, 0, -1)", "substr(): argument 3 must not be negative, got -1", 1, 14),
    ("substr(s, a)", "substr(): argument 2 must be a constant int, got a column", 1, 11),
    ("replace(s, '', 'x')", "replace(): argument 2 must not be empty", 1, 12),
    ("contains(s, u)", "contains(): argument 2 must be a constant string, got a column", 1, 13),
    ("startswith(s, 1)", "startswith(): argument 2 must be a constant string, got int", 1, 15),
    ("strip(s, None)", "strip(): argument 2 must be a constant string, got null", 1, 10),
    ("year(a)", "year(): argument 1 must be a timestamp or date, got int", 1, 6),
    ("hour(s)", "hour(): argument 1 must be a timestamp or date, got string", 1, 6),
    ("int(at)", "int(): argument 1 must be a number, bool or string, got timestamp", 1, 5),
    ("float(day)", "float(): argument 1 must be a number, bool or string, got date", 1, 7),
    ("json_get(a, 'x')", "json_get(): argument 1 must be a string, got int", 1, 10),
    ("json_get(j, 1)", "json_get(): argument 2 must be a string, got int", 1, 13),
    ("json_get(j, 'a..b')", "json_get(): argument 2 is not a JSON path like 'a.b[0]': 'a..b'", 1, 13),
    ("json_get(j, 'a[x]')", "json_get(): argument 2 is not a JSON path", 1, 13),
    ("json_get(j, '')", "json_get(): argument 2 is not a JSON path", 1, 13),
    ("abs(x=a)", "keyword arguments are not allowed in 'abs()'", 1, 1),
    ("(a +\n abs(s))", "abs(): argument 1 must be a number, got string", 2, 6),
    ("'é' + lower(a)", "lower(): argument 1 must be a string, got int", 1, 13),
]


@pytest.mark.parametrize(("text", "message", "line", "col"), REJECTED, ids=[r[0] for r in REJECTED])
def test_rejects_wrong_calls_at_their_position(text: str, message: str, line: int, col: int) -> None:
    with pytest.raises(InvalidExpression) as exc:
        compile_expression(text, SCHEMA, field="computed.x")
    assert message in str(exc.value)
    assert str(exc.value).startswith("computed.x: ")
    assert (exc.value.line, exc.value.col) == (line, col)


# Cell errors: (text, data, values with failing cells null, number of errors, first error)
CELL_ERRORS: list[tuple[str, list[dict[str, Any]], list[Any], int, str]] = [
    ("a // b", rows(a=[7, 1, None, -3, 4], b=[2, 0, 0, 0, 1]), [3, None, None, None, 4], 2, "row 1: division by zero"),
    ("a % b", rows(a=[7, 1, -3], b=[0, 2, 0]), [None, 1, None], 2, "row 0: division by zero"),
    ("a / b", rows(a=[1, 1], b=[2, 0]), [0.5, None], 1, "row 1: division by zero"),
    ("f / g", rows(f=[1.0, 0.0, 1.0], g=[-0.0, 0.0, 4.0]), [None, None, 0.25], 2, "row 0: division by zero"),
    ("f // g", rows(f=[1.0, 1.0], g=[0.5, 0.0]), [2.0, None], 1, "row 1: division by zero"),
    ("a * b", rows(a=[2, 2**62, 3, 2**62], b=[3, 2, None, 4]), [6, None, None, None], 2, "row 1: overflow"),
    ("a + 1", rows(a=[1, INT_MAX, INT_MAX]), [2, None, None], 2, "row 1: overflow"),
    ("-a", rows(a=[INT_MIN, 1]), [None, -1], 1, "row 0: overflow"),
    ("abs(a)", rows(a=[-1, INT_MIN]), [1, None], 1, "row 1: overflow"),
    ("a ** 64", rows(a=[1, 2]), [1, None], 1, "row 1: overflow"),
    ("a // b", rows(a=[INT_MIN, 6], b=[-1, 3]), [None, 2], 1, "row 0: overflow"),
    ("round(a, -1)", rows(a=[INT_MAX, 14]), [None, 10], 1, "row 0: "),  # beyond 64 bits after rounding
    ("round(a, -19)", rows(a=[4 * 10**18, 6 * 10**18, -6 * 10**18]), [0, None, None], 2, "row 1: integer overflow"),
    ("sqrt(f)", rows(f=[4.0, -1.0, None]), [2.0, None, None], 1, "row 1: sqrt() of a negative number"),
    ("log(f)", rows(f=[1.0, 0.0, -1.0]), [0.0, None, None], 2, "row 1: log() of a number <= 0"),
    ("log10(a)", rows(a=[0, 10]), [None, 1.0], 1, "row 0: log10() of a number <= 0"),
    ("log(a, b)", rows(a=[8, 8], b=[1, 2]), [None, 3.0], 1, "row 0: division by zero"),  # log(1) is 0
    (
        "int(s)",
        rows(s=["12", "x", None, "1.5", "", "9223372036854775808"]),
        [12, None, None, None, None, None],
        4,
        "row 1: invalid literal for int()",
    ),
    (
        "float(s)",
        rows(s=["1.5", "one", None, "1.2.3"]),
        [1.5, None, None, None],
        2,
        "row 1: could not convert string to float",
    ),
    (
        "int(f)",
        rows(f=[1.9, math.nan, -1.9, 1e19, -math.inf]),
        [1, None, -1, None, None],
        3,
        "row 1: cannot convert to int",
    ),
    ("round(f)", rows(f=[0.5, math.inf]), [0, None], 1, "row 1: cannot convert to int"),
    ("floor(f) + ceil(g)", rows(f=[1.5, 1.0], g=[1.5, math.nan]), [3, None], 1, "row 1: cannot convert to int"),
    (
        "json_get(j, 'a')",
        rows(j=['{"a": 1}', "nope", None, '{"a": ', '"text"', "null", " [1] "]),
        ["1", None, None, None, None, None, None],
        2,
        "row 1: json_get(): invalid JSON text",
    ),
    (
        "json_get(s, p)",
        rows(s=['{"a": 1}'] * 5, p=["a", "a..b", None, "[x]", "a"]),
        ["1", None, None, None, "1"],
        2,
        "row 1: json_get(): not a JSON path like 'a.b[0]'",
    ),
    (
        "json_get(s, p)",
        rows(s=["{", '{"a": 1}'], p=["a", "b"]),
        [None, None],
        1,
        "row 0: json_get(): invalid JSON text",
    ),
    (
        "a // b + int(json_get(j, 'x'))",
        rows(a=[1, 1, 1], b=[1, 0, 1], j=['{"x": 2}', '{"x": 2}', '{"x": "two"}']),
        [3, None, None],
        2,
        "row 1: division by zero",
    ),
]


@pytest.mark.parametrize(("text", "data", "expected", "errors", "first"), CELL_ERRORS, ids=[c[0] for c in CELL_ERRORS])
def test_failing_cells_are_null_and_counted(
    text: str, data: list[dict[str, Any]], expected: list[Any], errors: int, first: str
) -> None:
    result = run(text, data)
    assert result.values.to_pylist() == expected
    assert result.errors == errors
    assert result.first_error is not None and result.first_error.startswith(first)


@pytest.mark.parametrize(("text", "data", "expected", "errors", "first"), CELL_ERRORS, ids=[c[0] for c in CELL_ERRORS])
def test_abort_raises_for_the_first_failing_cell(
    text: str, data: list[dict[str, Any]], expected: list[Any], errors: int, first: str
) -> None:
    with pytest.raises(CellError) as exc:
        run(text, data, on_error="abort")
    err = exc.value
    assert str(err).startswith(first)
    assert err.row == int(first.split(":")[0].removeprefix("row "))
    assert isinstance(err, InvalidValue) and err.code == "cell_error"
    assert err.to_dict() == {"detail": str(err), "code": "cell_error", "row": err.row, "reason": err.reason}
    assert pickle.loads(pickle.dumps(err)).to_dict() == err.to_dict()


@pytest.mark.parametrize(
    ("text", "data", "expected"),
    [
        # Python evaluates only the branch taken, and nothing right of a decided 'and' / 'or'.
        ("a // b if b != 0 else -1", rows(a=[7, 7, None], b=[2, 0, None]), [3, -1, None]),
        ("a / b if ok else 0.0", rows(a=[1, 1], b=[0, 0], ok=[False, None]), [0.0, None]),  # null takes neither
        ("b != 0 and a // b > 1", rows(a=[7, 7, 7], b=[2, 0, None]), [True, False, None]),
        ("b == 0 or a % b == 1", rows(a=[7, 7], b=[0, 2]), [True, True]),
        ("not (b != 0 and a / b > 1) or ok", rows(a=[1], b=[0], ok=[None]), [True]),
        ("0 < b < a // b", rows(a=[7, 7], b=[2, 0]), [True, False]),  # a chain is an 'and'
        ("coalesce(a, c // b)", rows(a=[1, None], b=[0, 2], c=[5, 5]), [1, 2]),  # as in SQL, stops at a value
        ("json_get(j, 'a') if ok else 'no'", rows(j=["nope", '{"a": 1}'], ok=[False, True]), ["no", "1"]),
        ("len(str(a // b)) if b != 0 else 0", rows(a=[10, 1], b=[1, 0]), [2, 0]),
    ],
)
def test_failures_count_only_where_python_evaluates(text: str, data: list[dict[str, Any]], expected: list[Any]) -> None:
    assert values(text, data) == expected


def test_overflow_fails_the_cell_in_either_branch() -> None:
    """Arrow computes both branches of ``if``; an overflow, unlike a guarded failure, cannot be told apart."""
    result = run("a * a if a < 10 else 0", rows(a=[3, 2**62]))
    assert (result.values.to_pylist(), result.errors) == ([9, None], 1)


def test_failures_in_an_argument_fail_the_call() -> None:
    result = run("coalesce(a // b, 0) + abs(c // b)", rows(a=[1, None, 4], b=[0, 1, 2], c=[1, 1, 1]))
    assert (result.values.to_pylist(), result.errors, result.first_error) == (
        [None, 1, 2],
        1,
        "row 0: division by zero",
    )


def test_finds_rare_failures_among_many_rows_and_chunks() -> None:
    n = 10_000
    bad = {17, 18, 4_999, 5_000, 9_999}
    a = [2**62 if i in bad else i for i in range(n)]
    table = pa.Table.from_batches(pa.Table.from_pylist(rows(a=a), schema=ARROW).to_batches(max_chunksize=777))
    result = evaluate(compile_expression("a * 2 + 1", SCHEMA), table)
    assert result.values.to_pylist() == [None if i in bad else 2 * i + 1 for i in range(n)]
    assert (result.errors, result.first_error) == (len(bad), "row 17: overflow")


def test_guards_find_many_failures_without_bisecting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Division by zero in half of the rows costs two passes, not one per failing row."""
    import engine.expr.evaluate as evaluation

    calls: list[int] = []
    real = evaluation._project

    def counting(table: pa.Table, exprs: list[pc.Expression]) -> list[pa.ChunkedArray]:
        calls.append(table.num_rows)
        return real(table, exprs)

    monkeypatch.setattr(evaluation, "_project", counting)
    n = 1_000
    result = run("a // b", rows(a=list(range(n)), b=[i % 2 for i in range(n)]))
    assert (result.errors, calls) == (n // 2, [n, n])  # the raising pass, then the guarded one


@pytest.mark.parametrize(
    "text",
    [
        "a" + " // b" * 8,
        " and ".join(["a / b > 0"] * 40),
        "sqrt(" * 40 + "f" + ")" * 40,
        " + ".join(["coalesce(a // b, c % b)"] * 30),
    ],
    ids=["floor divisions", "and of divisions", "nested sqrt", "sum of coalesce"],
)
def test_guards_keep_plausible_expressions_within_the_size_cap(text: str) -> None:
    assert run(text, rows(a=[7, 1], b=[2, 0], c=[1, 1], f=[16.0, -1.0])).values is not None


def test_guards_that_would_grow_exponentially_are_refused_when_compiled() -> None:
    """Arrow evaluates each use of a subtree: a guard that repeats its argument is counted at every level."""
    with pytest.raises(InvalidExpression, match="expands to more than 10000 operations"):
        compile_expression("round(" * 30 + "f" + ", 2)" * 30, SCHEMA)


# Steps: work no Arrow expression can do, such as json_get, runs first over whole columns.

NESTED = '{"a": {"b": {"c": [10, 20]}}, "name": "bob"}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("json_get(json_get(j, 'a'), 'b')", ['{"c":[10,20]}', None]),
        ("json_get(json_get(json_get(j, 'a'), 'b'), 'c[1]')", ["20", None]),
        ("upper(json_get(j, 'name')) + 'x'", ["BOBx", None]),
        ("int(json_get(j, 'a.b.c[0]')) + int(json_get(j, 'a.b.c[1]'))", [30, None]),
        ("json_get(j, 'name') == 'bob'", [True, None]),
        ("json_get(j, 'nothing') == None", [True, True]),
        ("concat(json_get(j, 'name'), json_get(j, 'name'))", ["bobbob", None]),
    ],
)
def test_nested_steps(text: str, expected: list[Any]) -> None:
    assert values(text, rows(j=[NESTED, "{}"])) == expected


def test_steps_are_numbered_ordered_and_their_columns_reported() -> None:
    compiled = compile_expression("json_get(json_get(j, p), 'b') + json_get(s, 'c')", SCHEMA)
    assert [s.column for s in compiled.steps] == ["__step0", "__step1", "__step2"]
    assert [s.function for s in compiled.steps] == ["json_get"] * 3
    assert compiled.columns == {"j", "p", "s"}
    # An expression without steps stays one Arrow expression.
    plain = compile_expression("a * 2", SCHEMA)
    assert plain.steps == () and plain.expr.equals(pc.multiply_checked(pc.field("a"), pc.scalar(2)))


def test_an_expression_with_steps_has_no_single_arrow_expression() -> None:
    """Callers that need one Arrow expression (batch updates today) get a clear error, not one that reads __step0."""
    compiled = compile_expression("a + len(json_get(j, 'x'))", SCHEMA, field="set.a")
    with pytest.raises(InvalidExpression) as exc:
        _ = compiled.expr
    assert str(exc.value) == "set.a: json_get() cannot be used here: it runs as a separate step (line 1, col 9)"


def test_compiled_steps_compare_by_value_and_pickle() -> None:
    first, again = compile_expression("json_get(j, 'a.b')", SCHEMA), compile_expression("json_get(j,'a.b')", SCHEMA)
    assert first == again and hash(first) == hash(again)
    assert first != compile_expression("json_get(j, 'a.c')", SCHEMA)
    restored = pickle.loads(pickle.dumps(first))
    assert restored == first
    table = pa.Table.from_pylist(rows(j=['{"a": {"b": 1}}']), schema=ARROW)
    assert evaluate(restored, table).values.to_pylist() == ["1"]


@dataclass(frozen=True)
class Halve:
    """A step kernel that reports failing cells: odd numbers cannot be halved."""

    def __call__(self, arrays: list[pa.Array]) -> StepResult:
        odd = pc.equal(pc.bit_wise_and(arrays[0], 1), 1)
        return StepResult(pc.divide(arrays[0], 2), pc.if_else(odd, "odd number", pa.scalar(None, pa.string())))


@dataclass(frozen=True)
class Unlucky:
    """A step kernel that raises for the batch when one row is bad, as a UDF in a sandbox may."""

    def __call__(self, arrays: list[pa.Array]) -> pa.Array:
        if pc.any(pc.equal(arrays[0], 13)).as_py():
            raise ValueError("13 is unlucky")
        return pc.multiply(arrays[0], 10)


def halve(x: Compiled) -> StepCall:
    if x.type != "int":
        raise ArgumentError(1, f"must be an int, got {x.type}")
    return StepCall(Halve(), "int", (x,))


def unlucky(x: Compiled) -> StepCall:
    return StepCall(Unlucky(), "int", (x,))


UDFS = {"halve": halve, "unlucky": unlucky}


def test_callers_add_step_functions() -> None:
    """How a table's UDFs will plug in: a function returning a StepCall, passed to compile_expression."""
    result = run("halve(a) + 1", rows(a=[4, 3, None, 8]), functions=UDFS)
    assert (result.values.to_pylist(), result.errors, result.first_error) == (
        [3, None, None, 5],
        1,
        "row 1: odd number",
    )
    with pytest.raises(
        InvalidExpression, match=re.escape("halve(): argument 1 must be an int, got string (line 1, col 7)")
    ):
        compile_expression("halve(s)", SCHEMA, functions=UDFS)
    assert "halve" not in current().functions()  # a table's functions stay the table's


def test_a_kernel_that_raises_fails_only_the_rows_it_cannot_compute() -> None:
    result = run("unlucky(a) + 1", rows(a=[1, 13, 2, 13, None]), functions=UDFS)
    assert result.values.to_pylist() == [11, None, 21, None, None]
    assert (result.errors, result.first_error) == (2, "row 1: 13 is unlucky")
    with pytest.raises(CellError, match="row 1: 13 is unlucky"):
        run("unlucky(a)", rows(a=[1, 13]), on_error="abort", functions=UDFS)


def test_failures_of_step_arguments_fail_the_step() -> None:
    result = run("halve(a // b) + unlucky(b)", rows(a=[4, 4, 4], b=[2, 0, 13]), functions=UDFS)
    assert (result.values.to_pylist(), result.errors) == ([21, None, None], 2)
    assert result.first_error == "row 1: division by zero"


def test_callers_functions_come_before_the_built_ins() -> None:
    def shout(x: Compiled) -> Compiled:
        return Compiled(pc.utf8_upper(x.main), "string", x.columns, x.size + 1)

    assert values("lower(s)", rows(s=["Ab"])) == ["ab"]
    assert run("lower(s)", rows(s=["Ab"]), functions={"lower": shout}).values.to_pylist() == ["AB"]


def test_evaluate_checks_its_arguments() -> None:
    compiled = compile_expression("a + b", SCHEMA)
    with pytest.raises(ValueError, match="no column 'b'"):
        evaluate(compiled, pa.table({"a": [1]}))
    with pytest.raises(ValueError, match="on_error"):
        evaluate(compiled, pa.table({"a": [1], "b": [2]}), "skip")  # type: ignore[arg-type]


def test_evaluates_empty_tables_and_constants() -> None:
    empty = pa.Table.from_pylist([], schema=ARROW)
    assert evaluate(compile_expression("a // b + len(json_get(j, 'x'))", SCHEMA), empty).values.to_pylist() == []
    assert values("1 + 2", rows(a=[None, None])) == [3, 3]
    assert values("json_get('{\"x\": [1, 2]}', 'x[1]')", rows(a=[1, 2])) == ["2", "2"]
    assert run("None", rows(a=[1])).values.type == pa.null()


# Property: evaluate equals a Python reference row by row, where a failing cell is null.


class Fail(Exception):
    """The cell fails."""


def _fit(v: Any) -> Any:
    if isinstance(v, int) and not INT_MIN <= v <= INT_MAX:
        raise Fail
    return v


def strict(f: Callable[..., Any]) -> Callable[..., Any]:
    """None in, None out (Arrow's kernels); an int result beyond 64 bits fails."""
    return lambda *xs: None if any(x is None for x in xs) else _fit(f(*xs))


def _floordiv(x: int, y: int) -> int:
    if y == 0:
        raise Fail
    return _fit(x - x % y) // y  # the engine computes (x - x % y) / y: the subtraction may overflow


def _divide(x: float, y: float) -> float:
    if y == 0:
        raise Fail
    return x / y


def _modulo(x: int, y: int) -> int:
    if y == 0:
        raise Fail
    return x % y


def _to_int(f: Callable[[float], int]) -> Callable[[float], int]:
    def convert(x: float) -> int:
        if not math.isfinite(x):
            raise Fail
        return f(x)

    return convert


add, sub, mul = strict(operator.add), strict(operator.sub), strict(operator.mul)
floordiv, divide, modulo = strict(_floordiv), strict(_divide), strict(_modulo)
pyabs, pyround, pyfloor = strict(abs), strict(_to_int(round)), strict(_to_int(math.floor))


def kleene_and(x: bool | None, y: Callable[[], bool | None]) -> bool | None:
    if x is False:
        return False  # Python does not evaluate y
    right = y()
    if right is False:
        return False
    return None if x is None or right is None else True


PROPERTY: dict[str, Callable[..., Any]] = {
    "a + b * c": lambda a, b, c, f, g: add(a, mul(b, c)),
    "a // b": lambda a, b, c, f, g: floordiv(a, b),
    "a % b - c": lambda a, b, c, f, g: sub(modulo(a, b), c),
    "a // b if b != 0 else c": lambda a, b, c, f, g: None if b is None else floordiv(a, b) if b != 0 else c,
    "b != 0 and a % b == 0": lambda a, b, c, f, g: kleene_and(
        None if b is None else b != 0, lambda: strict(lambda m: m == 0)(modulo(a, b))
    ),
    "abs(a) - min(b, c)": lambda a, b, c, f, g: sub(pyabs(a), least(b, c)),
    "max(a, b, c) + coalesce(a, c)": lambda a, b, c, f, g: add(greatest(a, b, c), first(a, c)),
    "coalesce(a // b, c)": lambda a, b, c, f, g: first(floordiv(a, b), c),
    "f / g + a": lambda a, b, c, f, g: add(divide(f, g), strict(float)(a)),
    "round(f * g)": lambda a, b, c, f, g: pyround(mul(f, g)),
    "floor(f / g) - b": lambda a, b, c, f, g: sub(pyfloor(divide(f, g)), b),
    "sqrt(f) if f > 0 else -f": lambda a, b, c, f, g: None if f is None else math.sqrt(f) if f > 0 else -f,
}

ints = st.one_of(
    st.none(),
    st.integers(-50, 50),
    st.integers(INT_MIN, INT_MAX),
    st.sampled_from([INT_MIN, INT_MAX, -1, 0, 2**62]),
)
floats = st.one_of(st.none(), st.floats(-1e12, 1e12, allow_nan=False), st.sampled_from([0.0, -0.0, 0.5, 2.5]))


def reference(function: Callable[..., Any], row: tuple[Any, ...]) -> tuple[Any, bool]:
    try:
        return function(*row), False
    except Fail:
        return None, True


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(ints, ints, ints, floats, floats), max_size=40))
def test_evaluate_matches_python_row_by_row(data: list[tuple[Any, ...]]) -> None:
    table = pa.Table.from_pylist([dict(zip("abcfg", row, strict=True)) for row in data], schema=ARROW)
    for text, function in PROPERTY.items():
        expected = [reference(function, row) for row in data]
        result = evaluate(compile_expression(text, SCHEMA), table)
        assert result.values.to_pylist() == [value for value, _ in expected], text
        assert result.errors == sum(failed for _, failed in expected), text
