"""UDFs through the Python client: registration, the three languages, udf columns, execute, replace, drop, limits."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pytest

import engine
from engine.errors import (
    CellError,
    InvalidUdf,
    PluginError,
    UdfCompileError,
    UdfExists,
    UdfInUse,
    UdfLimitExceeded,
    UdfNotFound,
    UdfRuntimeError,
)
from engine.expr.core import StepResult
from engine.logical.udfs import define
from engine.model.schema import build_schema
from engine.model.udfs import Udf
from engine.registry import Registry, UdfLimits, hookimpl, install, uninstall

PARAMS = [{"name": "price", "type": "float"}, {"name": "discount_rate", "type": "float"}]
SEED = {
    "python": "def calculate_discount(price, discount_rate):\n    return price * (1 - discount_rate)",
    "sql": "price * (1 - discount_rate)",
    "javascript": ("function calculate_discount(price, discount_rate) { return price * (1 - discount_rate); }"),
}
# The same function with a statement: not a single expression, so it runs row by row in the sandbox.
ROW_BY_ROW = {
    "python": "def calculate_discount(price, discount_rate):\n    d = price * discount_rate\n    return price - d",
    "javascript": (
        "function calculate_discount(price, discount_rate) { const d = price * discount_rate; return price - d; }"
    ),
}


@pytest.fixture
def products(db: engine.Database, name: str) -> engine.Table:
    t = db.create_table(name, {"id": "int", "price": "float", "qty": "int", "label": "string"}, "id", shards=2)
    t.insert([{"id": i, "price": i * 12.5, "qty": i % 4, "label": f"item {i}"} for i in range(40)])
    t.insert([{"id": 40, "price": None, "qty": None, "label": None}])
    return t


def column(t: engine.Table, name: str) -> list[Any]:
    return [r[name] for r in t.query(order_by=[{"column": "id", "direction": "asc"}], limit=1000).to_pylist()]


def expected_discount(t: engine.Table, rate: float) -> list[Any]:
    return [None if p is None else p * (1 - rate) for p in column(t, "price")]


def close(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        (x is None and y is None) or (x is not None and y is not None and math.isclose(x, y))
        for x, y in zip(a, b, strict=True)
    )


# -- the seed example in all three languages ------------------------------------------------------------------------
@pytest.mark.parametrize("language", ["python", "sql", "javascript"])
def test_seed_example_gives_the_same_column(products: engine.Table, language: str) -> None:
    info = products.register_udf("calculate_discount", language, SEED[language], PARAMS, "float")
    assert info["inlined"] is True  # a single expression: compiled to the vectorised kernel
    assert info["language"] == language and info["usage_count"] == 0 and info["used_by"] == []
    products.add_computed_column("discounted", "udf", "calculate_discount(price, 0.2)")
    assert close(column(products, "discounted"), expected_discount(products, 0.2))
    assert products.udf("calculate_discount")["used_by"] == ["discounted"]


@pytest.mark.parametrize("language", ["python", "javascript"])
@pytest.mark.parametrize("stored", [True, False])
def test_row_by_row_udf_column(products: engine.Table, language: str, stored: bool) -> None:
    info = products.register_udf("calculate_discount", language, ROW_BY_ROW[language], PARAMS, "float")
    assert info["inlined"] is False
    products.add_computed_column("discounted", "udf", "calculate_discount(price, 0.2)", cache_results=stored)
    # A null price reaches the code as None / null: Python raises (a failing cell, null), JavaScript computes 0.
    values = column(products, "discounted")
    assert close(values[:40], expected_discount(products, 0.2)[:40])
    assert values[40] == (None if language == "python" else 0.0)
    # New rows are computed as they are written, through the shards' sandbox workers.
    products.insert([{"id": 100, "price": 10.0, "qty": 1, "label": "new"}])
    assert products.get(100)["discounted"] == pytest.approx(8.0)


def test_udf_inside_an_expression_column(products: engine.Table) -> None:
    products.register_udf("calculate_discount", "javascript", ROW_BY_ROW["javascript"], PARAMS, "float")
    products.add_computed_column("rounded", "expression", "round(calculate_discount(price, qty / 10) + 1, 2)")
    rows = products.query(where={"id": 7}).to_pylist()
    assert rows[0]["rounded"] == round(87.5 * (1 - 0.3) + 1, 2)


def test_arguments_are_converted_and_checked(products: engine.Table) -> None:
    products.register_udf("calculate_discount", "python", ROW_BY_ROW["python"], PARAMS, "float")
    products.add_computed_column("by_qty", "udf", "calculate_discount(qty, 0)")  # int -> float
    assert column(products, "by_qty")[:4] == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(engine.InvalidRequest, match=r"argument 1 \(price\) must be float, got string"):
        products.add_computed_column("bad", "udf", "calculate_discount(label, 0.2)")
    with pytest.raises(engine.InvalidRequest, match="takes 2 arguments, got 1"):
        products.add_computed_column("bad", "udf", "calculate_discount(price)")


# -- types and errors per row ---------------------------------------------------------------------------------------
TYPED = [
    # (language, code, parameters, return type, arguments, result)
    ("python", "def f(s):\n    return s.upper() + '!'", [("s", "string")], "string", {"s": "hi"}, "HI!"),
    ("javascript", "function f(s) { return s.toUpperCase() + '!' }", [("s", "string")], "string", {"s": "hi"}, "HI!"),
    ("python", "def f(n):\n    return n * 2", [("n", "int")], "int", {"n": 21}, 42),
    ("javascript", "function f(n) { return n * 2 }", [("n", "int")], "int", {"n": 21}, 42),
    ("python", "def f(b):\n    return not b", [("b", "bool")], "bool", {"b": False}, True),
    ("javascript", "function f(b) { return !b }", [("b", "bool")], "bool", {"b": False}, True),
    ("python", "def f(j):\n    return {'n': len(j['xs'])}", [("j", "json")], "json", {"j": {"xs": [1, 2]}}, {"n": 2}),
    ("javascript", "function f(j) { return {n: j.xs.length} }", [("j", "json")], "json", {"j": {"xs": [1]}}, {"n": 1}),
    (
        "python",
        "import datetime\ndef f(t):\n    return t + datetime.timedelta(days=1)",
        [("t", "timestamp")],
        "timestamp",
        {"t": "2024-01-02T03:04:05Z"},
        "2024-01-03T03:04:05Z",
    ),
    (
        "javascript",
        "function f(t) { return new Date(t.getTime() + 86400000) }",
        [("t", "timestamp")],
        "timestamp",
        {"t": "2024-01-02T03:04:05Z"},
        "2024-01-03T03:04:05Z",
    ),
    ("sql", "CASE WHEN n > 1 THEN 'many' ELSE 'few' END", [("n", "int")], "string", {"n": 3}, "many"),
    ("sql", "COALESCE(s, 'none') || '!'", [("s", "string")], "string", {"s": None}, "none!"),
]


@pytest.mark.parametrize(("language", "code", "params", "rtype", "args", "result"), TYPED)
def test_types_round_trip_through_execute(
    products: engine.Table, language: str, code: str, params: list[tuple[str, str]], rtype: str, args: Any, result: Any
) -> None:
    products.register_udf("f", language, code, [{"name": n, "type": t} for n, t in params], rtype)
    assert products.execute_udf("f", args) == result


@pytest.mark.parametrize(
    ("language", "code"),
    [("python", "def f(x):\n    return 'text'"), ("javascript", "function f(x) { return 'text' }")],
)
def test_a_wrong_result_type_is_an_error_not_a_corrupt_column(products: engine.Table, language: str, code: str) -> None:
    products.register_udf("f", language, code, [{"name": "x", "type": "float"}], "float")
    with pytest.raises(UdfRuntimeError, match=r"returned str(ing)?, expected float"):
        products.execute_udf("f", {"x": 1.0})
    products.add_computed_column("y", "udf", "f(price)")  # on_error null: every cell fails, none is corrupt
    assert set(column(products, "y")) == {None}
    assert products.computed_column("y")["errors"] == 41
    with pytest.raises(CellError, match=r"row"):
        products.add_computed_column("z", "udf", "f(price)", parameters={"on_error": "abort"})
    assert products.computed_column("y") and "z" not in [c["name"] for c in products.computed_columns()]


@pytest.mark.parametrize("inlined", [True, False])
def test_runtime_errors_fail_their_rows_only(products: engine.Table, inlined: bool) -> None:
    body = "    return 1 / (x - 25.0)" if inlined else "    d = x - 25.0\n    return 1 / d"
    products.register_udf("inverse", "python", f"def inverse(x):\n{body}", [{"name": "x", "type": "float"}], "float")
    assert products.udf("inverse")["inlined"] is inlined
    products.add_computed_column("inv", "udf", "inverse(price)")
    values = column(products, "inv")
    assert values[2] is None and values[3] == pytest.approx(1 / 12.5)  # price 25.0 divides by zero
    # Row by row, the null price fails too (None - 25.0); inlined, null arguments give null, as expressions do.
    assert products.computed_column("inv")["errors"] == (1 if inlined else 2)
    with pytest.raises(UdfRuntimeError, match="division by zero"):
        products.execute_udf("inverse", {"x": 25.0})


def test_deterministic_udfs_run_once_per_distinct_arguments(products: engine.Table) -> None:
    # A counter in the module's state shows how often the code ran (UDFs should not do this; here it is the probe).
    code = "calls = []\ndef tag(q):\n    calls.append(q)\n    return len(calls)"
    params = [{"name": "q", "type": "int"}]
    products.register_udf("tag", "python", code, params, "int", deterministic=True)
    products.add_computed_column("tagged", "udf", "tag(qty)")
    rows = products.query(limit=1000).to_pylist()
    distinct = len({r["qty"] for r in rows})  # 0..3 and null
    assert len({r["tagged"] for r in rows}) <= 2 * distinct  # once per distinct qty in each of the 2 shards
    products.register_udf("tag2", "python", code.replace("def tag", "def tag2"), params, "int")
    products.add_computed_column("tagged2", "udf", "tag2(qty)")
    assert len({r["tagged2"] for r in products.query(limit=1000).to_pylist()}) >= 20  # once per row


# -- registering ------------------------------------------------------------------------------------------------------
def test_register_errors(products: engine.Table) -> None:
    products.register_udf("calculate_discount", "sql", SEED["sql"], PARAMS, "float")
    with pytest.raises(UdfExists):
        products.register_udf("calculate_discount", "sql", SEED["sql"], PARAMS, "float")
    with pytest.raises(InvalidUdf, match="built-in function"):
        products.register_udf("upper", "sql", "s", [{"name": "s", "type": "string"}], "string")
    with pytest.raises(InvalidUdf, match="column"):
        products.register_udf("price", "sql", "1", [], "int")
    with pytest.raises(InvalidUdf, match=re.escape("language must be one of javascript, python, sql, not 'ruby'")):
        products.register_udf("g", "ruby", "1", [], "int")  # the languages the plugin registry provides
    with pytest.raises(InvalidUdf, match="return_type"):
        products.register_udf("g", "sql", "1", [], "decimal")
    with pytest.raises(InvalidUdf, match=r"parameters\[0\].type"):
        products.register_udf("g", "sql", "1", [{"name": "a", "type": "blob"}], "int")
    with pytest.raises(InvalidUdf, match="declared twice"):
        products.register_udf("g", "sql", "1", [{"name": "a", "type": "int"}, {"name": "A", "type": "int"}], "int")
    assert [u["name"] for u in products.udfs()] == ["calculate_discount"]


@pytest.mark.parametrize(
    ("language", "code", "line", "col", "words"),
    [
        ("python", "def f(x):\n    return x +* 2", 2, 15, "syntax error"),
        ("python", "def f(x):\n    return x.__class__", 2, 12, "__class__"),
        ("python", "import os\ndef f(x):\n    return x", 1, 1, "import of 'os' is not allowed"),
        ("python", "def g(x):\n    return x", 1, 1, "named 'f'"),
        ("python", "def f(y):\n    return y", 1, 1, "parameters (x)"),
        ("javascript", "function f(x) {\n  return x +* 2;\n}", 2, 13, "SyntaxError"),
        ("javascript", "function g(x) { return x }", 1, 1, "named 'f'"),
        ("sql", "x; DROP TABLE t", 1, 2, ""),
        ("sql", "x || 1", 1, 1, ""),  # compiles in SQL, but concat() takes strings: refused when registered
    ],
)
def test_compile_errors_name_line_and_column(
    products: engine.Table, language: str, code: str, line: int, col: int, words: str
) -> None:
    with pytest.raises(UdfCompileError) as info:
        products.register_udf("f", language, code, [{"name": "x", "type": "float"}], "float")
    assert (info.value.line, info.value.col) == (line, col), info.value.message
    assert words in info.value.message
    assert products.udfs() == []


def test_return_type_mismatch_keeps_python_row_by_row(products: engine.Table) -> None:
    # x / 2 is a float in the expression language: declared int, so it is not inlined; it runs (and fails) per row.
    info = products.register_udf(
        "half", "python", "def half(x):\n    return x / 2", [{"name": "x", "type": "int"}], "int"
    )
    assert info["inlined"] is False
    with pytest.raises(UdfRuntimeError, match="returned float, expected int"):
        products.execute_udf("half", {"x": 3})


# -- execute, replace, drop -------------------------------------------------------------------------------------------
def test_execute_checks_the_arguments_and_counts_calls(products: engine.Table) -> None:
    products.register_udf("calculate_discount", "javascript", ROW_BY_ROW["javascript"], PARAMS, "float")
    assert products.execute_udf("calculate_discount", {"price": 100, "discount_rate": 0.2}) == pytest.approx(80.0)
    with pytest.raises(engine.SchemaMismatch) as info:
        products.execute_udf("calculate_discount", {"price": "cheap", "rate": 1})
    locs = {e.loc for e in info.value.errors}
    assert locs == {("body", "price"), ("body", "rate"), ("body", "discount_rate")}
    assert products.udf("calculate_discount")["usage_count"] == 2
    with pytest.raises(UdfNotFound):
        products.execute_udf("nope", {})


def test_replace_marks_stored_columns_stale(products: engine.Table) -> None:
    products.register_udf("calculate_discount", "python", SEED["python"], PARAMS, "float")
    products.add_computed_column("discounted", "udf", "calculate_discount(price, 0.2)")
    products.add_computed_column("live", "udf", "calculate_discount(price, 0.5)", cache_results=False)
    before = products.udf("calculate_discount")
    twice = "def calculate_discount(price, discount_rate):\n    return 2 * price * (1 - discount_rate)"
    after = products.register_udf("calculate_discount", "python", twice, PARAMS, "float", replace=True)
    assert after["id"] == before["id"] and after["created_at"] == before["created_at"]
    assert after["updated_at"] >= before["updated_at"]
    assert products.computed_column("discounted")["stale"] is True
    assert products.computed_column("live")["stale"] is False  # computed when read: always current
    old = expected_discount(products, 0.2)
    assert close(column(products, "discounted"), old)  # stored values wait for a recompute
    assert close(column(products, "live"), [None if v is None else 2 * v * 0.5 / 0.8 for v in old])
    products.insert([{"id": 200, "price": 10.0, "qty": 0, "label": "x"}])
    assert products.get(200)["discounted"] == pytest.approx(16.0)  # new rows use the new code
    products.recompute("discounted")
    assert products.computed_column("discounted")["stale"] is False
    assert products.get(1)["discounted"] == pytest.approx(20.0)
    with pytest.raises(UdfInUse, match="parameters and return type"):
        products.register_udf("calculate_discount", "python", twice, PARAMS, "int", replace=True)
    with pytest.raises(UdfNotFound):
        products.register_udf("nope", "sql", "1", [], "int", replace=True)


def test_drop_is_refused_while_in_use(products: engine.Table) -> None:
    products.register_udf("calculate_discount", "sql", SEED["sql"], PARAMS, "float")
    products.add_computed_column("discounted", "udf", "calculate_discount(price, 0.2)")
    with pytest.raises(UdfInUse, match="discounted"):
        products.drop_udf("calculate_discount")
    products.drop_computed_column("discounted")
    products.drop_udf("calculate_discount")
    assert products.udfs() == []
    with pytest.raises(UdfNotFound):
        products.drop_udf("calculate_discount")


def test_udfs_survive_a_reconnect(db: engine.Database, products: engine.Table) -> None:
    products.register_udf("calculate_discount", "javascript", ROW_BY_ROW["javascript"], PARAMS, "float")
    products.add_computed_column("discounted", "udf", "calculate_discount(price, 0.2)")
    again = engine.connect(settings=db.settings, maintenance_seconds=0)
    try:
        t = again.table(products.name)
        assert t.udf("calculate_discount")["language"] == "javascript"
        t.insert([{"id": 300, "price": 50.0, "qty": 1, "label": "x"}])
        assert t.get(300)["discounted"] == pytest.approx(40.0)
    finally:
        again.close()


# -- limits -----------------------------------------------------------------------------------------------------------
def test_a_runaway_udf_fails_the_computation_and_changes_nothing(products: engine.Table) -> None:
    code = "def spin(x):\n    while True:\n        pass"
    products.register_udf("spin", "python", code, [{"name": "x", "type": "float"}], "float")
    with pytest.raises(UdfLimitExceeded) as info:
        products.execute_udf("spin", {"x": 1.0})
    assert info.value.limit == "cpu_time"
    with pytest.raises(UdfLimitExceeded):
        products.add_computed_column("spun", "udf", "spin(price)")
    assert products.computed_columns() == []
    products.register_udf("calculate_discount", "python", ROW_BY_ROW["python"], PARAMS, "float")
    assert products.execute_udf("calculate_discount", {"price": 10, "discount_rate": 0.5}) == 5.0  # workers replaced


class Echo:
    """A UDF language from a plugin: returns its first argument."""

    inline_only = False

    def __init__(self, limits: UdfLimits) -> None:
        self.limits = limits

    def check(self, udf: Udf) -> str | None:
        return None

    def run(self, udf: Udf, arrays: Sequence[pa.Array], rows: int) -> StepResult:
        return StepResult(arrays[0], pa.nulls(rows, pa.string()))

    def close(self) -> None:
        pass


class EchoPlugin:
    @hookimpl
    def tessera_udf_languages(self) -> Mapping[str, Any]:
        return {"echo": Echo}


def test_a_language_a_plugin_registers_is_a_language(products: engine.Table) -> None:
    registry = Registry.load(plugins=[EchoPlugin()])
    previous = install(registry)  # in this process only: execute runs here, not on the shard hosts
    try:
        info = products.register_udf("same", "echo", "whatever echo reads", [{"name": "x", "type": "float"}], "float")
        assert (info["language"], info["inlined"]) == ("echo", False)
        assert products.execute_udf("same", {"x": 2.5}) == 2.5
    finally:
        uninstall(registry, previous)
    with pytest.raises(PluginError, match=re.escape("no UDF language 'echo' is registered in this process")):
        products.execute_udf("same", {"x": 2.5})  # the plugin is gone: our side cannot run it (500, logged)


def test_definition_validation_is_pure() -> None:
    schema = build_schema("t", {"a": "int"}, None)
    udf = define(schema, "f", "sql", "a + 1", [{"name": "a", "type": "int"}], "int", now="2024-01-01T00:00:00Z")
    assert isinstance(udf, Udf) and udf.created_at == udf.updated_at and udf.inline is None
    assert Udf.from_dict(udf.to_dict()) == udf
