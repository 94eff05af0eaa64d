"""A batch's operations as shard operations: each one validated and planned, then all grouped per shard.

Pure: no Ray, no catalog. The batch driver (``engine.client.batch``) hands in each table's catalog entry through
``table_of`` and sends the grouped work to the coordinator; what comes back is mapped to the batch's operations
with ``BatchPlan.affected`` and ``BatchPlan.operation_behind``.

>>> from engine.model.schema import build_schema
>>> from engine.storage.records import TableRecord
>>> schema = build_schema("accounts", {"id": "int", "balance": "int"}, "id")
>>> accounts = Resolved.of(TableRecord("a1", "accounts", schema, 4, "now", 0), "/data")
>>> ops = [{"operation": "update", "table": "accounts", "where": {"id": i}, "set": {"balance": 0}} for i in (1, 2)]
>>> plan = group([plan_operation(i, op, lambda name: accounts, 1000) for i, op in enumerate(ops)])
>>> sum(len(ops) for _, ops in plan.shards)
2
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import pyarrow as pa

from engine.errors import InvalidRequest
from engine.expr.where import parse_where
from engine.logical.assignments import assignments
from engine.logical.plan import Delete, Insert, ShardOp, ShardSpec, StageResult, Update, Upsert
from engine.logical.planner import partition, route, rows_to_write, specs_of
from engine.model.names import check_name
from engine.storage.records import TableRecord

OperationType = Literal["insert", "update", "delete", "upsert"]
OPERATION_TYPES: tuple[str, ...] = ("insert", "update", "delete", "upsert")
ShardKey = tuple[str, int]  # (table id, shard): one shard of any table in the batch


@dataclass(frozen=True)
class Resolved:
    """A table as the batch plans against it: one catalog entry and its shards' specs, read once per batch."""

    record: TableRecord
    specs: tuple[ShardSpec, ...]

    @classmethod
    def of(cls, record: TableRecord, root: str) -> Resolved:
        """``record`` with the specs of its shards under the data directory ``root``."""
        return cls(record, specs_of(record, root))


@dataclass(frozen=True)
class PlannedOperation:
    """One operation turned into shard operations: ``{(table_id, shard): op}``."""

    index: int
    table: str
    kind: str
    shard_ops: dict[ShardKey, ShardOp]
    expect: tuple[int, int] | None  # ``expect_rows`` as (min, max)
    specs: tuple[ShardSpec, ...]  # its table's, by shard


def plan_operation(index: int, op: Any, table_of: Callable[[str], Resolved], max_rows: int) -> PlannedOperation:
    """Validate operation ``index`` and turn it into shard operations (nothing runs).

    ``table_of`` is asked for the table only once the operation's shape is valid, so a malformed operation is
    reported as such before its table is looked up (and a missing table before anything else about its data).
    ``max_rows`` caps a list of rows to write (``TESSERA_MAX_ROWS_PER_REQUEST``).
    """
    loc = f"operations[{index}]"
    if not isinstance(op, dict):
        raise InvalidRequest(f"{loc} must be an object", field=loc)
    kind = op.get("operation")
    if kind not in OPERATION_TYPES:
        raise InvalidRequest(f"{loc}.operation must be one of {', '.join(OPERATION_TYPES)}", field=f"{loc}.operation")
    table_name = op.get("table")
    if not isinstance(table_name, str):
        raise InvalidRequest(f"{loc}.table must be a table name", field=f"{loc}.table")
    table = table_of(check_name(table_name, "table"))
    if kind in ("insert", "upsert"):
        shard_ops = _plan_write(loc, kind, op, table, max_rows)
    else:
        shard_ops = _plan_filtered(loc, kind, op, table)
    return PlannedOperation(index, table_name, kind, shard_ops, _expect(op.get("expect_rows"), loc), table.specs)


def _plan_write(loc: str, kind: str, op: dict[str, Any], table: Resolved, max_rows: int) -> dict[ShardKey, ShardOp]:
    """An insert or upsert: its rows checked against the schema and split by shard."""
    schema = table.record.schema
    data = op.get("data")
    if data is None or data == []:
        raise InvalidRequest(f"{loc}.data is required for {kind}", field=f"{loc}.data")
    if kind == "upsert" and not schema.primary_key:
        raise InvalidRequest(
            f"{loc}: table '{table.record.name}' has no primary key: upsert needs one", field=f"{loc}.table"
        )
    rows = rows_to_write(data, schema, max_rows)
    written = partition(rows, schema, len(table.specs), Insert if kind == "insert" else Upsert, False)
    return {(table.specs[i].table_id, i): shard_op for i, shard_op in written}


