"""SQL UDFs translated to engine expressions (sandbox.sql): values against SQLite and SQL's rules, every refusal with
its message and position, and garbage that must be refused cleanly or, if accepted, agree with SQLite. Pure, no Ray."""

from __future__ import annotations

import ast
import math
import re
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

import engine
from engine.errors import UdfCompileError
from engine.expr.compiler import compile_expression
from engine.expr.evaluate import evaluate
from engine.model.schema import build_schema
from sandbox.sql import MAX_CODE, MAX_DEPTH, to_expression

TYPES = {"a": "float", "b": "float", "i": "int", "j": "int", "s": "string", "flag": "bool"}
ROWS: list[dict[str, Any]] = [
    {"a": 1.25, "b": 0.5, "i": 7, "j": 2, "s": "abcdef", "flag": True},
    {"a": -3.75, "b": 2.0, "i": -7, "j": 2, "s": "  ab  ", "flag": False},
    {"a": 0.0, "b": -1.5, "i": 7, "j": -2, "s": "xaby", "flag": None},
    {"a": 100.0, "b": 0.0, "i": -7, "j": -2, "s": "", "flag": True},
    {"a": None, "b": 3.0, "i": 0, "j": 0, "s": None, "flag": False},
    {"a": 2.5, "b": None, "i": None, "j": 3, "s": "ab", "flag": None},
    {"a": 9.0, "b": 4.0, "i": 2, "j": None, "s": "bab", "flag": True},
]


def run(code: str, rows: Sequence[dict[str, Any]] = ROWS, types: dict[str, str] = TYPES) -> list[Any]:
    """``code`` translated with ``types`` (as registering a UDF does), compiled against them and evaluated over
    ``rows`` (failing cells null)."""
    text = to_expression(code, types)
    compiled = compile_expression(text, build_schema("t", types, None))
    columns = {name: pa.array([r[name] for r in rows], _arrow(type_)) for name, type_ in types.items()}
    return evaluate(compiled, pa.table(columns)).values.to_pylist()


def _arrow(type_: str) -> pa.DataType:
    return {"float": pa.float64(), "int": pa.int64(), "string": pa.string(), "bool": pa.bool_()}[type_]


def sqlite(code: str, rows: Sequence[dict[str, Any]] = ROWS) -> list[Any]:
    """What SQLite gives for ``code`` on each row."""
    connection = sqlite3.connect(":memory:")
    connection.execute("PRAGMA case_sensitive_like = ON")
    names = [n for n in TYPES if n != "flag"]
    select = ", ".join(f"? AS {n}" for n in names)
    try:
        return [
            connection.execute(f"SELECT {code} FROM (SELECT {select})", [r[n] for n in names]).fetchone()[0]
            for r in rows
        ]
    finally:
        connection.close()


def same(ours: Any, theirs: Any) -> bool:
    if ours is None or theirs is None:
        return ours is None and theirs is None
    if isinstance(ours, bool):  # SQLite's booleans are 0 and 1
        return int(ours) == theirs
    if isinstance(ours, float) or isinstance(theirs, float):
        return math.isclose(ours, theirs, rel_tol=1e-12, abs_tol=1e-12)
    return bool(ours == theirs)


# -- values --------------------------------------------------------------------------------------------------------


def test_the_seed_example() -> None:
    text = to_expression("price * (1 - discount_rate)", ["price", "discount_rate"])
    assert text == "(price * (1 - discount_rate))"
    types = {"price": "float", "discount_rate": "float"}
    rows: list[dict[str, Any]] = [
        {"price": 100.0, "discount_rate": 0.25},
        {"price": 80.0, "discount_rate": 0.0},
        {"price": None, "discount_rate": 0.5},
    ]
    assert run("price * (1 - discount_rate)", rows, types) == [75.0, 80.0, None]


