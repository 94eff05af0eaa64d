"""Expression compilation: Python-syntax text to one vectorised Arrow expression. Pure, no Ray."""

from __future__ import annotations

import datetime as dt
import pickle
import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ColumnNotFound, InvalidExpression, InvalidRequest
from engine.expr.compiler import compile_expression
from engine.expr.core import MAX_LENGTH, Compiled
from engine.model.schema import build_schema
from engine.registry import Registry, hookimpl, install, uninstall

SCHEMA = build_schema(
    "t",
    {
        "a": "int",
        "b": "int",
        "f": "float",
        "g": "float",
        "s": "string",
        "u": "string",
        "ok": "bool",
        "no": "bool",
        "at": "timestamp",
        "day": "date",
        "pic": "image",
        "j": "json",
    },
    None,
)
ARROW = pa.schema([SCHEMA.arrow_schema().field(name) for name in SCHEMA.names])
T, F, N = True, False, None
JAN2 = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)


def rows(**columns: list[Any]) -> list[dict[str, Any]]:
    """Column-wise test data as rows: ``rows(a=[1, 2], b=[3, 4])``."""
    n = len(next(iter(columns.values())))
    return [{name: values[i] for name, values in columns.items()} for i in range(n)]


def evaluate(text: str, data: list[dict[str, Any]]) -> list[Any]:
    """Compile, then evaluate the way the engine does: a projection over a dataset."""
    table = pa.Table.from_pylist(data, schema=ARROW)
    compiled = compile_expression(text, SCHEMA)
    return ds.dataset(table).to_table(columns={"x": compiled.expr})["x"].to_pylist()


KLEENE = rows(ok=[T, T, T, F, F, F, N, N, N], no=[T, F, N, T, F, N, T, F, N])
SIGNS = rows(a=[7, -7, 7, -7, 0, None], b=[2, 2, -2, -2, 3, 1])
FSIGNS = rows(f=[7.5, -7.5, 7.5, -7.5, 1.0], g=[2.0, 2.0, -2.0, -2.0, 0.1])