def _plan_filtered(loc: str, kind: str, op: dict[str, Any], table: Resolved) -> dict[ShardKey, ShardOp]:
    """An update or delete: the same shard operation on every shard its ``where`` can match."""
    schema = table.record.schema
    if "where" not in op:
        raise InvalidRequest(f"{loc}.where is required for {kind} (use {{}} for every row)", field=f"{loc}.where")
    found = route(parse_where(op["where"], f"{loc}.where"), schema, table.record.shards, f"{loc}.where")
    shard_op: ShardOp
    if kind == "update":
        if not isinstance(op.get("set"), dict) or not op["set"]:
            raise InvalidRequest(f"{loc}.set is required for update", field=f"{loc}.set")
        shard_op = Update(found.where, assignments(schema, op["set"]), found.keys)
    else:
        shard_op = Delete(found.where, found.keys)
    return {(table.specs[i].table_id, i): shard_op for i in found.targets}


def _expect(value: Any, loc: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return (value, value)
    if isinstance(value, dict) and set(value) <= {"min", "max"}:
        lo, hi = value.get("min", 0), value.get("max", 2**63 - 1)
        if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (lo, hi)) and lo <= hi:
            return (lo, hi)
    raise InvalidRequest(
        f"{loc}.expect_rows must be a count or {{min, max}} of non-negative integers", field=f"{loc}.expect_rows"
    )


# origin[w][k]: the batch operations behind op k of shard w, with their own row counts when several were merged.
Origin = tuple[tuple[tuple[tuple[int, int | None], ...], ...], ...]


@dataclass(frozen=True)
class BatchPlan:
    """The batch's planned operations and its work: per shard, a spec and its ops in batch order."""

    operations: tuple[PlannedOperation, ...]
    shards: tuple[tuple[ShardSpec, tuple[ShardOp, ...]], ...]
    origin: Origin  # which operations are behind each shard op (see ``Origin``)

    def affected(self, staged: Sequence[StageResult]) -> dict[int, int]:
        """Rows affected per operation, from the stage results of ``shards`` (in their order)."""
        counts = {p.index: 0 for p in self.operations}
        for result, ops in zip(staged, self.origin, strict=True):
            for op_result, behind in zip(result.results, ops, strict=True):
                for index, rows in behind:
                    counts[index] += op_result.rows_affected if rows is None else rows
        return counts

    def operation_behind(self, shard: int, position: int) -> int | None:
        """The operation behind op ``position`` of ``shards[shard]`` (a merged op: its first), if there is one."""
        if not 0 <= shard < len(self.origin) or not 0 <= position < len(self.origin[shard]):
            return None
        return self.origin[shard][position][0][0]


def group(plans: Sequence[PlannedOperation]) -> BatchPlan:
    """One entry per shard with its ops in batch order.

    Consecutive inserts (or upserts) on a shard are merged into one shard op, so a batch of many single-row
    writes is one write per shard instead of one per row. That keeps their meaning: an upsert's last row
    for a key wins, and inserts that collide fail together just as they would one by one. Merged rows become
    one contiguous table (Ray serialises each chunk of a table separately).
    """
    # per shard: its spec, its ops (each with the row tables merged into it), and where each op came from
    by_shard: dict[ShardKey, tuple[ShardSpec, list[tuple[ShardOp, list[pa.Table]]], list[list[tuple[int, int | None]]]]]
    by_shard = {}
    for p in plans:
        for key, shard_op in p.shard_ops.items():
            _, ops, origin = by_shard.setdefault(key, (p.specs[key[1]], [], []))
            last = ops[-1][0] if ops else None
            if isinstance(shard_op, (Insert, Upsert)) and type(last) is type(shard_op):
                assert isinstance(last, (Insert, Upsert))
                if len(origin[-1]) == 1 and origin[-1][0][1] is None:
                    origin[-1] = [(origin[-1][0][0], last.rows.num_rows)]
                ops[-1][1].append(shard_op.rows)
                origin[-1].append((p.index, shard_op.rows.num_rows))
            else:
                ops.append((shard_op, [shard_op.rows] if isinstance(shard_op, (Insert, Upsert)) else []))
                origin.append([(p.index, None)])
    return BatchPlan(
        tuple(plans),
        tuple((spec, tuple(_merged(op, rows) for op, rows in ops)) for spec, ops, _ in by_shard.values()),
        tuple(tuple(tuple(behind) for behind in origin) for _, _, origin in by_shard.values()),
    )


def _merged(op: ShardOp, rows: list[pa.Table]) -> ShardOp:
    if len(rows) < 2:
        return op
    assert isinstance(op, (Insert, Upsert))
    return replace(op, rows=pa.concat_tables(rows).combine_chunks())
