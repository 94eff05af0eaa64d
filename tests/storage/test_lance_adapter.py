"""The Lance adapter: its cache of open datasets under threads, and what it makes durable before it returns.

Real Lance on a temporary directory, no Ray. ``os.fsync`` is wrapped only to see which files were synced (and
when); the syncs themselves are real.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from engine.storage import lance as storage

SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("v", pa.string())])


def _rows(start: int, n: int) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + n), pa.int64()), "v": [f"v{i}" for i in range(n)]}, SCHEMA)


@dataclass(frozen=True)
class _Stand:
    """Stands in for a dataset in the cache: all ``OpenDatasets`` reads of one is its version."""

    version: int


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads as often as possible, so races between two bytecodes show up."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_open_datasets_stay_bounded_and_consistent_under_threads(fast_switching: None) -> None:
    # Eight threads keep and take on a cache of two, so nearly every keep evicts: the old dict-based cache raised
    # KeyError here when two threads evicted the same oldest entry.
    cache = storage.OpenDatasets(maxsize=2)
    errors: list[BaseException] = []

    def churn(t: int) -> None:
        try:
            for i in range(20_000):
                cache.keep(f"u{t}", _Stand(i))  # type: ignore[arg-type]
                if i % 3 == 0:
                    cache.take(f"u{t}", i)
        except BaseException as exc:  # reported below: a thread's exception would otherwise be lost
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(cache) <= 2


def test_take_hands_a_dataset_to_one_writer_only() -> None:
    cache = storage.OpenDatasets(maxsize=4)
    cache.keep("u", _Stand(3))  # type: ignore[arg-type]
    assert cache.take("u", 3) == _Stand(3)
    assert cache.take("u", 3) is None and cache.take("u", 4) is None


def test_concurrent_writes_on_many_shards_share_a_small_cache(tmp_path: Path, fast_switching: None) -> None:
    opened = storage.OpenDatasets(maxsize=1)
    uris = [str(tmp_path / f"shard-{i}.lance") for i in range(4)]
    heads = [storage.create(uri, SCHEMA) for uri in uris]
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for n in range(8):
                heads[i], _ = storage.rewrite(uris[i], heads[i], np.empty(0, np.uint64), _rows(n * 10, 10), opened)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(opened) <= 1
    for uri, head in zip(uris, heads, strict=True):
        assert sorted(storage.read(uri, head)["id"].to_pylist()) == list(range(80))


# -- durability -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Sync:
    path: str
    manifests: int  # how many manifests the dataset had when this path was synced


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[_Sync]:
    """Every real fsync in the test, by path, with the dataset's manifest count at that moment."""
    calls: list[_Sync] = []
    real = os.fsync

    def spy(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        # the dataset is the nearest directory with a _versions folder (its data files end in .lance too)
        versions = next((p / "_versions" for p in Path(path).parents if (p / "_versions").is_dir()), None)
        count = len(list(versions.glob("*.manifest"))) if versions is not None else 0
        calls.append(_Sync(path, count))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


def _files(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_ino for p in root.rglob("*")} if root.exists() else {}


def _new(before: dict[str, int], root: Path) -> set[str]:
    return {p for p, inode in _files(root).items() if before.get(p) != inode}


def _assert_durable(new: set[str], synced: list[_Sync]) -> None:
    """Every new file and directory was synced, and so was each directory that holds one."""
    paths = {s.path for s in synced}
    assert new, "the write created no file"
    assert new <= paths, f"not synced: {sorted(new - paths)}"
    holders = {os.path.dirname(p) for p in new}
    assert holders <= paths, f"directories not synced: {sorted(holders - paths)}"


def test_create_syncs_the_dataset_and_the_new_directories_above_it(tmp_path: Path, synced: list[_Sync]) -> None:
    uri = tmp_path / "tables" / "t1" / "shard-0000.lance"
    storage.create(str(uri), SCHEMA)
    _assert_durable(_new({}, uri), synced)
    paths = {s.path for s in synced}
    assert {str(uri.parent), str(tmp_path / "tables"), str(tmp_path)} <= paths  # each new entry's parent


def test_rewrite_syncs_data_before_the_manifest_that_names_it(tmp_path: Path, synced: list[_Sync]) -> None:
    uri = tmp_path / "shard.lance"
    head, _ = storage.rewrite(str(uri), storage.create(str(uri), SCHEMA), np.empty(0, np.uint64), _rows(0, 100))
    addresses = storage.read(str(uri), head, addresses=True)[storage.ROW_ADDRESS].to_numpy()
    manifests = len(list((uri / "_versions").glob("*.manifest")))
    before = _files(uri)
    synced.clear()
    version, added = storage.rewrite(str(uri), head, addresses[:10], _rows(1000, 5))
    new = _new(before, uri)
    _assert_durable(new, synced)
    assert any("/_deletions/" in p for p in new) and any("/data/" in p for p in new)
    for s in synced:
        if "/data/" in s.path or "/_deletions/" in s.path:
            assert s.manifests == manifests, f"{s.path} was synced after the new manifest was written"
    assert len(added) == 5 and storage.read(str(uri), version).num_rows == 95


Step = Callable[[str, int], int]
STEPS: dict[str, Step] = {
    "put_column": lambda uri, v: storage.put_column(uri, v, "c", pa.array(np.arange(100))),
    "drop_column": lambda uri, v: storage.drop_column(
        uri, storage.put_column(uri, v, "c", pa.array(np.arange(100))), "c"
    ),
    "restore": lambda uri, v: storage.restore(uri, v - 1),
    "compact": lambda uri, v: storage.compact(uri),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_every_other_write_syncs_what_it_wrote(tmp_path: Path, synced: list[_Sync], step: str) -> None:
    uri = tmp_path / "shard.lance"
    head = storage.create(str(uri), SCHEMA)
    for n in range(2):  # two fragments, so compaction has work to do
        head, _ = storage.rewrite(str(uri), head, np.empty(0, np.uint64), _rows(n * 50, 50))
    before = _files(uri)
    synced.clear()
    STEPS[step](str(uri), head)
    _assert_durable(_new(before, uri), synced)