CASES: list[tuple[str, list[dict[str, Any]], list[Any]]] = [
    # arithmetic: ints stay ints, a float makes a float, nulls propagate
    ("a + b", rows(a=[1, -2, None], b=[2, 3, 4]), [3, 1, None]),
    ("a - b", rows(a=[1, -2, None], b=[2, 3, 4]), [-1, -5, None]),
    ("a * b", rows(a=[3, -2, 5], b=[2, 3, None]), [6, -6, None]),
    ("a + 1.5", rows(a=[1, None]), [2.5, None]),
    ("f * 2 - g", rows(f=[1.25, None], g=[0.5, 1.0]), [2.0, None]),
    ("a + b * 3 - a", rows(a=[1, 2], b=[2, -3]), [6, -9]),
    ("(a + b) * 3", rows(a=[1, 2], b=[2, -3]), [9, -3]),
    ("-a", rows(a=[1, -2, None]), [-1, 2, None]),
    ("+a", rows(a=[1, -2]), [1, -2]),
    ("-f", rows(f=[1.5, -0.5]), [-1.5, 0.5]),
    ("- -a", rows(a=[4]), [4]),
    ("-9223372036854775808", rows(a=[1]), [-(2**63)]),
    # true division is always float
    ("a / b", rows(a=[1, 7, -7, None], b=[2, 2, 2, 1]), [0.5, 3.5, -3.5, None]),
    ("7 / 2", rows(a=[1]), [3.5]),
    ("f / a", rows(f=[3.0], a=[2]), [1.5]),
    # floor division and modulo floor like Python, negatives included
    ("a // b", SIGNS, [3, -4, -4, 3, 0, None]),
    ("a % b", SIGNS, [1, 1, -1, -1, 0, None]),
    ("f // g", FSIGNS, [3.0, -4.0, -4.0, 3.0, 9.0]),  # Python's 1.0 // 0.1 is 9.0, not floor(1.0 / 0.1)
    ("f % g", FSIGNS, [1.5, 0.5, -0.5, -1.5, 1.0 % 0.1]),
    ("a % 2.5", rows(a=[7, -7]), [2.0, 0.5]),
    ("a // 2.0", rows(a=[7, -7]), [3.0, -4.0]),
    ("a // -2 + a % -2", rows(a=[7, -7]), [-4 + -1, 3 + -1]),
    # powers: int ** non-negative int literal stays int, anything else is float
    ("a ** 2", rows(a=[3, -2, None]), [9, 4, None]),
    ("a ** 0", rows(a=[3]), [1]),
    ("a ** -1", rows(a=[2, -4]), [0.5, -0.25]),
    ("a ** b", rows(a=[2, 3], b=[3, -1]), [8.0, 1 / 3]),
    ("f ** 2", rows(f=[1.5]), [2.25]),
    ("2 ** 0.5 * 2 ** 0.5", rows(a=[1]), [2**0.5 * 2**0.5]),
    # string concatenation
    ("s + u", rows(s=["ab", "x", None], u=["cd", "", "y"]), ["abcd", "x", None]),
    ("s + '!'", rows(s=["hi", None]), ["hi!", None]),
    ("'<' + pic + '>'", rows(pic=["p.png"]), ["<p.png>"]),
    # comparisons, mixed int / float, strings, chains
    ("a == b", rows(a=[1, 2, 3, None], b=[2, 2, 2, 2]), [F, T, F, N]),
    ("a != b", rows(a=[1, 2, 3, None], b=[2, 2, 2, 2]), [T, F, T, N]),
    ("a < b", rows(a=[1, 2, 3], b=[2, 2, 2]), [T, F, F]),
    ("a <= b", rows(a=[1, 2, 3], b=[2, 2, 2]), [T, T, F]),
    ("a > b", rows(a=[1, 2, 3], b=[2, 2, 2]), [F, F, T]),
    ("a >= b", rows(a=[1, 2, 3], b=[2, 2, 2]), [F, T, T]),
    ("a < f", rows(a=[1, 2], f=[1.5, 1.5]), [T, F]),
    ("a == 2.0", rows(a=[2, 3]), [T, F]),
    ("s < 'm'", rows(s=["a", "z", None]), [T, F, N]),
    ("pic == 'p.png'", rows(pic=["p.png", "q.png"]), [T, F]),
    ("ok == True", rows(ok=[T, F, N]), [T, F, N]),
    ("0 < a < 10", rows(a=[-1, 5, 10, None]), [F, T, F, N]),
    ("0 <= a < b <= 10", rows(a=[0, 5, 5, 1], b=[3, 5, 11, 10]), [T, F, F, T]),
    ("a == b == 2", rows(a=[2, 2, 1], b=[2, 3, 1]), [T, F, F]),
    # == None / != None test for null, as in Python
    ("a == None", rows(a=[1, None]), [F, T]),
    ("None != s", rows(s=["x", None]), [T, F]),
    ("None == None", rows(a=[1]), [T]),
    # strings compared with timestamp and date columns are read as ISO-8601
    ("at > '2024-01-01'", rows(at=[JAN2, dt.datetime(2023, 6, 1, tzinfo=dt.UTC), None]), [T, F, N]),
    ("day == '2024-01-02'", rows(day=[dt.date(2024, 1, 2), dt.date(2024, 1, 3)]), [T, F]),
    # Kleene logic: null is 'unknown'
    ("ok and no", KLEENE, [T, F, N, F, F, F, N, F, N]),
    ("ok or no", KLEENE, [T, T, T, T, F, N, T, N, N]),
    ("not ok", rows(ok=[T, F, N]), [F, T, N]),
    ("ok and None", rows(ok=[T, F]), [N, F]),
    ("ok or no or a > 0", rows(ok=[F, F], no=[F, F], a=[1, -1]), [T, F]),
    ("a > 0 and s == 'x'", rows(a=[1, 1, -1], s=["x", "y", "x"]), [T, F, F]),
    ("not (a > 0 or b > 0)", rows(a=[1, -1], b=[-1, -1]), [F, T]),
    # conditional expressions; int and float branches make a float
    ("a if ok else b", rows(ok=[T, F, N], a=[1, 2, 3], b=[10, 20, 30]), [1, 20, None]),
    ("a if ok else f", rows(ok=[T, F], a=[1, 2], f=[0.5, 0.25]), [1.0, 0.25]),
    ("s if a > 0 else None", rows(a=[1, -1], s=["x", "y"]), ["x", None]),
    ("'pos' if a > 0 else 'neg' if a < 0 else 'zero'", rows(a=[3, -3, 0]), ["pos", "neg", "zero"]),
    # membership with typed literal sets
    ("a in [1, 3]", rows(a=[1, 2, 3, None]), [T, F, T, F]),
    ("a not in (1, 3)", rows(a=[1, 2, 3, None]), [F, T, F, T]),
    ("a in [-1, +2]", rows(a=[-1, 2, 1]), [T, T, F]),
    ("a in [1, None]", rows(a=[1, None, 2]), [T, T, F]),
    ("s in {'x', 'y'}", rows(s=["x", "z", None]), [T, F, F]),
    ("f in [1, 2.5]", rows(f=[1.0, 2.5, 3.0]), [T, T, F]),
    ("at in ['2024-01-02']", rows(at=[JAN2, dt.datetime(2024, 1, 3, tzinfo=dt.UTC)]), [T, F]),
    ("a in []", rows(a=[1]), [F]),
    # literals broadcast
    ("1 + 2", rows(a=[None, None]), [3, 3]),
    ("'x'", rows(a=[1]), ["x"]),
    ("None", rows(a=[1]), [None]),
    ("(a +\n  b)", rows(a=[1], b=[2]), [3]),
]


