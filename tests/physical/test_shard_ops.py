"""A stage's row operations as pure functions over Arrow tables (``engine.physical.shard_ops``): no Ray, and no
storage except where a whole shard's stage is checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.errors import DuplicateKey, InvalidValue
from engine.logical.plan import Delete, Insert, ShardSpec, Update, Upsert
from engine.model.coerce import rows_to_table
from engine.model.schema import TableSchema, build_schema
from engine.physical.keyindex import KeyIndex
from engine.physical.shard import Shard
from engine.physical.shard_ops import WriteState, apply
from engine.physical.shard_rows import as_working
from engine.storage import lance as storage

KEYED = build_schema("t", {"id": "int", "v": "int"}, "id")
UNKEYED = build_schema("u", {"v": "int"}, None)


def spec(schema: TableSchema = KEYED, shard: int = 0, shards: int = 1, uri: str = "unused") -> ShardSpec:
    arrow = schema.arrow_schema()
    return ShardSpec("tid", "t", shard, shards, uri, schema.key, arrow, not schema.primary_key)


def keyed(*pairs: tuple[int, int]) -> pa.Table:
    return rows_to_table([{"id": i, "v": v} for i, v in pairs], KEYED)


def working(rows: pa.Table) -> pa.Table:
    return as_working(rows, rows.schema, pa.array(np.arange(rows.num_rows), pa.uint64()))


def write_state(s: ShardSpec, keys: KeyIndex | None = None) -> WriteState:
    return WriteState(s, s.schema, s.computed, 0, keys, lambda table, pinned: None)


def test_inserts_check_keys_on_the_working_index_and_leave_the_committed_one_intact() -> None:
    work = working(keyed((1, 10), (2, 20)))
    committed = KeyIndex.of([work["id"]])
    state = write_state(spec(), committed)
    work, gone, result = apply(work, Insert(keyed((3, 30))), state)
    assert gone is None and result.rows_affected == 1 and work.num_rows == 3
    assert work[storage.ROW_ADDRESS].null_count == 1  # the new row has no Lance address until the stage persists
    assert len(committed) == 2 and state.keys is not None and len(state.keys) == 3
    with pytest.raises(DuplicateKey) as exc:
        apply(work, Insert(keyed((3, 31))), state)
    assert exc.value.fields["keys"] == [3]
    work, gone, _ = apply(work, Delete(pc.field("id") == 3), state)  # the index drops the deleted key ...
    assert gone is not None and gone["id"].to_pylist() == [3] and len(state.keys) == 2
    work, _, _ = apply(work, Insert(keyed((3, 32))), state)  # ... so it may be inserted again
    assert sorted(work["id"].to_pylist()) == [1, 2, 3]


def test_an_upsert_keeps_the_last_row_per_key_and_forgets_the_index() -> None:
    state = write_state(spec(), KeyIndex.of([pa.array([1])]))
    work, replaced, result = apply(working(keyed((1, 10))), Upsert(keyed((1, 11), (2, 20), (1, 12))), state)
    assert replaced is not None and replaced["v"].to_pylist() == [10] and result.rows_affected == 3
    assert dict(zip(work["id"].to_pylist(), work["v"].to_pylist(), strict=True)) == {1: 12, 2: 20}
    assert state.keys is None  # rebuilt from the working table when next needed


def test_an_update_that_cannot_compute_its_values_names_the_set_and_changes_nothing() -> None:
    work = working(keyed((1, 10)))
    state = write_state(spec())
    with pytest.raises(InvalidValue) as exc:
        apply(work, Update(None, (("v", pc.divide(pc.field("v"), pc.scalar(0))),)), state)
    assert exc.value.fields["field"] == "set" and "computing the new values failed" in exc.value.message
    assert work["v"].to_pylist() == [10]


def test_row_ids_interleave_across_the_shards_of_a_table() -> None:
    s = spec(UNKEYED, shard=1, shards=3)
    state = write_state(s)
    rows = rows_to_table([{"v": 1}, {"v": 2}], UNKEYED)
    work, _, result = apply(working(rows.slice(0, 0)), Insert(rows, return_rows=True), state)
    assert result.rows is not None and result.rows["_row_id"].to_pylist() == [1, 4] == work["_row_id"].to_pylist()
    assert state.next_row_id == 2


def test_row_ids_a_failed_stage_handed_out_are_not_handed_out_again(tmp_path: Path) -> None:
    uri = str(tmp_path / "u.lance")
    shard = Shard(spec(UNKEYED, uri=uri), storage.create(uri, UNKEYED.arrow_schema()))
    rows = rows_to_table([{"v": 1}, {"v": 2}], UNKEYED)
    with pytest.raises(InvalidValue):
        shard.stage("a", None, [Insert(rows), Update(None, (("v", pc.divide(pc.field("v"), pc.scalar(0))),))])
    assert shard.staged is None
    shard.stage("b", None, [Insert(rows.slice(0, 1))])
    shard.commit("b")
    assert shard.rows_at(shard.version)["_row_id"].to_pylist() == [2]
