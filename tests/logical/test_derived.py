"""Aggregate and window values narrowed into filters on rows, and narrow sorts, without Ray.

The pushed-down route is applied to the rows the way a shard applies a read plan (the key pin, then the filter)
and compared with the brute-force answer: every row with its value attached, filtered.
"""

from __future__ import annotations

from dataclasses import replace

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.expr.where import parse_where
from engine.logical.derived import (
    Values,
    attach,
    in_page_order,
    in_tuples,
    narrow,
    page,
    pinned_to,
    qualifying,
    tuple_text,
    with_values,
)
from engine.logical.planner import Route, route
from engine.model.columns import VALUE, ComputedColumn
from engine.model.schema import TableSchema, build_schema

SHARDS = 3


def computed(name: str, kind: str, type_: str, **parameters: object) -> ComputedColumn:
    return ComputedColumn(name, kind, "X()", (), orjson.dumps(parameters).decode(), True, type_, "")


SUM = computed("cat_sum", "aggregate", "float", group_by=["cat"])
PAIR_SUM = computed("pair_sum", "aggregate", "float", group_by=["cat", "day"])
TOTAL = computed("total", "aggregate", "int")
RANK = computed("rank", "window", "int", order_by=["price"])
BASE = build_schema("t", {"id": "int", "cat": "string", "day": "date", "price": "float"}, "id")
SCHEMA = replace(BASE, computed=(SUM, PAIR_SUM, TOTAL, RANK))


def rows(n: int = 60) -> pa.Table:
    cats = ["a", "b", None, "a|b", "1:a"]
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "cat": pa.array([cats[i % 5] for i in range(n)], pa.string()),
            "day": pa.array([None if i % 7 == 0 else 19000 + i % 3 for i in range(n)], pa.int32()).cast(pa.date32()),
            "price": pa.array([float((i * 37) % 11) for i in range(n)], pa.float64()),
        }
    )


def values_of(table: pa.Table, column: ComputedColumn) -> Values:
    """The values as ``engine.physical.derived`` computes them: per group (aggregates) or per key (windows)."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if column is RANK:
        ranked = frame.with_columns(pl.col("price").rank("min").cast(pl.Int64).alias(VALUE))
        return Values(("id",), ranked.select("id", VALUE))
    if column is TOTAL:
        return Values((), frame.select(pl.len().cast(pl.Int64).alias(VALUE)))
    groups = ["cat"] if column is SUM else ["cat", "day"]
    return Values(tuple(groups), frame.group_by(groups).agg(pl.col("price").sum().alias(VALUE)))


def as_a_shard_reads(table: pa.Table, found: Route, schema: TableSchema) -> set[int]:
    """Every shard's rows together, read as the plan says: the key pin, then the filter."""
    if not found.targets:
        return set()
    if found.keys is not None:
        table = table.filter(pc.is_in(table[schema.key[0]], value_set=found.keys))
    if found.where is not None:
        table = table.filter(found.where)
    return set(table["id"].to_pylist())


def brute_force(table: pa.Table, column: ComputedColumn, where: list[dict[str, object]]) -> set[int]:
    every = with_values(table, [(column, values_of(table, column))])
    expr = route(parse_where(where), SCHEMA, SHARDS).where
    return set(every.filter(expr)["id"].to_pylist()) if expr is not None else set(every["id"].to_pylist())


CLAUSES = [
    ("cat_sum", [{"column": "cat_sum", "operator": ">", "value": 60}]),
    (
        "cat_sum",
        [{"column": "cat_sum", "operator": "<=", "value": 60}, {"column": "cat_sum", "operator": ">", "value": 1}],
    ),
    ("pair_sum", [{"column": "pair_sum", "operator": ">=", "value": 20}]),
    ("pair_sum", [{"column": "pair_sum", "operator": "is_not_null"}]),
    ("total", [{"column": "total", "operator": "=", "value": 60}]),
    ("total", [{"column": "total", "operator": "!=", "value": 60}]),
    ("rank", [{"column": "rank", "operator": "<=", "value": 5}]),
    ("rank", [{"column": "rank", "operator": "in", "value": [1, 7, 100]}]),
]