AGAINST_SQLITE = [
    "a * (1 - b)",
    "((a + (b)) * ((i)))",
    "-a + 2 * b - -i",
    "a / b",
    "i * j - 3",
    "i % j",
    "MOD(i, j)",
    "-i % 3",
    "ABS(a) + ABS(i)",
    "a > b",
    "a = b * 2 OR i <> 7",
    "i != j AND NOT a < 0",
    "a IS NULL",
    "s IS NOT NULL",
    "NOT (a IS NULL)",
    "i IN (7, 2, 0)",
    "i NOT IN (7, 2)",
    "i IN (7, NULL)",
    "i NOT IN (-7, NULL)",
    "s IN ('ab', 'xaby')",
    "a BETWEEN -1 AND 2",
    "i NOT BETWEEN 0 AND j",
    "CASE WHEN a > b THEN a WHEN i < 0 THEN b ELSE 0.5 END",
    "CASE WHEN a > 1 THEN 'big' END",
    "CASE i WHEN 7 THEN 'seven' WHEN -7 THEN 'minus' ELSE 'other' END",
    "CASE WHEN i > 0 AND a > 0 THEN 1 ELSE 0 END",
    "COALESCE(a, b, 0.0)",
    "COALESCE(i, j)",
    "IFNULL(s, '?')",
    "NULLIF(i, 7)",
    "NULLIF(j, i)",
    "CAST(a AS INT)",
    "CAST(a AS INTEGER) + CAST(i AS BIGINT)",
    "CAST(i AS DOUBLE) / 4",
    "CAST(i AS REAL) / 4",
    "s || '!'",
    "s || s",
    "UPPER(s)",
    "LOWER(UPPER(s))",
    "LENGTH(s)",
    "SUBSTR(s, 2, 3)",
    "SUBSTR(s, 3)",
    "SUBSTRING(s, 1, 1)",
    "TRIM(s)",
    "REPLACE(s, 'ab', 'X')",
    "s LIKE 'ab%'",
    "s LIKE '%ab'",
    "s LIKE '%ab%'",
    "s NOT LIKE '%b%'",
    "s LIKE 'ab'",
    "ROUND(a + 0.01, 1)",  # no halves: SQLite rounds them away from zero, the engine to even
    "ROUND(b + 0.1)",
    "FLOOR(a)",
    "CEIL(a) + CEILING(b)",
    "SQRT(a)",
    "EXP(b)",
    "LN(a)",
    "LOG(a)",
    "LOG(2, a)",
    "LOG10(a)",
    "POWER(b, 2)",
    "POW(ABS(a), 0.5)",
    "ABS(ROUND(-a, 0)) * (1 + (2 * (3 - (b))))",
    "TRUE AND a > 0",
    "NULL IS NULL",
]


def matches_sqlite(code: str) -> None:
    """Our translation computes what SQLite computes for ``code``, row by row."""
    ours, theirs = run(code), sqlite(code)
    assert all(same(o, t) for o, t in zip(ours, theirs, strict=True)), (
        code,
        to_expression(code, list(TYPES)),
        ours,
        theirs,
    )


@pytest.mark.parametrize("code", AGAINST_SQLITE)
def test_values_match_sqlite(code: str) -> None:
    matches_sqlite(code)