@pytest.mark.parametrize(("text", "data", "expected"), CASES, ids=[c[0] for c in CASES])
def test_evaluates_like_python(text: str, data: list[dict[str, Any]], expected: list[Any]) -> None:
    assert evaluate(text, data) == expected


TYPES = [
    ("a + b", "int"),
    ("a + f", "float"),
    ("a / b", "float"),
    ("a // b", "int"),
    ("a % b", "int"),
    ("f // a", "float"),
    ("a ** 2", "int"),
    ("a ** -2", "float"),
    ("a ** b", "float"),
    ("-a", "int"),
    ("s + u", "string"),
    ("s + pic", "string"),
    ("a < b", "bool"),
    ("a in [1]", "bool"),
    ("not ok", "bool"),
    ("ok and no", "bool"),
    ("a if ok else f", "float"),
    ("None if ok else s", "string"),
    ("pic if ok else pic", "image"),
    ("1", "int"),
    ("1.0", "float"),
    ("'x'", "string"),
    ("True", "bool"),
    ("None", "null"),
    ("at", "timestamp"),
    ("day", "date"),
    ("pic", "image"),
    ("j", "json"),
]


@pytest.mark.parametrize(("text", "type_"), TYPES, ids=[t[0] for t in TYPES])
def test_infers_the_result_type(text: str, type_: str) -> None:
    assert compile_expression(text, SCHEMA).type == type_


@pytest.mark.parametrize(
    ("text", "columns"),
    [
        ("1 + 2", set()),
        ("a + b * a", {"a", "b"}),
        ("s if ok else u", {"s", "ok", "u"}),
        ("0 < a < f", {"a", "f"}),
        ("a in [1, 2]", {"a"}),
        ("not (ok or a == None)", {"ok", "a"}),
    ],
)
def test_reports_the_columns_it_reads(text: str, columns: set[str]) -> None:
    assert compile_expression(text, SCHEMA).columns == frozenset(columns)


def test_compiled_expressions_compare_by_value_and_pickle() -> None:
    """Plans hold compiled expressions and cross to shard actors, so they need value equality and pickling."""
    first, again = compile_expression("a + 1", SCHEMA), compile_expression("a+1", SCHEMA)
    assert first == again and hash(first) == hash(again)
    assert first != compile_expression("a + 2", SCHEMA)
    assert pickle.loads(pickle.dumps(first)) == first