@pytest.mark.parametrize(("name", "where"), CLAUSES)
@pytest.mark.parametrize("row_clause", [None, {"column": "price", "operator": ">", "value": 3}])
def test_a_pushed_down_filter_finds_what_brute_force_finds(
    name: str, where: list[dict[str, object]], row_clause: dict[str, object] | None
) -> None:
    table = rows()
    column = SCHEMA.computed_column(name)
    assert column is not None
    base = route(parse_where([row_clause] if row_clause else []), SCHEMA, SHARDS)
    passed = qualifying(column, values_of(table, column), parse_where(where), SCHEMA)
    found = narrow(base, column, passed, SCHEMA, SHARDS)
    expected = brute_force(table, column, [*where, *([row_clause] if row_clause else [])])
    assert as_a_shard_reads(table, found, SCHEMA) == expected


def test_window_keys_pin_the_key_and_meet_the_keys_the_filter_pins() -> None:
    table = rows()
    base = route(parse_where([{"column": "id", "operator": "in", "value": [0, 1, 2, 3, 4, 5]}]), SCHEMA, SHARDS)
    passed = qualifying(RANK, values_of(table, RANK), parse_where({"rank": 1}), SCHEMA)
    found = narrow(base, RANK, passed, SCHEMA, SHARDS)
    assert found.keys is not None and set(found.keys.to_pylist()) <= {0, 1, 2, 3, 4, 5}
    assert set(found.targets) <= set(base.targets)
    assert as_a_shard_reads(table, found, SCHEMA) == {i for i in range(6) if (i * 37) % 11 == 0}


def test_an_aggregate_no_row_passes_reaches_no_shard() -> None:
    table = rows()
    passed = qualifying(TOTAL, values_of(table, TOTAL), parse_where({"total": 3}), SCHEMA)
    assert narrow(route((), SCHEMA, SHARDS), TOTAL, passed, SCHEMA, SHARDS).targets == ()


TEXT = st.one_of(st.none(), st.text(alphabet="ab|:~1\\", max_size=4))


@given(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=40))
def test_tuple_text_tells_every_tuple_apart(pairs: list[tuple[str | None, str | None]]) -> None:
    table = pa.table(
        {"x": [a for a, _ in pairs], "y": [b for _, b in pairs]}, pa.schema([("x", pa.string()), ("y", pa.string())])
    )
    keys = _texts(table)
    assert len(set(keys)) == len(set(pairs))
    wanted = table.slice(0, 1)
    matched = table.filter(in_tuples(["x", "y"], wanted))
    assert set(zip(matched["x"].to_pylist(), matched["y"].to_pylist(), strict=True)) == {pairs[0]}


def _texts(table: pa.Table) -> list[str]:
    return pds.dataset(table).to_table(columns={"k": tuple_text(["x", "y"])})["k"].to_pylist()


def test_a_narrow_sort_pages_and_the_page_comes_back_in_order() -> None:
    table = rows(30)
    narrow_rows = with_values(table.select(["id", "cat", "price"]), [(SUM, values_of(table, SUM))])
    order = (("cat_sum", "descending"), ("price", "ascending"), ("id", "descending"))
    chosen = page(narrow_rows, order, 5, 10)
    reference = sorted(
        narrow_rows.to_pylist(),
        key=lambda r: (-(r["cat_sum"] if r["cat_sum"] is not None else float("-inf")), r["price"], -r["id"]),
    )[5:15]
    assert chosen["id"].to_pylist() == [r["id"] for r in reference]
    fetched = table.take(pa.array(sorted(chosen["id"].to_pylist())))  # the shards send the page's rows in any order
    assert in_page_order(fetched, chosen.select(["id"]), ("id",))["id"].to_pylist() == chosen["id"].to_pylist()
    assert page(narrow_rows, order, 10**18, 10).num_rows == 0


def test_composite_keys_are_fetched_by_tuple() -> None:
    schema = build_schema("p", {"a": "int", "b": "string", "v": "int"}, ["a", "b"])
    table = pa.table({"a": [1, 1, 2, 2], "b": ["x", "y", "x", "y"], "v": [1, 2, 3, 4]})
    wanted = pa.table({"a": [2, 1], "b": ["x", "y"]})
    found = pinned_to(wanted, schema, 4)
    assert found.keys is None and found.targets == (0, 1, 2, 3)
    assert in_page_order(table.filter(found.where), wanted, schema.key)["v"].to_pylist() == [3, 2]


def test_values_attach_by_group_and_to_a_page() -> None:
    table = rows(200)
    values = values_of(table, SUM)
    whole = attach(table, values, "cat_sum").to_pylist()
    few = attach(table.slice(0, 3), values, "cat_sum").to_pylist()  # narrowed to the page's groups first
    assert few == whole[:3]
    assert attach(table, values_of(table, TOTAL), "total").to_pylist() == [200] * 200