EXPECTED: list[tuple[str, list[Any]]] = [
    # '/' divides exactly, like DuckDB (SQLite and Postgres divide ints to an int); a zero divisor gives NULL.
    ("i / j", [3.5, -3.5, -3.5, 3.5, None, None, None]),
    ("1 / 2 + 0 * a", [0.5, 0.5, 0.5, 0.5, None, 0.5, 0.5]),
    # Only the division is NULL, as in DuckDB and SQLite (the engine alone would fail the whole cell).
    ("COALESCE(a / b, -1.0)", [2.5, -1.875, -0.0, -1.0, -1.0, -1.0, 2.25]),
    ("COALESCE(i % j, 99) + 0 * j", [1, -1, 1, -1, 99, 99, None]),
    ("i / 0 IS NULL", [True] * 7),
    # SQL's remainder takes the dividend's sign, for floats too (DuckDB's fmod; SQLite truncates floats first).
    ("a % 2", [1.25, -1.75, 0.0, 0.0, None, 0.5, 1.0]),
    ("MOD(i, j)", [1, -1, 1, -1, None, None, None]),
    # LEAST / GREATEST and CONCAT skip NULLs, as in DuckDB and Postgres; || does not.
    ("LEAST(i, j)", [2, -7, -2, -7, 0, 3, 2]),
    ("GREATEST(a, b, 1.0)", [1.25, 2.0, 1.0, 100.0, 3.0, 2.5, 9.0]),
    ("GREATEST(i)", [7, -7, 7, -7, 0, None, 2]),
    ("CONCAT(s, NULL, '|', s)", ["abcdef|abcdef", "  ab  |  ab  ", "xaby|xaby", "|", "|", "ab|ab", "bab|bab"]),
    ("CONCAT('x')", ["x"] * 7),
    ("s || NULLIF('a', 'a')", [None] * 7),
    # A NULL condition does not take its branch; no ELSE gives NULL.
    ("CASE WHEN flag THEN 'yes' ELSE 'no' END", ["yes", "no", "no", "yes", "no", "no", "yes"]),
    ("CASE WHEN flag THEN 1 END", [1, None, None, 1, None, None, 1]),
    ("CASE flag WHEN TRUE THEN 't' WHEN FALSE THEN 'f' END", ["t", "f", None, "t", "f", None, "t"]),
    ("NOT flag", [False, True, None, False, True, None, False]),
    ("flag OR a > 5", [True, False, None, True, None, None, True]),
    ("flag AND a > 5", [False, False, False, True, False, False, True]),
    ("flag IS NULL", [False, False, True, False, False, True, False]),
    ("flag IN (TRUE)", [True, False, None, True, False, None, True]),
    ("i IN (NULL)", [None] * 7),
    ("NULLIF(s, 'ab')", ["abcdef", "  ab  ", "xaby", "", None, None, "bab"]),
    # Conversions.
    ("CAST(a AS VARCHAR)", ["1.25", "-3.75", "0", "100", None, "2.5", "9"]),
    ("CAST(s AS TEXT) || CAST(i AS STRING)", ["abcdef7", "  ab  -7", "xaby7", "-7", None, None, "bab2"]),
    ("i::DOUBLE / 2", [3.5, -3.5, 3.5, -3.5, 0.0, None, 1.0]),
    ("a::INT", [1, -3, 0, 100, None, 2, 9]),
    ("CAST('12' AS INT) + CAST(' 1.5 ' AS FLOAT)", [13.5] * 7),
    # Functions SQLite lacks or spells differently.
    ("SUBSTRING(s FROM 2 FOR 3)", ["bcd", " ab", "aby", "", None, "b", "ab"]),
    ("CHAR_LENGTH(s)", [6, 6, 4, 0, None, 2, 3]),
    ("TRIM(BOTH 'a' FROM s)", ["bcdef", "  ab  ", "xaby", "", None, "b", "bab"]),
    ("TRIM(s, 'xy')", ["abcdef", "  ab  ", "ab", "", None, "ab", "bab"]),
    ("a ^ 2", [1.5625, 14.0625, 0.0, 10000.0, None, 6.25, 81.0]),
    ("i ** 2", [49, 49, 49, 49, 0, None, 4]),
    ("s LIKE '%'", [True, True, True, True, None, True, True]),
    ("s LIKE ''", [False, False, False, True, None, False, False]),
    # ROUND rounds halves to even, the engine's rule (documented; DuckDB and SQLite round them away from zero).
    ("ROUND(a)", [1.0, -4.0, 0.0, 100.0, None, 2.0, 9.0]),
    ("ROUND(i, -1)", [10, -10, 10, -10, 0, None, 0]),
]


@pytest.mark.parametrize(("code", "expected"), EXPECTED)
def test_values_follow_sql(code: str, expected: list[Any]) -> None:
    assert run(code) == expected, to_expression(code, list(TYPES))


def test_identifiers_fold_case_unless_quoted() -> None:
    types = {"Price": "int", "qty": "int"}
    rows = [{"Price": 3, "qty": 2}]
    assert to_expression('PRICE * "Price" + Qty', list(types)) == "((Price * Price) + qty)"
    assert run('price * "Price" + QTY', rows, types) == [11]


def test_literals_keep_their_text() -> None:
    assert to_expression("007 + 1.50 + .5 + 1e3 + 1_000", ["x"]) == "((((7 + 1.50) + 0.5) + 1e3) + 1000)"
    assert to_expression("'it''s' || '\"\\'", ["x"]) == "concat(\"it's\", '\"\\\\')"
    assert to_expression("TRUE OR FALSE OR NULL IS NULL", ["x"]) == "((True or False) or (None == None))"
    assert run("'it''s' || s", [{**ROWS[0]}]) == ["it'sabcdef"]