REJECTED: list[tuple[str, str, int, int]] = [
    # (text, what the message must name, line, col)
    ("a + f.real", "attribute access is not allowed", 1, 5),
    ("absolute(a)", "function calls are not allowed ('absolute' is not a known function)", 1, 1),
    ("__import__('os')", "function calls are not allowed", 1, 1),
    ("a.b()", "function calls are not allowed", 1, 1),
    ("a[0]", "subscripts are not allowed", 1, 1),
    ("lambda: 1", "lambdas are not allowed", 1, 1),
    ("[x for x in a]", "comprehensions are not allowed", 1, 1),
    ("(y := 1)", "assignment expressions (:=) are not allowed", 1, 2),
    ("f'{a}'", "f-strings are not allowed", 1, 1),
    ("a in [*b]", "starred expressions are not allowed", 1, 7),
    ("{1: 2}", "dict literals are not allowed", 1, 1),
    ("[1, 2]", "only allowed on the right of 'in'", 1, 1),
    ("(yield)", "yield is not allowed", 1, 2),
    ("a in b", "the right side of 'in' must be a list", 1, 6),
    ("a not in s + u", "the right side of 'not in' must be a list", 1, 10),
    ("a in [b]", "the right side of 'in' may hold only literals", 1, 7),
    ("a in [1] == ok", "only allowed on the right of 'in'", 1, 6),
    ("a is None", "'is' comparisons are not allowed", 1, 1),
    ("a & b", "operator '&' is not allowed", 1, 1),
    ("a @ b", "operator '@' is not allowed", 1, 1),
    ("~a", "operator '~' is not allowed", 1, 1),
    # type errors name the operator and the operand types
    ("s * 2", "operator '*' does not apply to string and int", 1, 1),
    ("'a' < 1", "operator '<' does not apply to string and int", 1, 1),
    ("not f", "operator 'not' needs a bool, got float", 1, 1),
    ("ok and a", "operator 'and' needs a bool, got int", 1, 8),
    ("ok + 1", "operator '+' does not apply to bool and int", 1, 1),
    ("-s", "operator '-' does not apply to string", 1, 1),
    ("a < None", "operator '<' does not apply to int and null", 1, 1),
    ("j == j", "operator '==' does not apply to json and json", 1, 1),
    ("at < 1", "operator '<' does not apply to timestamp and int", 1, 1),
    ("a if f else b", "the condition of 'if' needs a bool, got float", 1, 6),
    ("a if ok else s", "the branches of 'if' have incompatible types int and string", 1, 1),
    ("j in ['{}']", "operator 'in' does not apply to json", 1, 1),
    ("a in [1.5]", "'in' value does not fit int", 1, 7),
    ("at > 'soon'", "expected an ISO-8601 timestamp", 1, 6),
    # literals
    ("a + 99999999999999999999", "out of the 64-bit range", 1, 5),
    ("1e999", "float literal is not finite", 1, 1),
    ("b'x'", "bytes literals are not allowed", 1, 1),
    ("1j", "complex literals are not allowed", 1, 1),
    # size limits and syntax
    ("a + " * 2500 + "a", f"longer than {MAX_LENGTH} characters", 1, MAX_LENGTH + 1),
    ("-" * 200 + "1", "nested more than 64 levels deep", 1, 65),
    ("(" * 100 + "a" + " + 1)" * 100, "nested more than 64 levels deep", 1, 285),
    ("-" * 9999 + "1", "nested more than 64 levels deep", 1, 1),  # CPython's parser gives up first
    ("not " * 2400 + "a", "nested more than 64 levels deep", 1, 257),
    ("a" + " // b" * 11, "expands to more than 10000 operations", 1, 1),
    ("a +", "syntax error", 1, 4),
    ("a + * b", "syntax error", 1, 5),
    ("(a +\n  * b)", "syntax error", 2, 3),
    ("'é' + s.x", "attribute access is not allowed", 1, 7),  # columns count characters, not UTF-8 bytes
]


@pytest.mark.parametrize(("text", "names", "line", "col"), REJECTED, ids=[r[0][:40] for r in REJECTED])
def test_rejects_with_construct_and_position(text: str, names: str, line: int, col: int) -> None:
    with pytest.raises(InvalidExpression) as exc:
        compile_expression(text, SCHEMA)
    err = exc.value
    assert names in str(err)
    assert str(err).startswith("expr: ")
    assert str(err).endswith(f"(line {line}, col {col})")
    assert (err.line, err.col, err.field) == (line, col, "expr")
    assert isinstance(err, InvalidRequest)
    assert err.code == "invalid_expression"


def test_unknown_column_is_column_not_found() -> None:
    with pytest.raises(ColumnNotFound) as exc:
        compile_expression("balance - 10", SCHEMA, field="set.balance.expr")
    assert exc.value.fields == {"table": "t", "column": "balance"}
    assert "in set.balance.expr" in str(exc.value)


