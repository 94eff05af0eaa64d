"""Read plans, set assignments and key handling, without Ray: arguments checked, plans as data."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pyarrow as pa
import pytest

from engine.errors import ColumnNotFound, InvalidRequest, OffsetTooDeep, SchemaMismatch
from engine.logical.assignments import assignments
from engine.logical.keys import id_where, key_from_text, same_key
from engine.logical.query import deep_page, in_order, order, plan_filter, plan_query, row_filter
from engine.model.columns import ComputedColumn
from engine.model.schema import build_schema


def computed(name: str, kind: str, expression: str, type_: str, **parameters: object) -> ComputedColumn:
    """A computed column as the catalog holds it (built directly: these tests compile no expressions)."""
    return ComputedColumn(name, kind, expression, (), orjson.dumps(parameters).decode(), True, type_, "")


BASE = build_schema("orders", {"id": "int", "cat": "string", "price": "float", "meta": "json"}, "id")
ORDERS = replace(
    BASE,
    computed=(
        computed("cat_sum", "aggregate", "SUM(price)", "float", group_by=["cat"]),
        computed("rank", "window", "RANK()", "int", order_by=["price"]),
    ),
)


def test_paging_without_an_order_orders_by_the_key() -> None:
    plan = plan_query(BASE, 2, limit=10, offset=20)
    assert plan.order == (("id", "ascending"),) and plan.top == 30 and plan.fetch is None
    assert plan_query(BASE, 2).order == () and plan_query(BASE, 2).top is None


@pytest.mark.parametrize(
    "item",
    ["price:desc", "price:DESC", {"column": "price", "direction": "descending"}, ("price", "desc"), ["price", "desc"]],
)
def test_order_items_in_every_form(item: object) -> None:
    assert order(BASE, [item]) == (("price", "descending"),)


@pytest.mark.parametrize(
    ("order_by", "message"),
    [
        (["price:up"], r"order_by\[0\]: direction must be 'asc' or 'desc', not 'up'"),
        ([5], r"order_by\[0\] must be"),
        (["meta"], "cannot order by json column 'meta'"),
    ],
)
def test_bad_orders_name_the_item(order_by: list[object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        order(BASE, order_by)


def test_limit_offset_and_select_are_checked() -> None:
    for bad in ({"limit": -1}, {"limit": True}, {"limit": "5"}, {"offset": -1}, {"offset": 1.5}, {"select": "id"}):
        with pytest.raises(InvalidRequest):
            plan_query(BASE, 2, **bad)  # type: ignore[arg-type]
    with pytest.raises(ColumnNotFound, match="nope"):
        plan_query(BASE, 2, select=["id", "nope"])


def test_shards_send_what_the_result_is_ordered_and_attached_by() -> None:
    plan = plan_query(ORDERS, 2, select=["cat_sum", "price"], order_by=["price:desc"], limit=5)
    assert plan.fetch == ("price", "cat") and plan.attach == ("cat_sum",) and plan.derived_order == ()
    every = plan_query(ORDERS, 2)
    assert every.fetch is None and every.attach == ("cat_sum", "rank")


def test_an_order_on_derived_values_sorts_narrow_columns() -> None:
    plan = plan_query(ORDERS, 2, select=["price"], order_by=["cat_sum:desc", "rank", "price"], limit=5)
    assert plan.derived_order == ("cat_sum", "rank") and plan.attach == ()
    assert plan.sort == ("id", "price", "cat")  # the key, the other sort column, what cat_sum attaches by
    assert plan.fetch == ("price", "cat", "id")  # (rank attaches by the key)
    assert set(plan.derived) == {"cat_sum", "rank"}


def test_clauses_on_derived_values_are_kept_apart() -> None:
    where = [
        {"column": "cat_sum", "operator": ">", "value": 10},
        {"column": "id", "operator": "in", "value": [1, 2]},
        {"column": "cat_sum", "operator": "<", "value": 99},
        {"column": "rank", "operator": "=", "value": 1},
    ]
    found = plan_filter(where, ORDERS, 4)
    assert [(name, len(clauses)) for name, clauses in found.derived] == [("cat_sum", 2), ("rank", 1)]
    assert found.route.keys is not None and found.route.keys.to_pylist() == [1, 2] and found.route.where is None
    with pytest.raises(SchemaMismatch):  # a derived clause's value is checked against the column's type
        plan_filter([{"column": "rank", "operator": "=", "value": "first"}], ORDERS, 4)


def test_work_on_row_values_refuses_derived_clauses() -> None:
    assert row_filter(None, ORDERS, "recompute") is None
    with pytest.raises(InvalidRequest, match="recompute filters on row values; 'rank' is an window column"):
        row_filter({"rank": 1}, ORDERS, "recompute")


def test_a_deep_page_is_refused_unless_it_is_past_the_end() -> None:
    plan = plan_query(BASE, 2, limit=10, offset=95, window=100)
    assert plan.deep
    deep_page(plan, 95, "id")  # nothing left at offset 95: an empty page
    with pytest.raises(OffsetTooDeep, match="past the query window of 100 rows") as caught:
        deep_page(plan, 96, "id")
    assert caught.value.fields["field"] == "offset" and caught.value.fields["max_query_window"] == 100
    assert '"column": "id", "operator": ">"' in caught.value.message
    assert not plan_query(BASE, 2, limit=500, window=100).deep  # a first page may be as long as asked
    assert not plan_query(BASE, 2, offset=500, window=100).deep  # no limit: every row is asked for anyway
    assert not plan_query(BASE, 2, limit=10, offset=90, window=100).deep


def test_result_columns_follow_the_schema() -> None:
    assert in_order(ORDERS, ["rank", "price", "id", "cat_sum"]) == ["id", "price", "cat_sum", "rank"]


def test_assignments_check_columns_and_values() -> None:
    [(name, value)] = assignments(BASE, {"price": 2})
    assert name == "price" and str(value) == "2"
    assert str(assignments(BASE, {"cat": None})[0][1]).startswith("null")
    for bad, message in [
        ({}, "set must be a non-empty object"),
        ({"id": 5}, "the primary key cannot be updated"),
        ({"nope": 1}, "nope"),
        ({"price": {"expr": 5}}, r"set.price.expr must be a string"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            assignments(BASE, bad)
    with pytest.raises(InvalidRequest, match="'cat_sum' is a computed column"):
        assignments(ORDERS, {"cat_sum": 1.0})
    strict = build_schema("s", {"id": "int", "n": {"type": "int", "nullable": False}}, "id")
    with pytest.raises(InvalidRequest, match="may not be null"):
        assignments(strict, {"n": None})


def test_keys_from_paths_and_rows() -> None:
    assert key_from_text(BASE, "42") == 42 and id_where(BASE, 42) == [{"column": "id", "operator": "=", "value": 42}]
    with pytest.raises(InvalidRequest, match="row_id 'x' is not an integer"):
        key_from_text(BASE, "x")
    days = build_schema("days", {"day": "date"}, "day")
    assert str(key_from_text(days, "2024-02-29")) == "2024-02-29"
    assert same_key(BASE, "id", 7, 7) and not same_key(BASE, "id", 8, 7)
    pair = build_schema("pair", {"a": "int", "b": "int"}, ["a", "b"])
    with pytest.raises(InvalidRequest, match="composite primary key"):
        id_where(pair, 1)
    assert pa.types.is_int64(build_schema("n", {"v": "int"}, None).arrow_schema().field("_row_id").type)


def test_in_lists_on_columns_the_shards_do_not_store() -> None:
    """``in`` typed its values by the storage schema, which has no aggregate, window or unstored column: a
    KeyError (a 500) rather than a filter."""
    found = plan_filter([{"column": "rank", "operator": "in", "value": [1, 2]}], ORDERS, 4)
    assert [name for name, _ in found.derived] == ["rank"]
    with pytest.raises(SchemaMismatch):
        plan_filter([{"column": "rank", "operator": "not_in", "value": ["x"]}], ORDERS, 4)
