"""The shard's write protocol on real Lance files, without Ray."""

from __future__ import annotations

import itertools
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import storage
from engine.catalog import ShardChange, SqliteCatalog, TableRecord
from engine.coerce import rows_to_table
from engine.errors import CommitConflict, DuplicateKey, TableExists, TableNotFound
from engine.plan import Compact, Delete, Insert, ReadPlan, ShardSpec, Update, Upsert
from engine.schema import build_schema
from engine.shard import Shard

SCHEMA = build_schema("t", {"id": "int", "v": "int", "s": "string"}, "id")
_uris = itertools.count()


def make_shard(tmp: Path) -> Shard:
    uri = str(tmp / f"s{next(_uris)}.lance")
    version = storage.create(uri, SCHEMA.arrow_schema())
    return Shard(ShardSpec("tid", "t", 0, 1, uri, ("id",), SCHEMA.arrow_schema(), False), version)


def rows(*pairs: tuple[int, int]) -> pa.Table:
    return rows_to_table([{"id": i, "v": v, "s": str(v)} for i, v in pairs], SCHEMA)


def state(shard: Shard, version: int | None = None) -> dict[int, int]:
    table = shard.rows_at(shard.version if version is None else version)
    return dict(zip(table["id"].to_pylist(), table["v"].to_pylist(), strict=True))


def on_disk(shard: Shard, version: int) -> dict[int, int]:
    table = storage.read(shard.uri, version)
    return dict(zip(table["id"].to_pylist(), table["v"].to_pylist(), strict=True))


def mirrors_lance(shard: Shard) -> bool:
    """The rows in memory are Lance's rows of the committed version, in order, at the same addresses."""
    memory = shard.table_at(shard.version)
    disk = storage.read(shard.uri, shard.version, addresses=True)
    return all(memory[c].to_pylist() == disk[c].to_pylist() for c in ("id", "v", storage.ROW_ADDRESS))