def test_error_names_the_field_and_survives_pickling() -> None:
    with pytest.raises(InvalidExpression) as exc:
        compile_expression("a.real", SCHEMA, field="set.a.expr")
    err = pickle.loads(pickle.dumps(exc.value))
    assert str(err) == "set.a.expr: attribute access is not allowed (line 1, col 1)"
    assert err.to_dict() == {
        "detail": str(err),
        "code": "invalid_expression",
        "expression": "a.real",
        "line": 1,
        "col": 1,
        "field": "set.a.expr",
    }


def test_registered_functions_are_callable() -> None:
    """Functions a plugin registers, as the built-in plugins do, are callable (here in a registry of that plugin
    alone, whose ``abs`` it is)."""

    def absolute(x: Compiled) -> Compiled:
        if x.type not in ("int", "float"):
            raise TypeError(f"needs a number, got {x.type}")
        return Compiled(pc.abs_checked(x.expr), x.type, x.columns, x.size + 1)

    class Absolute:
        @hookimpl
        def tessera_functions(self) -> dict[str, Any]:
            return {"abs": absolute}

    registry = Registry(plugins=[Absolute()])
    previous = install(registry)
    try:
        assert evaluate("abs(a) + 1", rows(a=[-3, 2, None])) == [4, 3, None]
        for text, message in [
            ("abs(s)", "abs(): needs a number, got string"),
            ("abs(a, b)", "abs(): "),
            ("abs(x=a)", "keyword"),
            ("round(a)", "'round' is not a known function"),  # the built-ins are plugins too, not registered here
        ]:
            with pytest.raises(InvalidExpression, match=re.escape(message)):
                compile_expression(text, SCHEMA)
    finally:
        uninstall(registry, previous)


@pytest.mark.parametrize(
    ("text", "data", "message"),
    [
        ("a * a", rows(a=[2**62]), "overflow"),
        ("a + 1", rows(a=[2**63 - 1]), "overflow"),
        ("-a", rows(a=[-(2**63)]), "overflow"),
        ("a ** 64", rows(a=[2]), "overflow"),
        ("a // b", rows(a=[1], b=[0]), "divide by zero"),
        ("a % b", rows(a=[1], b=[0]), "divide by zero"),
        ("f / g", rows(f=[1.0], g=[0.0]), "divide by zero"),
        ("a / 0", rows(a=[1]), "divide by zero"),
    ],
)
def test_overflow_and_division_by_zero_raise_at_evaluation(text: str, data: list[dict[str, Any]], message: str) -> None:
    """Compiling succeeds; evaluation raises ArrowInvalid, which the caller turns into a user error."""
    compile_expression(text, SCHEMA)
    with pytest.raises(pa.ArrowInvalid, match=message):
        evaluate(text, data)


PYTHON: dict[str, Callable[[int, int], int]] = {
    "a // b": lambda a, b: a // b,
    "a % b": lambda a, b: a % b,
    "a + b * 3 - a": lambda a, b: a + b * 3 - a,
}


small = st.one_of(st.none(), st.integers(-50, 50))
wide = st.integers(-(2**62), 2**62)  # past 2**53, where a float detour would lose digits
divisors = st.one_of(st.integers(-50, 50), st.integers(-(2**31), 2**31)).filter(lambda v: v != 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(small, wide), st.one_of(st.none(), divisors)), max_size=20))
def test_integer_arithmetic_matches_python(pairs: list[tuple[int | None, int | None]]) -> None:
    data = [{"a": a, "b": b} for a, b in pairs]
    for text, python in PYTHON.items():
        expected = [None if a is None or b is None else python(a, b) for a, b in pairs]
        assert evaluate(text, data) == expected, text


finite = st.floats(-1e12, 1e12, allow_nan=False)
# Where the quotient passes 2**52, float // may differ from Python's by one unit in the last place.
exact_quotient = st.tuples(finite, finite.filter(lambda v: v != 0)).filter(lambda p: abs(p[0] / p[1]) < 2**52)


@settings(max_examples=200, deadline=None)
@given(st.lists(exact_quotient, max_size=20))
def test_float_floor_division_and_modulo_match_python(pairs: list[tuple[float, float]]) -> None:
    data = [{"f": f, "g": g} for f, g in pairs]
    assert evaluate("f // g", data) == [f // g for f, g in pairs]
    assert evaluate("f % g", data) == [f % g for f, g in pairs]