def test_the_output_is_parenthesised() -> None:
    assert (
        to_expression("-x * (y + 1) = 2 AND NOT x IS NULL", ["x", "y"]) == "((((-x) * (y + 1)) == 2) and (x != None))"
    )
    assert to_expression("x IN (1, -2)", ["x"]) == "(None if (x == None) else (x in [1, (-2)]))"
    assert to_expression("x % 3", ["x"]) == "((abs(x) % abs(3)) * (-1 if (x < 0) else 1))"


def test_deepest_allowed_nesting_compiles() -> None:
    code = "ABS(" * (MAX_DEPTH - 1) + "i" + ")" * (MAX_DEPTH - 1)
    assert run(code)[:2] == [7, 7]
    assert run("(" * (MAX_DEPTH - 1) + "i" + ")" * (MAX_DEPTH - 1))[:2] == [7, -7]


def test_nesting_does_not_depend_on_the_callers_stack() -> None:
    """The parser runs on a fresh thread: 31 nested calls need ~800 frames, more than are left here."""
    code = "ABS(" * (MAX_DEPTH - 1) + "i" + ")" * (MAX_DEPTH - 1)

    def deep(levels: int) -> str:
        return to_expression(code, ["i"]) if levels == 0 else deep(levels - 1)

    assert deep(700).startswith("abs(abs(")


@st.composite
def numbers(draw: st.DrawFn, depth: int = 3, integer: bool = False) -> str:
    """A random SQL number expression over the columns (ints only where ``integer``): SQLite divides ints to an int
    and truncates floats for ``%``, so ``/`` takes floats and ``%`` ints."""
    leaves = ["i", "j", "0", "1", "2", "-3", "7"] + ([] if integer else ["a", "b", "0.5", "2.25", "-1.5"])
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(leaves))
    sub = numbers(depth - 1, integer)
    kind = draw(st.sampled_from(["+", "-", "*", "%", "/", "neg", "abs", "coalesce", "case", "simple", "nullif", "()"]))
    if kind == "%":
        return f"({draw(numbers(depth - 1, True))} % {draw(numbers(depth - 1, True))})"  # no float operand
    if kind == "/" and not integer:
        return f"(CAST({draw(sub)} AS DOUBLE) / ({draw(sub)}))"
    if kind in ("+", "-", "*"):
        return f"{draw(sub)} {kind} {draw(sub)}"
    if kind == "neg":
        return f"-({draw(sub)})"
    if kind == "abs":
        return f"ABS({draw(sub)})"
    if kind == "coalesce":
        return f"COALESCE({draw(sub)}, {draw(sub)})"
    if kind == "case":
        default = draw(st.sampled_from(["", f" ELSE {draw(sub)}"]))
        return f"CASE WHEN {draw(conditions(depth - 1))} THEN {draw(sub)}{default} END"
    if kind == "simple":
        return f"CASE {draw(numbers(depth - 1, True))} WHEN 7 THEN {draw(sub)} WHEN -7 THEN {draw(sub)} END"
    if kind == "nullif":
        return f"NULLIF({draw(sub)}, {draw(sub)})"
    return f"({draw(sub)})"


@st.composite
def conditions(draw: st.DrawFn, depth: int = 3) -> str:
    sub = numbers(max(depth - 1, 0))
    kind = draw(st.sampled_from(["cmp", "and", "or", "not", "null", "between", "in", "notin"]))
    if kind in ("and", "or") and depth > 0:
        return f"({draw(conditions(depth - 1))} {kind.upper()} {draw(conditions(depth - 1))})"
    if kind == "not" and depth > 0:
        return f"NOT ({draw(conditions(depth - 1))})"
    if kind == "null":
        return f"{draw(sub)} IS {draw(st.sampled_from(['', 'NOT ']))}NULL"
    if kind == "between":
        return f"{draw(sub)} {draw(st.sampled_from(['', 'NOT ']))}BETWEEN {draw(sub)} AND {draw(sub)}"
    if kind in ("in", "notin"):
        values = draw(st.lists(st.sampled_from(["-7", "0", "2", "7", "NULL"]), min_size=1, max_size=4))
        negate = "NOT " if kind == "notin" else ""
        return f"{draw(numbers(max(depth - 1, 0), True))} {negate}IN ({', '.join(values)})"
    return f"{draw(sub)} {draw(st.sampled_from(['=', '<>', '!=', '<', '<=', '>', '>=']))} {draw(sub)}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(numbers(), conditions()))
