"""A batch's planning without Ray or a catalog: each operation validated and turned into shard ops, then grouped."""

from __future__ import annotations

import pyarrow as pa
import pytest

from engine.errors import InvalidName, InvalidRequest, TableNotFound, TooLarge
from engine.logical.batch_plan import PlannedOperation, Resolved, group, plan_operation
from engine.logical.plan import Delete, Insert, OpResult, StageResult, Update, Upsert
from engine.logical.planner import shards_of
from engine.model.schema import build_schema
from engine.storage.records import TableRecord

ACCOUNTS = build_schema("accounts", {"id": "int", "balance": "int"}, "id")
NOTES = build_schema("notes", {"msg": "string"}, None)
TABLES = {
    "accounts": Resolved.of(TableRecord("id-accounts", "accounts", ACCOUNTS, 4, "2026-01-01T00:00:00Z", 0), "/data"),
    "notes": Resolved.of(TableRecord("id-notes", "notes", NOTES, 2, "2026-01-01T00:00:00Z", 0), "/data"),
}


class Lookups:
    """``table_of`` for the planner: the tables above, and the names it was asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, name: str) -> Resolved:
        self.asked.append(name)
        if name not in TABLES:
            raise TableNotFound(name)
        return TABLES[name]


def plan(index: int, op: object, max_rows: int = 1000) -> PlannedOperation:
    return plan_operation(index, op, Lookups(), max_rows)


def shard_of(key: int) -> int:
    return shards_of(pa.array([key]), ACCOUNTS, 4)[0]


def test_an_update_pinned_to_a_key_goes_to_its_shard_only() -> None:
    planned = plan(3, {"operation": "update", "table": "accounts", "where": {"id": 7}, "set": {"balance": 1}})
    assert list(planned.shard_ops) == [("id-accounts", shard_of(7))] and planned.index == 3
    (op,) = planned.shard_ops.values()
    assert isinstance(op, Update) and op.keys is not None and op.keys.to_pylist() == [7] and op.where is None


def test_a_delete_of_every_row_goes_to_every_shard() -> None:
    planned = plan(0, {"operation": "delete", "table": "accounts", "where": {}, "expect_rows": {"max": 3}})
    assert sorted(planned.shard_ops) == [("id-accounts", i) for i in range(4)] and planned.expect == (0, 3)
    assert all(isinstance(op, Delete) for op in planned.shard_ops.values())


def test_rows_are_split_by_the_shard_of_their_key() -> None:
    data = [{"id": i, "balance": 0} for i in range(20)]
    planned = plan(0, {"operation": "upsert", "table": "accounts", "data": data})
    for (table_id, shard), op in planned.shard_ops.items():
        assert table_id == "id-accounts" and isinstance(op, Upsert)
        assert {shard_of(k) for k in op.rows["id"].to_pylist()} == {shard}
    assert sum(op.rows.num_rows for op in planned.shard_ops.values()) == 20  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("op", "field"),
    [
        ("not an object", "operations[0]"),
        ({"operation": "merge", "table": "accounts"}, "operations[0].operation"),
        ({"operation": "insert", "table": 7, "data": {}}, "operations[0].table"),
        ({"operation": "insert", "table": "accounts"}, "operations[0].data"),
        ({"operation": "upsert", "table": "notes", "data": {"msg": "x"}}, "operations[0].table"),
        ({"operation": "delete", "table": "accounts"}, "operations[0].where"),
        ({"operation": "update", "table": "accounts", "where": {}}, "operations[0].set"),
        ({"operation": "delete", "table": "accounts", "where": {}, "expect_rows": -1}, "operations[0].expect_rows"),
        ({"operation": "delete", "table": "accounts", "where": {}, "expect_rows": {"min": 3, "max": 2}}, None),
    ],
)
def test_a_malformed_operation_names_where_it_is_wrong(op: object, field: str | None) -> None:
    with pytest.raises(InvalidRequest) as exc:
        plan(0, op)
    assert exc.value.fields["field"] == (field or "operations[0].expect_rows")


def test_a_malformed_operation_is_refused_before_its_table_is_looked_up() -> None:
    lookups = Lookups()
    with pytest.raises(InvalidRequest):
        plan_operation(0, {"operation": "merge", "table": "missing"}, lookups, 1000)
    with pytest.raises(InvalidName):  # not a name at all: the catalog is not asked
        plan_operation(0, {"operation": "insert", "table": "no such", "data": {}}, lookups, 1000)
    assert lookups.asked == []
    with pytest.raises(TableNotFound):
        plan_operation(0, {"operation": "insert", "table": "missing", "data": {}}, lookups, 1000)
    assert lookups.asked == ["missing"]


def test_rows_past_the_limit_are_refused() -> None:
    data = [{"id": i, "balance": 0} for i in range(6)]
    with pytest.raises(TooLarge):
        plan(0, {"operation": "insert", "table": "accounts", "data": data}, max_rows=5)


def test_consecutive_single_row_writes_on_a_shard_merge_and_keep_their_counts() -> None:
    ops: list[dict] = [{"operation": "insert", "table": "accounts", "data": {"id": i, "balance": 0}} for i in range(6)]
    ops.insert(3, {"operation": "update", "table": "accounts", "where": {}, "set": {"balance": 1}})
    batch = group([plan(i, op) for i, op in enumerate(ops)])
    assert sorted(spec.shard for spec, _ in batch.shards) == [0, 1, 2, 3]
    staged = []
    for spec, shard_ops in batch.shards:
        before = [i for i in range(3) if shard_of(i) == spec.shard]
        after = [i for i in range(3, 6) if shard_of(i) == spec.shard]
        # one insert for the run before the update and one after it: the update is never merged
        assert [type(op) for op in shard_ops] == [Insert] * bool(before) + [Update] + [Insert] * bool(after)
        inserted = [op.rows["id"].to_pylist() for op in shard_ops if isinstance(op, Insert)]
        assert inserted == [ids for ids in (before, after) if ids]
        staged.append(StageResult(0, 1, 0, tuple(OpResult(_rows(op)) for op in shard_ops)))
    counts = batch.affected(staged)
    assert counts == {0: 1, 1: 1, 2: 1, 3: 4 * 10, 4: 1, 5: 1, 6: 1}  # each merged insert keeps its own row count


def test_the_operation_behind_a_failing_shard_op_is_the_first_merged_one() -> None:
    ops = [{"operation": "upsert", "table": "accounts", "data": {"id": 7, "balance": i}} for i in range(3)]
    batch = group([plan(i, op) for i, op in enumerate(ops)])
    ((spec, (merged,)),) = batch.shards
    assert spec.shard == shard_of(7) and isinstance(merged, Upsert) and merged.rows["balance"].to_pylist() == [0, 1, 2]
    assert batch.operation_behind(0, 0) == 0
    assert batch.operation_behind(0, 1) is None and batch.operation_behind(1, 0) is None


def _rows(op: object) -> int:
    """What a shard reports for an op: an insert's rows; an update here touches 10 rows on every shard."""
    return op.rows.num_rows if isinstance(op, Insert) else 10
