"""The shard's write protocol on real Lance files and its log in a real SQLite catalog, without Ray."""

from __future__ import annotations

import contextlib
import functools
import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import CommitConflict, DuplicateKey, LeaseExpired, TableExists, TableNotFound, VersionGone
from engine.logical.plan import Compact, Delete, Insert, ReadPlan, ShardOp, ShardSpec, StageResult, Update, Upsert
from engine.model.coerce import rows_to_table
from engine.model.schema import build_schema
from engine.physical import shard_rows, shardlog
from engine.physical.shard import Shard
from engine.storage import lance as storage
from engine.storage.catalog import SqliteCatalog
from engine.storage.history import read_history
from engine.storage.records import ShardChange, TableRecord

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
        st.sampled_from(["insert", "upsert", "update", "delete", "compact", "bulk"]),
        st.lists(st.integers(0, 12), min_size=1, max_size=4),
        st.integers(-5, 5),
    ),
    min_size=1,
    max_size=14,
)


@pytest.mark.parametrize("logged", [False, True], ids=["lance", "logged"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OPS, st.data())
def test_shard_matches_a_dict_model(
    tmp_path_factory: pytest.TempPathFactory, logged: bool, ops: list, data: st.DataObject
) -> None:
    """Random writes, each committed or aborted at random: memory, storage and a dict model agree after every step.

    ``logged``: a shard with a catalog's log and a short chain, so that deltas, folds and reloads all happen."""
    saved = shardlog.DELTA_CHAIN, shardlog.DELTA_ROWS
    if logged:
        shardlog.DELTA_CHAIN, shardlog.DELTA_ROWS = 3, 6
    try:
        writer = Logged(tmp_path_factory.mktemp("model"), logged)
        model: dict[int, int] = {}
        for n, (kind, ids, v) in enumerate(ops):
            ids = list(dict.fromkeys(ids))
            after = dict(model)
            if kind == "insert":
                op: ShardOp = Insert(rows(*[(i, v) for i in ids]))
                if any(i in model for i in ids):
                    with pytest.raises(DuplicateKey):
                        writer.shard.stage(str(n), None, [op])
                    continue
                after.update({i: v for i in ids})
            elif kind == "upsert":
                op = Upsert(rows(*[(i, v) for i in ids]))
                after.update({i: v for i in ids})
            elif kind == "bulk":  # more rows than a delta takes
                op = Upsert(rows(*[(i, v) for i in range(20, 28)]))
                after.update({i: v for i in range(20, 28)})
            elif kind == "update":
                op = Update(pc.field("id").isin(ids), (("v", pc.field("v") + v),))
                after.update({i: model[i] + v for i in ids if i in model})
            elif kind == "delete":
                op = Delete(pc.field("id").isin(ids))
                after = {k: x for k, x in model.items() if k not in ids}
            else:
                op = Compact()
            commit = data.draw(st.booleans())
            writer.write(str(n), op, commit=commit)
            if commit:
                model = after
            assert state(writer.shard) == model
            assert same_after_reload(writer) if logged else mirrors_lance(writer.shard)
        writer.write("last", Compact())
        assert on_disk(writer.shard, writer.shard.log.base) == model
    finally:
        shardlog.DELTA_CHAIN, shardlog.DELTA_ROWS = saved


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


@contextlib.contextmanager
def revoked() -> Iterator[None]:
    """A fence whose grant was revoked: the host's guard raises before the Lance commit it wraps."""
    raise LeaseExpired("t", 0, "its lease ran out")
    yield


@pytest.mark.parametrize(
    "ops",
    [[Insert(rows(*((i, i) for i in range(10, 10 + shardlog.DELTA_ROWS + 1))))], [Compact()]],
    ids=["write", "compaction"],
)
def test_a_revoked_stage_commits_nothing_to_lance(tmp_path: Path, ops: list[ShardOp]) -> None:
    """Every Lance commit of a stage goes through its guard: once the host revoked the writer's grant (its lease
    ran out and the next writer has the shard), the stage cannot add a Lance version under the next writer."""
    shard = make_shard(tmp_path)
    for i in range(3):
        shard.stage(str(i), None, [Insert(rows((i, i)))])
        shard.commit(str(i))
    latest = storage.latest_version(shard.uri)
    with pytest.raises(LeaseExpired):
        shard.stage("zombie", None, ops, guard=revoked)
    assert storage.latest_version(shard.uri) == latest and shard.staged is None
    shard.abort("zombie")
    shard.stage("next", None, [Insert(rows((99, 99)))])
    shard.commit("next")
    assert state(shard) == {0: 0, 1: 1, 2: 2, 99: 99} and mirrors_lance(shard)


class TestCatalog:
    def record(self, name: str = "t") -> TableRecord:
        return TableRecord(f"id-{name}", name, SCHEMA, 2, "2024-01-01T00:00:00Z", 0)

    def test_commit_refuses_a_token_older_than_the_shards_last(self, tmp_path: Path) -> None:
        """The fencing token of a revoked grant loses to the later grant's, whole: nothing of its commit lands."""
        cat = SqliteCatalog(tmp_path / "c.db")
        cat.create_table(self.record(), [1, 1])
        cat.commit([ShardChange("id-t", 0, 1, 2, 5, token=50)])
        with pytest.raises(LeaseExpired) as exc:  # the version matches, the token is older
            cat.commit([ShardChange("id-t", 1, 1, 3, 7, token=60), ShardChange("id-t", 0, 2, 3, 6, token=40)])
        assert exc.value.fields == {"table": "t", "shard": 0}
        assert [s.version for s in cat.snapshot("id-t")] == [2, 1] and cat.get_table("t").version == 1
        assert cat.history("id-t", 1, 1) == (1, [])  # shard 1 was not published either
        with pytest.raises(LeaseExpired):  # a stale version with an older token: fenced, not a plain conflict
            cat.commit([ShardChange("id-t", 0, 1, 3, 6, token=40)])
        with pytest.raises(CommitConflict):  # a stale version with a newer token: a conflict, retried
            cat.commit([ShardChange("id-t", 0, 1, 3, 6, token=70)])
        cat.commit([ShardChange("id-t", 0, 2, 3, 6, token=50), ShardChange("id-t", 1, 1, 3, 7, token=60)])
        assert [s.version for s in cat.snapshot("id-t")] == [3, 3]

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


# -- the shard log (engine.physical.shardlog) ----------------------------------------------------------------------
class Logged:
    """A shard whose versions a real catalog publishes, as the coordinator would (``logged``: with the catalog's
    shard log; without, the shard writes every version to Lance and the catalog only names it)."""

    def __init__(self, tmp: Path, logged: bool = True, name: str = "t") -> None:
        self.catalog = SqliteCatalog(tmp / f"{name}.db")
        self.table_id = f"id-{name}"
        uri = str(tmp / f"{name}.lance")
        version = storage.create(uri, SCHEMA.arrow_schema())
        self.catalog.create_table(TableRecord(self.table_id, name, SCHEMA, 1, "2026-01-01T00:00:00Z", 0), [version])
        self.spec = ShardSpec(
            self.table_id,
            name,
            0,
            1,
            uri,
            ("id",),
            SCHEMA.arrow_schema(),
            False,
            catalog=self.catalog.path if logged else "",
        )
        self.shard = self.open(version)

    def open(self, version: int) -> Shard:
        if not self.spec.catalog:
            return Shard(self.spec, version)
        return Shard(self.spec, version, functools.partial(read_history, self.catalog.path, self.table_id, 0))

    def write(self, txn: str, *ops: ShardOp, commit: bool = True) -> StageResult:
        result = self.shard.stage(txn, None, list(ops))
        if not commit:
            self.shard.abort(txn)
            return result
        if result.version != result.base_version:
            self.catalog.commit(
                [
                    ShardChange(
                        self.table_id,
                        0,
                        result.base_version,
                        result.version,
                        result.row_count,
                        result.lance,
                        result.delta,
                    )
                ]
            )
        self.shard.commit(txn)
        return result


def same_after_reload(logged: Logged) -> bool:
    """A shard opened afresh at the committed version (Lance base + logged deltas) holds the same rows, in the
    same order, at the same addresses as the one that wrote them."""
    memory = logged.shard.table_at(logged.shard.version)
    fresh = logged.open(logged.shard.version).table_at(logged.shard.version)
    return all(memory[c].to_pylist() == fresh[c].to_pylist() for c in ("id", "v", "s", storage.ROW_ADDRESS))


def test_a_small_write_is_logged_not_written_to_lance(tmp_path: Path) -> None:
    logged = Logged(tmp_path)
    lance_before = storage.latest_version(logged.spec.uri)
    result = logged.write("a", Insert(rows((1, 10), (2, 20))))
    assert result.delta is not None and result.lance == lance_before
    assert storage.latest_version(logged.spec.uri) == lance_before  # no Lance commit
    logged.write("b", Update(pc.field("id") == 1, (("v", pc.field("v") + 5),)))
    assert state(logged.shard) == {1: 15, 2: 20}
    assert same_after_reload(logged)
    base, deltas = logged.catalog.history(logged.table_id, 0, logged.shard.version)
    assert base == lance_before and len(deltas) == 2


def test_an_aborted_small_write_leaves_no_trace(tmp_path: Path) -> None:
    logged = Logged(tmp_path)
    logged.write("a", Insert(rows((1, 10))))
    lance = storage.latest_version(logged.spec.uri)
    logged.write("b", Insert(rows((2, 20))), Delete(pc.field("id") == 1), commit=False)
    assert state(logged.shard) == {1: 10}
    assert storage.latest_version(logged.spec.uri) == lance
    logged.write("c", Insert(rows((3, 30))))
    assert state(logged.shard) == {1: 10, 3: 30}
    assert same_after_reload(logged)


def test_the_chain_folds_into_lance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shardlog, "DELTA_CHAIN", 3)
    logged = Logged(tmp_path)
    first = storage.latest_version(logged.spec.uri)
    for i in range(3):
        assert logged.write(str(i), Insert(rows((i, i)))).delta is not None
    folded = logged.write("fold", Update(pc.field("id") == 0, (("v", pc.scalar(100)),)))
    assert folded.delta is None and folded.lance > first
    # Lance alone now holds the committed rows, at the addresses the shard has in memory
    disk = storage.read(logged.spec.uri, folded.lance, addresses=True)
    memory = logged.shard.table_at(logged.shard.version)
    assert disk["id"].to_pylist() == memory["id"].to_pylist()
    assert disk[storage.ROW_ADDRESS].to_pylist() == memory[storage.ROW_ADDRESS].to_pylist()
    assert not shardlog.is_virtual(memory[storage.ROW_ADDRESS].to_numpy()).any()
    assert state(logged.shard) == {0: 100, 1: 1, 2: 2}
    assert same_after_reload(logged)