def test_random_expressions_match_sqlite(code: str) -> None:
    matches_sqlite(code)


# -- refusals ------------------------------------------------------------------------------------------------------

PARAMETERS = ["price", "discount_rate", "s"]
REFUSED: list[tuple[str, str, int, int]] = [
    # statements and queries
    ("1; DROP TABLE t", "only one expression is allowed: found ';'", 1, 2),
    ("price;", "only one expression is allowed: found ';'", 1, 6),
    ("DROP TABLE t", "statements are not allowed: DROP", 1, 1),
    ("PRAGMA version", "statements are not allowed: PRAGMA", 1, 1),
    ("ATTACH 'x.db' AS x", "statements are not allowed: ATTACH", 1, 1),
    ("COPY t TO 'x.csv'", "statements are not allowed: COPY", 1, 1),
    ("INSERT INTO t VALUES (1)", "statements are not allowed: INSERT", 1, 1),
    ("SELECT 1", "subqueries are not allowed", 1, 1),
    ("(SELECT 1)", "subqueries are not allowed", 1, 2),
    ("price + (SELECT max(price) FROM t)", "subqueries are not allowed", 1, 10),
    ("price IN (SELECT price FROM t)", "subqueries are not allowed", 1, 11),
    ("EXISTS (SELECT 1)", "subqueries are not allowed", 1, 9),
    ("WITH a AS (SELECT 1) SELECT * FROM a", "subqueries are not allowed", 1, 1),
    ("SELECT 1 UNION SELECT 2", "subqueries are not allowed", 1, 1),
    # tables, table functions, unknown functions
    ("read_csv('x.csv')", "unknown function read_csv", 1, 1),
    ("price + read_parquet('x')", "unknown function read_parquet", 1, 9),
    ("foo(price)", "unknown function foo", 1, 1),
    ("  now()", "unknown function now", 1, 3),
    ("md5(s)", "unknown function md5", 1, 1),
    # comments
    ("price -- x", "comments are not allowed", 1, 7),
    ("price /* c */ + 1", "comments are not allowed", 1, 7),
    ("/* c */", "comments are not allowed", 1, 1),
    ("-- only", "comments are not allowed", 1, 1),
    ("price\n  -- x\n  + 1", "comments are not allowed", 2, 3),
    # placeholders
    ("?", "placeholders and parameters are not allowed: found '?'", 1, 1),
    ("price * ?", "placeholders and parameters are not allowed: found '?'", 1, 9),
    (":x", "placeholders and parameters are not allowed: found ':'", 1, 1),
    ("price + $1", "placeholders and parameters are not allowed: found '$'", 1, 9),
    ("@price", "placeholders and parameters are not allowed: found '@'", 1, 1),
    # stars, qualified names, aggregates, windows
    ("*", "'*' is not allowed", 1, 1),
    ("t.price", "qualified names are not allowed: t.price", 1, 1),
    ("1 + main.t.price", "qualified names are not allowed: main.t.price", 1, 5),
    ("SUM(price)", "aggregate function SUM is not allowed", 1, 1),
    ("COUNT(*)", "aggregate function COUNT is not allowed", 1, 1),
    ("price / avg(price)", "aggregate function avg is not allowed", 1, 9),
    ("ROW_NUMBER() OVER ()", "window functions (OVER) are not allowed", 1, 1),
    ("SUM(price) OVER (PARTITION BY s)", "window functions (OVER) are not allowed", 1, 1),
    # names
    ("foo", "unknown name 'foo': the parameters are price, discount_rate, s", 1, 1),
    ("price +\n  Discount", "unknown name 'Discount': the parameters are", 2, 3),
    ('"Price"', 'unknown name "Price" (a quoted name matches its case exactly)', 1, 1),
    # NULL comparisons
    ("price = NULL", "comparison with NULL is always NULL in SQL: use IS NULL", 1, 1),
    ("NULL <> price", "comparison with NULL is always NULL in SQL: use IS NULL", 1, 1),
    ("price IS NULL OR (NULL) < price", "comparison with NULL is always NULL", 1, 19),
    ("price > (NULL)", "comparison with NULL is always NULL", 1, 1),
    ("price BETWEEN NULL AND 1", "comparison with NULL is always NULL", 1, 1),
    ("NULL IN (1, 2)", "comparison with NULL is always NULL", 1, 1),
    ("CASE price WHEN NULL THEN 1 END", "CASE x WHEN NULL never matches in SQL", 1, 6),
    ("price IS TRUE", "only IS NULL and IS NOT NULL are allowed", 1, 1),
    ("price IS DISTINCT FROM 1", "IS [NOT] DISTINCT FROM is not allowed", 1, 1),
    # forms that do not map cleanly
    ("CAST(price AS BOOLEAN)", "CAST to BOOLEAN is not allowed", 1, 6),
    ("CAST(price AS DECIMAL(10, 2))", "CAST to DECIMAL(10, 2) is not allowed", 1, 6),
    ("CAST(price AS DATE)", "CAST to DATE is not allowed", 1, 6),
    ("TRY_CAST(price AS INT)", "TRY_CAST is not allowed", 1, 10),
    ("SUBSTR(s, price)", "SUBSTR: the start must be a constant integer >= 1", 1, 11),
    ("SUBSTRING(s, 0, 2)", "SUBSTRING: the start must be a constant integer >= 1", 1, 14),
    ("SUBSTR(s, 1, -1)", "SUBSTR: the length must be a constant integer >= 0", 1, 15),
    ("ROUND(price, discount_rate)", "ROUND: the number of decimals must be a constant integer", 1, 14),
    ("REPLACE(s, s, 'x')", "REPLACE: the searched and the new text must be constant strings", 1, 12),
    ("REPLACE(s, 'a')", "REPLACE takes 3 arguments", 1, 1),
    ("LTRIM(s)", "LTRIM: only TRIM of both ends is allowed", 1, 1),
    ("TRIM(LEADING 'x' FROM s)", "TRIM: only TRIM of both ends is allowed", 1, 14),
    ("s LIKE 'a_c'", "this LIKE pattern is not allowed", 1, 8),
    ("s LIKE 'a%c'", "this LIKE pattern is not allowed", 1, 8),
    ("s LIKE s", "LIKE needs a constant string pattern", 1, 1),
    ("s LIKE 'a%' ESCAPE '!'", "LIKE ... ESCAPE is not allowed", 1, 1),
    ("s ILIKE 'a%'", "ILIKE is not allowed", 1, 1),
    ("price // 2", "integer division '//' is not allowed", 1, 1),
    ("price IN (discount_rate)", "IN lists may hold only literals", 1, 11),
    ("s[1]", "subscripts are not allowed", 1, 1),
    ("[1, 2]", "lists are not allowed", 1, 2),
    ("price AS p", "aliases are not allowed", 1, 1),
    ("price discount_rate", "aliases are not allowed", 1, 1),
    ("LENGTH(s, 1)", "LENGTH: this argument or option is not allowed", 1, 11),
    # syntax
    ("", "the code is empty", 1, 1),
    ("  \n ", "the code is empty", 1, 1),
    ("price +", "syntax error", 1, 7),
    ("'abc", "syntax error", 1, 1),
    ("price\n + )", "syntax error", 2, 4),
]


