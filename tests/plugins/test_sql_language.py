"""The SQL UDF language as registering checks it: the parameters' declared types reach the translation, so SQL's
``+``, which adds numbers, is refused where the engine's would join strings. Pure, no Ray."""

from __future__ import annotations

import pytest

from engine.errors import UdfCompileError
from engine.logical.udfs import checked, define
from engine.model.schema import build_schema
from engine.model.udfs import Udf

SCHEMA = build_schema("t", {"id": "int"}, None)
NOW = "2024-01-01T00:00:00Z"


def sql_udf(code: str, parameters: dict[str, str], return_type: str) -> Udf:
    """``code`` defined and checked as registering a SQL UDF does."""
    declared = [{"name": n, "type": t} for n, t in parameters.items()]
    return checked(define(SCHEMA, "f", "sql", code, declared, return_type, now=NOW))


@pytest.mark.parametrize(
    ("code", "parameters", "return_type", "type_", "col"),
    [
        ("s + 'x'", {"s": "string"}, "string", "string", 3),
        ("a || b", {"a": "string", "b": "string"}, "string", "", 0),  # '||' joins: accepted
        ("n + s", {"n": "int", "s": "string"}, "string", "string", 3),
        ("x + 1", {"x": "bool"}, "int", "bool", 3),
        ("1 + x", {"x": "timestamp"}, "int", "timestamp", 3),
        ("'ab' + 'c'", {}, "string", "string", 6),
    ],
)
def test_plus_adds_only_numbers(code: str, parameters: dict[str, str], return_type: str, type_: str, col: int) -> None:
    if not type_:
        assert sql_udf(code, parameters, return_type).inline == "concat(a, b)"
        return
    with pytest.raises(UdfCompileError) as caught:
        sql_udf(code, parameters, return_type)
    assert caught.value.message == f"code: '+' adds numbers, not {type_} values; '||' joins strings (line 1, col {col})"
    assert (caught.value.line, caught.value.col, caught.value.fields["language"]) == (1, col, "sql")


def test_numeric_plus_is_inlined_as_before() -> None:
    assert sql_udf("a + b * 2", {"a": "int", "b": "float"}, "float").inline == "(a + (b * 2))"
    assert sql_udf("n + 1", {"n": "int"}, "int").inline == "(n + 1)"