def test_a_large_write_goes_to_lance_with_the_pending_deltas(tmp_path: Path) -> None:
    logged = Logged(tmp_path)
    logged.write("a", Insert(rows((1, 1))))
    many = rows(*[(i, i) for i in range(10, 10 + shardlog.DELTA_ROWS + 1)])
    result = logged.write("b", Insert(many), Delete(pc.field("id") == 1))
    assert result.delta is None
    assert sorted(state(logged.shard)) == list(range(10, 10 + shardlog.DELTA_ROWS + 1))
    base, deltas = logged.catalog.history(logged.table_id, 0, logged.shard.version)
    assert base == result.lance and deltas == []
    assert same_after_reload(logged)


def test_compaction_folds_first(tmp_path: Path) -> None:
    logged = Logged(tmp_path)
    for i in range(4):
        logged.write(str(i), Insert(rows((i, i))))
    assert logged.shard.needs_compaction(min_fragments=100)  # deltas to fold, however few fragments
    logged.write("c", Compact())
    assert not logged.shard.needs_compaction(min_fragments=100)
    assert storage.fragment_count(logged.spec.uri, logged.shard.log.base) == 1
    assert state(logged.shard) == {i: i for i in range(4)}
    assert same_after_reload(logged)


def test_old_versions_are_rebuilt_from_the_log(tmp_path: Path) -> None:
    logged = Logged(tmp_path)
    versions = []
    for i in range(4):
        logged.write(str(i), Upsert(rows((0, i), (i + 1, i))))
        versions.append(logged.shard.version)
    assert state(logged.shard, versions[0]) == {0: 0, 1: 0}
    assert state(logged.shard, versions[1]) == {0: 1, 1: 0, 2: 1}