def test_stage_then_commit(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    base = shard.version
    result = shard.stage("a", None, [Insert(rows((1, 10), (2, 20)))])
    assert result.base_version == base and result.version > base and result.row_count == 2
    assert state(shard) == {}  # staged, not committed
    shard.commit("a")
    assert state(shard) == {1: 10, 2: 20} == on_disk(shard, shard.version)


def test_abort_rolls_lance_back(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    shard.stage("a", None, [Insert(rows((1, 10)))])
    shard.commit("a")
    committed = shard.version
    shard.stage("b", None, [Insert(rows((2, 20))), Update(pc.field("id") == 1, (("v", pc.scalar(99)),))])
    shard.abort("b")
    assert state(shard) == {1: 10}
    # The next write is based on committed data, not on the aborted version.
    result = shard.stage("c", None, [Insert(rows((3, 30)))])
    shard.commit("c")
    assert result.base_version == committed
    assert on_disk(shard, shard.version) == {1: 10, 3: 30}


def test_failed_op_rolls_back_earlier_ops_of_the_stage(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    shard.stage("a", None, [Insert(rows((1, 10)))])
    shard.commit("a")
    with pytest.raises(DuplicateKey):
        shard.stage("b", None, [Insert(rows((2, 20))), Insert(rows((1, 11)))])
    assert shard.staged is None
    result = shard.stage("c", None, [Insert(rows((2, 21)))])
    shard.commit("c")
    assert result.row_count == 2 and on_disk(shard, shard.version) == {1: 10, 2: 21}


def test_later_ops_see_earlier_ones(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    result = shard.stage("a", None, [Insert(rows((1, 10))), Update(pc.field("id") == 1, (("v", pc.field("v") + 5),))])
    shard.commit("a")
    assert [r.rows_affected for r in result.results] == [1, 1]
    assert on_disk(shard, shard.version) == {1: 15}


def test_duplicates_within_one_insert(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    with pytest.raises(DuplicateKey) as exc:
        shard.stage("a", None, [Insert(rows((1, 1), (2, 2), (1, 3)))])
    assert exc.value.fields["keys"] == [1]


def test_reads_old_versions_from_storage(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    versions = []
    for i in range(3):
        shard.stage(str(i), None, [Insert(rows((i, i)))])
        shard.commit(str(i))
        versions.append(shard.version)
    assert state(shard, versions[0]) == {0: 0}
    assert shard.read(versions[1], ReadPlan(count_only=True)).matched == 2


def test_compact_keeps_rows(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    for i in range(5):
        shard.stage(str(i), None, [Insert(rows((i, i)))])
        shard.commit(str(i))
    assert shard.needs_compaction(3)
    shard.stage("c", None, [Compact()])
    shard.commit("c")
    assert storage.fragment_count(shard.uri, shard.version) == 1
    assert on_disk(shard, shard.version) == {i: i for i in range(5)}
    assert mirrors_lance(shard)


def test_reload_from_storage_realigns_head(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    shard.stage("a", None, [Insert(rows((1, 1)))])
    shard.commit("a")
    committed = shard.version
    shard.stage("b", None, [Insert(rows((2, 2)))])  # staged, then the host "dies"
    reborn = Shard(shard.spec, committed)
    assert state(reborn) == {1: 1}
    reborn.stage("c", None, [Insert(rows((3, 3)))])
    reborn.commit("c")
    assert on_disk(reborn, reborn.version) == {1: 1, 3: 3}


OPS = st.lists(
    st.tuples(
        st.sampled_from(["insert", "upsert", "update", "delete", "compact"]),
        st.lists(st.integers(0, 12), min_size=1, max_size=4),
        st.integers(-5, 5),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OPS, st.data())
def test_shard_matches_a_dict_model(tmp_path: Path, ops: list, data: st.DataObject) -> None:
    """Random writes, each committed or aborted at random: memory, Lance and a dict model agree."""
    shard = make_shard(tmp_path)
    model: dict[int, int] = {}
    for n, (kind, ids, v) in enumerate(ops):
        ids = list(dict.fromkeys(ids))
        after = dict(model)
        if kind == "insert":
            op = Insert(rows(*[(i, v) for i in ids]))
            if any(i in model for i in ids):
                with pytest.raises(DuplicateKey):
                    shard.stage(str(n), None, [op])
                continue
            after.update({i: v for i in ids})
        elif kind == "upsert":
            op = Upsert(rows(*[(i, v) for i in ids]))
            after.update({i: v for i in ids})
        elif kind == "update":
            op = Update(pc.field("id").isin(ids), (("v", pc.field("v") + v),))
            after.update({i: model[i] + v for i in ids if i in model})
        elif kind == "delete":
            op = Delete(pc.field("id").isin(ids))
            after = {k: x for k, x in model.items() if k not in ids}
        else:
            op = Compact()
        shard.stage(str(n), None, [op])
        if data.draw(st.booleans()):
            shard.commit(str(n))
            model = after
        else:
            shard.abort(str(n))
        assert state(shard) == model
        assert mirrors_lance(shard)
    shard.stage("last", None, [Insert(rows((100, 0)))])
    shard.commit("last")
    assert on_disk(shard, shard.version) == {**model, 100: 0}


def test_an_aborted_stage_leaves_the_key_index_alone(tmp_path: Path) -> None:
    """Found by the model test: an aborted delete's key index reached the next commit (a compaction), so a later
    insert of the deleted-then-restored key was not refused."""
    shard = make_shard(tmp_path)
    shard.stage("a", None, [Insert(rows((0, 0)))])
    shard.commit("a")
    shard.stage("b", None, [Delete(pc.field("id").isin([0]))])
    shard.abort("b")
    shard.stage("c", None, [Compact()])
    shard.commit("c")
    with pytest.raises(DuplicateKey):
        shard.stage("d", None, [Insert(rows((0, 1)))])


class TestCatalog:
    def record(self, name: str = "t") -> TableRecord:
        return TableRecord(f"id-{name}", name, SCHEMA, 2, "2024-01-01T00:00:00Z", 0)

    def test_commit_is_compare_and_swap_over_all_shards(self, tmp_path: Path) -> None:
        cat = SqliteCatalog(tmp_path / "c.db")
        cat.create_table(self.record(), [1, 1])
        cat.commit([ShardChange("id-t", 0, 1, 2, 5), ShardChange("id-t", 1, 1, 3, 7)])
        assert [(s.version, s.row_count) for s in cat.snapshot("id-t")] == [(2, 5), (3, 7)]
        with pytest.raises(CommitConflict):
            cat.commit([ShardChange("id-t", 0, 2, 4, 6), ShardChange("id-t", 1, 1, 5, 8)])  # shard 1 moved on
        assert [s.version for s in cat.snapshot("id-t")] == [2, 3]  # nothing of the failed commit
        assert cat.get_table("t").version == 1

    def test_tables_survive_reopen(self, tmp_path: Path) -> None:
        SqliteCatalog(tmp_path / "c.db").create_table(self.record(), [1, 1])
        cat = SqliteCatalog(tmp_path / "c.db")
        assert cat.get_table("t").schema == SCHEMA
        with pytest.raises(TableExists):
            cat.create_table(self.record(), [1, 1])
        cat.drop_table("t")
        with pytest.raises(TableNotFound):
            cat.get_table("t")
        assert cat.snapshot("id-t") == []
