"""The planner's routing and partitioning, without Ray: a row's shard is the shard a filter on its key reaches."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ColumnNotFound, InvalidOperator, SchemaMismatch, TooLarge
from engine.expr.where import parse_where
from engine.logical.plan import Insert, Upsert
from engine.logical.planner import partition, route, rows_to_write, shards_of
from engine.model.schema import build_schema

USERS = build_schema("users", {"id": "int", "name": "string", "age": "int"}, "id")
CODES = build_schema("codes", {"code": "string", "n": "int"}, "code")
NOTES = build_schema("notes", {"msg": "string"}, None)  # no key: the shards assign _row_id


def test_a_pinned_key_goes_to_one_shard_and_leaves_the_rest_to_check() -> None:
    found = route(
        parse_where([{"column": "id", "operator": "=", "value": 7}, {"column": "age", "operator": ">", "value": 3}]),
        USERS,
        8,
    )
    assert len(found.targets) == 1 and found.keys is not None and found.keys.to_pylist() == [7]
    assert found.keys.type == pa.int64()
    assert found.where is not None and "age" in str(found.where) and "id" not in str(found.where)


def test_an_in_list_goes_to_the_shards_of_its_values() -> None:
    found = route(parse_where([{"column": "id", "operator": "in", "value": list(range(40))}]), USERS, 4)
    assert found.targets == (0, 1, 2, 3) and found.where is None
    assert route(parse_where([{"column": "id", "operator": "in", "value": []}]), USERS, 4).targets == ()


def test_a_filter_that_pins_nothing_goes_everywhere() -> None:
    found = route(parse_where({"name": "Ada"}), USERS, 3)
    assert found.targets == (0, 1, 2) and found.keys is None and found.where is not None
    assert route((), USERS, 3) == route(parse_where(None), USERS, 3)
    assert route((), USERS, 3).where is None


def test_row_ids_are_placed_by_value() -> None:
    found = route(parse_where({"_row_id": 13}), NOTES, 4)
    assert found.targets == (1,) and found.keys is not None and found.keys.to_pylist() == [13]


def test_every_clause_is_checked_even_when_the_key_is_pinned() -> None:
    with pytest.raises(ColumnNotFound, match="nope"):
        route(
            parse_where(
                [{"column": "id", "operator": "=", "value": 1}, {"column": "nope", "operator": "=", "value": 1}]
            ),
            USERS,
            2,
        )
    with pytest.raises(InvalidOperator, match=r"where\[1\]"):
        route(
            parse_where(
                [{"column": "id", "operator": "=", "value": 1}, {"column": "age", "operator": "like", "value": "x"}]
            ),
            USERS,
            2,
        )
    with pytest.raises(SchemaMismatch):
        route(parse_where({"id": "seven"}), USERS, 2)


@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=60, unique=True), st.integers(1, 9))
def test_rows_land_on_the_shard_a_filter_on_their_key_reaches(ids: list[int], shards: int) -> None:
    rows = rows_to_write([{"id": i, "name": "x"} for i in ids], USERS, 1000)
    for shard, op in partition(rows, USERS, shards, Insert, False):
        assert isinstance(op, Insert)
        for i in op.rows["id"].to_pylist():
            assert route(parse_where({"id": i}), USERS, shards).targets == (shard,)


@given(st.lists(st.text(max_size=8), min_size=1, max_size=30, unique=True), st.integers(2, 6))
def test_string_keys_route_like_they_partition(codes: list[str], shards: int) -> None:
    rows = rows_to_write([{"code": c, "n": 1} for c in codes], CODES, 1000)
    placed = {
        c: shard for shard, op in partition(rows, CODES, shards, Upsert, False) for c in op.rows["code"].to_pylist()
    }
    keys = pa.array(codes)
    assert set(shards_of(keys, CODES, shards)) == set(placed.values())
    assert all(route(parse_where({"code": c}), CODES, shards).targets == (placed[c],) for c in codes)


def test_rows_without_a_key_are_spread_evenly_from_the_start_shard() -> None:
    rows = rows_to_write([{"msg": str(i)} for i in range(10)], NOTES, 100)
    sizes = {shard: op.rows.num_rows for shard, op in partition(rows, NOTES, 4, Insert, True, start=1)}  # type: ignore[union-attr]
    assert sizes == {1: 3, 2: 3, 3: 2, 0: 2}
    one = partition(rows.slice(0, 1), NOTES, 4, Insert, False, start=3)
    assert [shard for shard, _ in one] == [3]
    nothing = partition(rows.slice(0, 0), NOTES, 4, Insert, False, start=2)
    assert len(nothing) == 1 and nothing[0][1].rows.num_rows == 0  # type: ignore[union-attr]


def test_one_shard_gets_everything_as_given() -> None:
    rows = rows_to_write([{"id": 2}, {"id": 1}], USERS, 100)
    [(shard, op)] = partition(rows, USERS, 1, Upsert, True)
    assert shard == 0 and isinstance(op, Upsert) and op.rows["id"].to_pylist() == [2, 1] and op.return_rows


def test_lists_of_rows_are_capped_and_arrow_tables_are_not() -> None:
    with pytest.raises(TooLarge, match="3 rows in one request; the limit is 2"):
        rows_to_write([{"id": i} for i in range(3)], USERS, 2)
    table = pa.table({"id": pa.array(range(5), pa.int64())})
    assert rows_to_write(table, USERS, 2).num_rows == 5
    assert rows_to_write({"id": 1, "name": "one"}, USERS, 1).to_pylist() == [{"id": 1, "name": "one", "age": None}]
