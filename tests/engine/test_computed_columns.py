"""Computed columns through the Python client, on real Ray and Lance: every kind, kept up to date by writes."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.errors import (
    CellError,
    ColumnExists,
    ColumnNotFound,
    DependencyConflict,
    InvalidComputedColumn,
    InvalidRequest,
)

COLUMNS = {"id": "int", "price": "float", "quantity": "int", "cat": "string"}


def make(db: engine.Database, name: str, n: int = 12, shards: int = 3) -> engine.Table:
    t = db.create_table(name, COLUMNS, primary_key="id", shards=shards)
    t.insert([{"id": i, "price": float(i), "quantity": i % 4, "cat": "abc"[i % 3]} for i in range(n)])
    return t


def rows(t: engine.Table) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in t.query().rows.to_pylist()}


def test_stored_expression_is_computed_for_existing_and_new_rows(db: engine.Database, name: str) -> None:
    t = make(db, name)
    info = t.add_computed_column("total", "expression", "price * quantity")
    assert info["type"] == "float" and info["dependencies"] == ["price", "quantity"] and info["cache_results"]
    assert info["created_at"] and info["last_computed"] and info["computation_time_ms"] is not None
    assert all(r["total"] == r["price"] * r["quantity"] for r in rows(t).values())
    t.insert({"id": 100, "price": 2.5, "quantity": 4, "cat": "a"})
    t.upsert({"id": 1, "price": 10.0, "quantity": 3, "cat": "b"})
    t.update({"id": 2}, {"quantity": 9})
    got = rows(t)
    assert got[100]["total"] == 10.0 and got[1]["total"] == 30.0 and got[2]["total"] == 18.0
    db.batch([{"operation": "update", "table": name, "where": {"id": 3}, "set": {"price": {"expr": "price + 1"}}}])
    assert t.get(3)["total"] == 4.0 * 3


def test_virtual_expression_reads_the_same_values(db: engine.Database, name: str) -> None:
    t = make(db, name)
    t.add_computed_column("stored", "expression", "price * 2 if quantity > 1 else price")
    t.add_computed_column("live", "expression", "price * 2 if quantity > 1 else price", cache_results=False)
    t.add_computed_column("chained", "expression", "live + stored")  # stored, reading a virtual column
    t.update({"id": 5}, {"quantity": 0})
    for r in rows(t).values():
        assert r["stored"] == r["live"] and r["chained"] == 2 * r["live"]
    over = t.query(where=[{"column": "live", "operator": ">", "value": 15}]).rows.to_pylist()
    assert sorted(r["id"] for r in over) == [10, 11]


def reference_aggregate(data: list[dict[str, Any]], function: str) -> dict[int, Any]:
    frame = pl.DataFrame(data, schema={"id": pl.Int64, "price": pl.Float64, "quantity": pl.Int64, "cat": pl.Utf8})
    agg = {"SUM": pl.col("price").sum(), "MAX": pl.col("price").max(), "COUNT": pl.col("price").count()}[function]
    out = frame.with_columns(agg.over("cat").alias("v"))
    return dict(zip(out["id"].to_list(), out["v"].to_list(), strict=True))


def reference_window(data: list[dict[str, Any]]) -> dict[int, Any]:
    frame = pl.DataFrame(data, schema={"id": pl.Int64, "price": pl.Float64, "quantity": pl.Int64, "cat": pl.Utf8})
    out = frame.sort("cat", "id").with_columns(pl.col("price").rolling_mean(3, min_samples=1).over("cat").alias("v"))
    return dict(zip(out["id"].to_list(), out["v"].to_list(), strict=True))


def test_aggregate_and_window_values(db: engine.Database, name: str) -> None:
    t = make(db, name, n=20)
    t.add_computed_column("cat_sum", "aggregate", "SUM(price)", parameters={"group_by": ["cat"]})
    t.add_computed_column("n", "aggregate", "COUNT(*)")
    window = {"partition_by": ["cat"], "order_by": [{"column": "id", "direction": "asc"}], "frame": {"preceding": 2}}
    t.add_computed_column("ma3", "window", "AVG(price)", parameters=window)
    t.add_computed_column(
        "rank", "window", "RANK()", parameters={"partition_by": ["cat"], "order_by": [{"column": "quantity"}]}
    )
    data = [{k: r[k] for k in COLUMNS} for r in rows(t).values()]
    sums, mas = reference_aggregate(data, "SUM"), reference_window(data)
    for r in rows(t).values():
        assert r["cat_sum"] == pytest.approx(sums[r["id"]]) and r["n"] == 20
        assert r["ma3"] == pytest.approx(mas[r["id"]])
    top = t.query(where=[{"column": "rank", "operator": "=", "value": 1}], order_by=["id"]).rows.to_pylist()
    assert {r["cat"] for r in top} == {"a", "b", "c"} and all(r["quantity"] == 0 for r in top)
    assert t.count([{"column": "n", "operator": "=", "value": 20}]) == 20
    assert [r["id"] for r in t.query(order_by=["cat_sum:desc", "id"], limit=2).rows.to_pylist()] == [1, 4]


OPS = st.lists(
    st.tuples(
        st.sampled_from(["insert", "update", "upsert", "delete"]),
        st.integers(0, 30),
        st.floats(-100, 100, allow_nan=False, width=32),
        st.sampled_from(["a", "b", "c", None]),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OPS)
def test_incremental_maintenance_equals_a_recompute_from_scratch(db: engine.Database, ops: list) -> None:
    """Random writes after the columns exist: every computed value equals the same columns computed afresh."""
    name = f"inc{abs(hash(tuple(map(str, ops)))) % 10**9}"
    if name in db.list_tables():
        db.drop_table(name)
    t = make(db, name, n=10, shards=2)
    t.add_computed_column("total", "expression", "price * quantity")
    t.add_computed_column("cat_max", "aggregate", "MAX(price)", parameters={"group_by": ["cat"]})
    window = {"partition_by": ["cat"], "order_by": [{"column": "id", "direction": "asc"}], "frame": {"preceding": 2}}
    t.add_computed_column("ma3", "window", "AVG(price)", parameters=window)
    for kind, i, price, cat in ops:
        row = {"id": i, "price": float(price), "quantity": i % 5, "cat": cat}
        if kind == "insert" and i not in rows(t):
            t.insert(row)
        elif kind == "upsert":
            t.upsert(row)
        elif kind == "update":
            t.update({"id": i}, {"price": float(price)})
        elif kind == "delete":
            t.delete({"id": i})
    got = rows(t)
    data = [{k: r[k] for k in COLUMNS} for r in got.values()]
    maxes, mas = reference_aggregate(data, "MAX"), reference_window(data)
    for r in got.values():
        assert r["total"] == pytest.approx(r["price"] * r["quantity"])
        assert _same(r["cat_max"], maxes[r["id"]]) and _same(r["ma3"], mas[r["id"]])
    db.drop_table(name)


def _same(a: Any, b: Any) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, abs_tol=1e-6))


def test_recompute_everything_or_some_rows(db: engine.Database, name: str) -> None:
    t = make(db, name)
    t.add_computed_column("total", "expression", "price * quantity")
    result = t.recompute("total")
    assert result["column"] == "total" and result["rows_recomputed"] == 12 and result["errors"] == 0
    assert t.recompute("total", where={"cat": "a"})["rows_recomputed"] == 4
    assert all(r["total"] == r["price"] * r["quantity"] for r in rows(t).values())
    assert t.computed_column("total")["last_computed"] >= t.computed_column("total")["created_at"]


def test_definitions_are_checked(db: engine.Database, name: str) -> None:
    t = make(db, name)
    t.add_computed_column("total", "expression", "price * quantity")
    with pytest.raises(ColumnExists):
        t.add_computed_column("price", "expression", "price * 2")
    with pytest.raises(ColumnExists):
        t.add_computed_column("total", "expression", "price * 2")
    with pytest.raises(InvalidComputedColumn, match="cycle"):
        t.add_computed_column("loop", "expression", "loop + 1")
    with pytest.raises(InvalidComputedColumn, match="dependencies"):
        t.add_computed_column("x", "expression", "price + 1", dependencies=["quantity"])
    with pytest.raises(ColumnNotFound):
        t.add_computed_column("x", "expression", "nope + 1")
    with pytest.raises(InvalidRequest, match="syntax"):
        t.add_computed_column("x", "expression", "price +")
    with pytest.raises(InvalidComputedColumn, match="not a known aggregate function"):
        t.add_computed_column("x", "aggregate", "MEDIAN(price)")
    with pytest.raises(InvalidComputedColumn, match="on_error"):
        t.add_computed_column("x", "expression", "price", parameters={"on_error": "explode"})
    with pytest.raises(InvalidRequest, match="computed column"):
        t.insert({"id": 99, "price": 1.0, "quantity": 1, "cat": "a", "total": 5.0})
    with pytest.raises(InvalidRequest, match="computed column"):
        t.update({"id": 1}, {"total": 5.0})
    assert [c["name"] for c in t.computed_columns()] == ["total"]


def test_drop_refuses_a_column_others_read(db: engine.Database, name: str) -> None:
    t = make(db, name)
    t.add_computed_column("total", "expression", "price * quantity")
    t.add_computed_column("twice", "expression", "total * 2")
    with pytest.raises(DependencyConflict, match="twice"):
        t.drop_computed_column("total")
    t.drop_computed_column("twice")
    t.drop_computed_column("total")
    assert "total" not in t.query(limit=1).rows.column_names
    t.insert({"id": 50, "price": 1.0, "quantity": 1, "cat": "a"})  # the shards write without the column again
    assert t.get(50) == {"id": 50, "price": 1.0, "quantity": 1, "cat": "a"}
    t.add_computed_column("total", "expression", "price + quantity")  # a new column of the same name
    assert t.get(50)["total"] == 2.0


def test_cell_errors_become_null_and_are_counted(db: engine.Database, name: str) -> None:
    t = make(db, name)  # quantity is 0 on ids 0, 4, 8
    info = t.add_computed_column("per_unit", "expression", "price / quantity")
    assert info["errors"] == 3
    got = rows(t)
    assert sorted(i for i, r in got.items() if r["per_unit"] is None) == [0, 4, 8]
    assert t.recompute("per_unit")["errors"] == 3
    t.insert({"id": 40, "price": 1.0, "quantity": 0, "cat": "a"})  # a failing cell on insert is null too
    assert t.get(40)["per_unit"] is None


def test_on_error_abort_writes_nothing(db: engine.Database, name: str) -> None:
    t = make(db, name)
    with pytest.raises(CellError, match="division by zero"):
        t.add_computed_column("per_unit", "expression", "price / quantity", parameters={"on_error": "abort"})
    assert t.computed_columns() == [] and "per_unit" not in t.query(limit=1).rows.column_names
    t.update({"quantity": 0}, {"quantity": 1})
    t.add_computed_column("per_unit", "expression", "price / quantity", parameters={"on_error": "abort"})
    with pytest.raises(CellError):
        t.insert([{"id": 41, "price": 1.0, "quantity": 2, "cat": "a"}, {"id": 42, "price": 1.0, "quantity": 0}])
    assert t.count() == 12


def test_columns_added_to_an_empty_table_fill_on_insert(db: engine.Database, name: str) -> None:
    t = db.create_table(name, COLUMNS, primary_key="id", shards=2)
    t.add_computed_column("total", "expression", "price * quantity")
    t.insert([{"id": i, "price": 2.0, "quantity": i} for i in range(4)])
    assert [r["total"] for r in t.query(order_by=["id"]).rows.to_pylist()] == [0.0, 2.0, 4.0, 6.0]


def test_user_columns_named_like_internal_ones(db: engine.Database, name: str) -> None:
    t = db.create_table(name, {"id": "int", "v": "int", "value": "string"}, primary_key="id", shards=2)
    t.insert([{"id": i, "v": 10 - i, "value": "xy"[i % 2]} for i in range(6)])
    t.add_computed_column("rn", "window", "ROW_NUMBER()", parameters={"order_by": ["v"]})
    t.add_computed_column("total", "aggregate", "SUM(v)", parameters={"group_by": ["value"]})
    got = {r["id"]: r for r in t.query().rows.to_pylist()}
    assert [got[i]["rn"] for i in range(6)] == [6, 5, 4, 3, 2, 1]
    assert got[0]["total"] == 10 + 8 + 6 and got[1]["total"] == 9 + 7 + 5


def test_window_values_of_a_composite_key_filter_and_order(db: engine.Database, name: str) -> None:
    """A window's values attach by the whole key: with two key columns the filter pushed to the shards and the
    page fetched after a sort by them match on both."""
    t = db.create_table(name, {"a": "int", "b": "string", "v": "float"}, primary_key=["a", "b"], shards=3)
    data = [{"a": i % 4, "b": "xy|:"[i % 4] * (i % 3 + 1), "v": float((i * 7) % 10)} for i in range(12)]
    t.insert(data)
    t.add_computed_column("rn", "window", "ROW_NUMBER()", parameters={"order_by": [{"column": "v"}]})
    ranked = sorted(data, key=lambda r: (r["v"], r["a"], r["b"]))  # ties by the key
    rn = {(r["a"], r["b"]): k + 1 for k, r in enumerate(ranked)}
    low = t.query(where=[{"column": "rn", "operator": "<=", "value": 4}], order_by=["a", "b"]).rows.to_pylist()
    assert [(r["a"], r["b"]) for r in low] == sorted(k for k, n in rn.items() if n <= 4)
    top = t.query(order_by=["rn:desc"], limit=3, offset=1, select=["b", "rn", "a"]).rows.to_pylist()
    assert [(r["a"], r["b"], r["rn"]) for r in top] == [
        (r["a"], r["b"], rn[(r["a"], r["b"])]) for r in ranked[::-1][1:4]
    ]
    assert t.count([{"column": "rn", "operator": "in", "value": [1, 12]}]) == 2


def test_window_values_of_a_table_without_a_key(db: engine.Database, name: str) -> None:
    """Without a primary key, window values attach by ``_row_id``: a filter on them pins row ids to shards."""
    t = db.create_table(name, {"v": "int"}, shards=3)
    t.insert([{"v": (i * 5) % 9} for i in range(9)])
    t.add_computed_column("rn", "window", "ROW_NUMBER()", parameters={"order_by": [{"column": "v"}]})
    low = t.query(where=[{"column": "rn", "operator": "<=", "value": 3}], select=["v", "rn"], order_by=["rn"])
    assert low.rows.to_pylist() == [{"v": 0, "rn": 1}, {"v": 1, "rn": 2}, {"v": 2, "rn": 3}]
    top = t.query(order_by=["rn:desc"], limit=2, select=["v"]).rows.to_pylist()
    assert top == [{"v": 8}, {"v": 7}] and t.count({"rn": 9}) == 1