@pytest.mark.parametrize(("code", "message", "line", "col"), REFUSED)
def test_refused(code: str, message: str, line: int, col: int) -> None:
    with pytest.raises(UdfCompileError) as caught:
        to_expression(code, PARAMETERS)
    assert message in str(caught.value)
    assert (caught.value.line, caught.value.col) == (line, col), str(caught.value)
    assert caught.value.fields["language"] == "sql"


def test_reserved_words_cannot_be_parameters() -> None:
    with pytest.raises(UdfCompileError, match="parameter 'class' cannot be used"):
        to_expression('"class" + 1', ["class"])
    with pytest.raises(UdfCompileError, match="is ambiguous"):
        to_expression("ab", ["AB", "ab"])
    assert to_expression('"ab" + "AB"', ["AB", "ab"]) == "(ab + AB)"


def test_no_parameters() -> None:
    assert to_expression("1 + 1", []) == "(1 + 1)"
    with pytest.raises(UdfCompileError, match="unknown name 'x': the parameters are none"):
        to_expression("x", [])


def test_over_long_code() -> None:
    with pytest.raises(UdfCompileError, match=f"longer than {MAX_CODE} characters") as caught:
        to_expression("1" + " + 1" * 1000, ["x"])
    assert (caught.value.line, caught.value.col) == (1, MAX_CODE + 1)
    assert to_expression(" " * (MAX_CODE - 1) + "1", ["x"]) == "1"