def test_prune_keeps_what_recent_versions_need(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shardlog, "DELTA_CHAIN", 2)
    logged = Logged(tmp_path)
    old = []
    for i in range(5):
        logged.write(str(i), Insert(rows((i, i))))
        old.append(logged.shard.version)
    recent = logged.shard.version
    # No retention: the cut is now, after every commit so far (rather than sleeping until they are old enough).
    [keep] = logged.catalog.prune_log(logged.table_id, retention_seconds=0)
    assert keep == logged.shard.log.base  # the last fold: the versions since are built on it
    assert logged.shard.cleanup(keep) > 0
    assert state(logged.shard, recent) == {i: i for i in range(5)}
    assert logged.open(recent).table.num_rows == 5
    with pytest.raises(VersionGone):
        logged.catalog.history(logged.table_id, 0, old[0])


def test_catalogs_from_before_the_log_get_one_row_per_shard(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SqliteCatalog(path).create_table(TableRecord("id-t", "t", SCHEMA, 2, "2026-01-01T00:00:00Z", 0), [3, 5])
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM shard_log")
    catalog = SqliteCatalog(path)
    assert catalog.history("id-t", 1, 5) == (5, [])


def test_provisional_addresses_never_collide_with_lance_ones() -> None:
    lance = np.array([(7 << 32) | 3], np.uint64)
    assert not shardlog.is_virtual(lance).any()
    assert shardlog.is_virtual(shardlog.provisional(0, 3)).all()
    assert shardlog.lance_rows(pa.array([1, 2, None, int(shardlog.VIRTUAL)], pa.uint64())) == 2


# -- cutting rows out without copying the shard ----------------------------------------------------------------
def test_split_cuts_out_rows_like_a_filter_and_tidy_bounds_the_chunks() -> None:
    rng = np.random.default_rng(7)
    table = pa.table({"id": np.arange(300_000), "v": rng.integers(0, 100, 300_000)})
    expected = table
    for step in range(120):
        positions = np.unique(rng.integers(0, table.num_rows, 3 if step % 10 else 100))  # a few, or many
        kept, removed = shard_rows.split(table, positions)
        hit = np.zeros(table.num_rows, bool)
        hit[positions] = True
        assert removed.to_pydict() == expected.filter(pa.array(hit)).to_pydict()
        moved = removed.slice(0, 1)  # as an update does: the changed row goes to the end
        table = shard_rows.tidy(pa.concat_tables([kept, moved]))
        expected = pa.concat_tables([expected.filter(pa.array(~hit)), moved]).combine_chunks()
        assert table.column(0).num_chunks <= shard_rows._MAX_LARGE_CHUNKS + 1
    assert table.to_pydict() == expected.to_pydict()