def deep_codes() -> Iterator[tuple[str, str]]:
    yield "200 parentheses", "(" * 200 + "x" + ")" * 200
    yield "1900 parentheses", "(" * 1900 + "x" + ")" * 1900
    yield "5000 parentheses", "(" * 5000 + "x" + ")" * 5000
    yield "33 parentheses", "(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH
    yield "33 calls", "ABS(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH
    yield "150 CASEs", "CASE WHEN x THEN " * 150 + "1" + " END" * 150
    yield "1500 minus signs", "- " * 1500 + "x"
    yield "900 NOTs", "NOT " * 900 + "x"
    yield "a long chain", " + ".join(["x"] * 900)
    yield "an unclosed nest", "(" * 3000


@pytest.mark.parametrize(("what", "code"), list(deep_codes()))
def test_over_deep_nesting_is_a_clean_error(what: str, code: str) -> None:
    with pytest.raises(UdfCompileError) as caught:
        to_expression(code, ["x"])
    assert any(m in str(caught.value) for m in (f"nested more than {MAX_DEPTH} levels", "longer than")), what
    assert caught.value.line == 1 and 1 <= caught.value.col <= len(code) + 1


def test_long_case_that_the_engine_could_not_nest() -> None:
    code = "CASE " + " ".join(f"WHEN x = {k} THEN {k}" for k in range(80)) + " END"
    with pytest.raises(UdfCompileError, match="translated expression is nested more than 64 levels"):
        to_expression(code, ["x"])


# -- garbage -------------------------------------------------------------------------------------------------------

WORDS = [
    *[
        "(",
        ")",
        ",",
        ";",
        "+",
        "-",
        "*",
        "/",
        "%",
        "||",
        "=",
        "<>",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        ".",
        ":",
        "::",
        "?",
        "@",
        "$",
        "[",
        "]",
        "{",
        "}",
        "'",
        '"',
        "--",
        "/*",
        "*/",
        "^",
        "**",
        "//",
        "~",
        "&",
        "|",
    ],
    *[
        "SELECT",
        "FROM",
        "WHERE",
        "WITH",
        "UNION",
        "AS",
        "AND",
        "OR",
        "NOT",
        "IS",
        "NULL",
        "IN",
        "BETWEEN",
        "LIKE",
        "ILIKE",
        "ESCAPE",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
    ],
    *[
        "CAST",
        "TRY_CAST",
        "INT",
        "VARCHAR",
        "BOOLEAN",
        "DOUBLE",
        "TRUE",
        "FALSE",
        "OVER",
        "PARTITION",
        "BY",
        "ORDER",
        "DROP",
        "TABLE",
        "PRAGMA",
        "ATTACH",
    ],
    *[
        "ABS",
        "ROUND",
        "LOG",
        "LN",
        "SUBSTR",
        "SUBSTRING",
        "TRIM",
        "BOTH",
        "LEADING",
        "FOR",
        "REPLACE",
        "CONCAT",
        "COALESCE",
        "NULLIF",
        "LEAST",
        "SUM",
        "COUNT",
    ],
    *[
        "read_csv",
        "foo",
        "a",
        "i",
        "s",
        "t.a",
        '"a"',
        '"A"',
        "1",
        "0",
        "-1",
        "1.5",
        ".5",
        "1e3",
        "007",
        "'a'",
        "'a%'",
        "''",
        "'it''s'",
        "$1",
        ":x",
        "@x",
    ],
]


# The forms where SQLite is no oracle, as the translation follows DuckDB (sandbox.sql's docstring; EXPECTED pins them).
SQLITE_DIFFERS = re.compile(
    r"/"  # divides ints exactly
    r"|%|\bMOD\b"  # the remainder of floats
    r"|\bROUND\b"  # halves to even
    r"|\b(VARCHAR|TEXT|STRING)\b"  # CAST to text writes values as str() does
    r"|\bCAST\b.*('|\bs\b)|('|\bs\b).*\bCAST\b"  # CAST of text that is not a number: SQLite reads 0, we fail the cell
    r"|'\s+'",  # adjacent string literals: SQL joins them, SQLite reads a value and its alias
    re.IGNORECASE | re.DOTALL,
)


def adds_strings(code: str) -> bool:
    """Whether the translation of ``code`` (given only the names) puts strings under the engine's '+', which joins
    them: accepted code never may (test_plus_does_not_join_strings)."""
    schema = build_schema("t", TYPES, None)
    tree = ast.parse(to_expression(code, list(TYPES)), mode="eval")
    return any(
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Add)
        and compile_expression(ast.unparse(node), schema).type == "string"
        for node in ast.walk(tree)
    )


def refused_or_like_sqlite(code: str) -> bool:
    """``code`` is refused with a clean error (a 400), or it compiles, runs, and computes what SQLite computes;
    returns whether it was accepted."""
    try:
        run(code)
    except UdfCompileError as exc:  # refused by the translation, at a place in the code
        assert exc.line >= 1 and exc.col >= 1 and exc.fields["language"] == "sql", exc
        return False
    except engine.UserError:  # translated, then refused by the engine's type checks ("s * 2"), as registering does
        return False
    assert not adds_strings(code), code
    if SQLITE_DIFFERS.search(code):
        return True
    try:
        sqlite(code)
    except sqlite3.OperationalError:  # not SQLite's SQL: "x::INT", "a ^ 2", CONCAT, LEAST (EXPECTED has them)
        return True
    matches_sqlite(code)
    return True


def test_plus_does_not_join_strings() -> None:
    """SQL's '+' adds numbers (SQLite reads 'ab' + 'c' as 0 + 0, DuckDB refuses it): it must not concatenate."""
    with pytest.raises(engine.UserError):
        run("s + 'x'")


PLUS_REFUSED: list[tuple[str, str, int, int]] = [
    # the '+' is pointed at, also after brackets, a line break, a unary '+', or a NULL that sqlglot keeps no place of
    ("s + 'x'", "string", 1, 3),
    ("'ab' + 'c'", "string", 1, 6),
    ("i + (s)", "string", 1, 3),
    ("(s) + NULL", "string", 1, 5),
    ("NULL + s", "string", 1, 6),
    ("(NULL) + (+s)", "string", 1, 8),
    ("s +\n  +'x'", "string", 1, 3),
    ("i + j + s", "string", 1, 7),
    ("1 + (s || 'a')", "string", 1, 3),
    ("CAST(i + 1 AS VARCHAR) + s", "string", 1, 24),
    ("UPPER(s) + LOWER(s)", "string", 1, 10),
    ("CASE WHEN i > 0 THEN s ELSE 'n' END + 'x'", "string", 1, 37),
    ("ABS(i + s)", "string", 1, 7),
    ("flag + 1", "bool", 1, 6),
    ("TRUE + i", "bool", 1, 6),
]


@pytest.mark.parametrize(("code", "type_", "line", "col"), PLUS_REFUSED)
def test_plus_of_other_than_numbers_is_refused_at_the_plus(code: str, type_: str, line: int, col: int) -> None:
    with pytest.raises(UdfCompileError) as caught:
        to_expression(code, TYPES)
    assert str(caught.value).startswith(f"code: '+' adds numbers, not {type_} values; '||' joins strings"), caught.value
    assert (caught.value.line, caught.value.col) == (line, col), str(caught.value)
    assert caught.value.fields["language"] == "sql"
    to_expression(code, list(TYPES))  # given only the names, the types are not known: translated as before


@pytest.mark.parametrize("code", [c for c in AGAINST_SQLITE + [c for c, _ in EXPECTED] if "+" in c])
def test_numeric_plus_translates_as_without_types(code: str) -> None:
    """Knowing the parameters' types refuses only; the text of every translation it accepts is what it was."""
    assert to_expression(code, TYPES) == to_expression(code, list(TYPES))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=120))
def test_random_text_is_refused_or_like_sqlite(code: str) -> None:
    if refused_or_like_sqlite(code):
        target(float(len(code)), label="length of accepted text")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(WORDS), max_size=25), st.sampled_from([" ", "", "\n"]))
def test_token_soup_is_refused_or_like_sqlite(words: list[str], separator: str) -> None:
    if refused_or_like_sqlite(separator.join(words)):  # steer towards longer soups that are accepted
        target(float(len(words)), label="words in an accepted soup")
