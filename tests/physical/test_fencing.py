"""Fencing: a writer aborted for holding a shard past its lease can write neither Lance nor the catalog.

Real Ray, Lance and SQLite. Each test opens a Database of its own with a one-second lease (shard hosts are named
per data directory, so the session's hosts keep their lease), holds a first writer at a fault point
(``engine.physical.faults.Holds``: it waits while a file exists) until the lease has run out and a second writer
has taken the shard and committed, then lets the first one go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import ray

import engine
from engine.errors import Conflict
from engine.physical import shardlog
from engine.physical.coordinator import resolve
from engine.storage import lance as storage

COLUMNS = {"id": "int", "who": "string"}
LANCE_ROWS = shardlog.DELTA_ROWS + 44  # more than a delta: the write is a Lance commit


@pytest.fixture
def fenced(tmp_path: Path) -> Iterator[engine.Database]:
    db = engine.connect(data_dir=str(tmp_path / "data"), lease_seconds=1.0, maintenance_seconds=0, hosts=1)
    yield db
    db.close()
    for host in db.coordinator.hosts:  # detached actors: they would outlive the test
        ray.kill(host, no_restart=True)


def rows(start: int, n: int, who: str) -> list[dict]:
    return [{"id": i, "who": who} for i in range(start, start + n)]


def contents(t: engine.Table) -> dict[int, str]:
    return {r["id"]: r["who"] for r in t.to_pylist()}


def until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Held:
    """A write run in a thread and held at an armed fault point while the file ``hold`` exists."""

    def __init__(self, hold: Path, write: Callable[[], object]) -> None:
        self.hold, self.error = hold, None
        self.thread = threading.Thread(target=self._run, args=(write,), daemon=True)
        self.thread.start()
        until(lambda: Path(f"{hold}.reached").exists() or not self.thread.is_alive(), "the write to be held")
        assert self.thread.is_alive(), f"the write finished without reaching the fault point: {self.error!r}"

    def _run(self, write: Callable[[], object]) -> None:
        try:
            write()
        except BaseException as exc:
            self.error = exc  # type: ignore[assignment]

    def release(self) -> BaseException | None:
        """Let the write go on; returns what it raised."""
        self.hold.unlink()
        self.thread.join(timeout=120)
        assert not self.thread.is_alive(), "the released write did not finish"
        return self.error


def assert_lease_expired(error: BaseException | None) -> None:
    assert isinstance(error, Conflict) and error.code == "lease_expired", repr(error)
    assert error.fields["shard"] == 0 and "nothing was applied" in error.message


def shard_uri(db: engine.Database, name: str) -> str:
    return db._resolve(name)[2][0].uri


def lance_base(db: engine.Database, name: str) -> int:
    """The Lance version the catalog's committed version of shard 0 is built on."""
    record, states, _ = db._resolve(name)
    return db.catalog.history(record.id, 0, states[0].version)[0]


def keeps_working(db: engine.Database, t: engine.Table, expected: dict[int, str]) -> None:
    """Later writes of both kinds commit, Lance's main line is the committed base, and a restarted host reloads
    exactly what the catalog names."""
    t.insert(rows(5000, LANCE_ROWS, "third"))
    t.upsert(rows(0, 2, "small"))
    expected = {**expected, **dict.fromkeys(range(5000, 5000 + LANCE_ROWS), "third"), 0: "small", 1: "small"}
    assert contents(t) == expected
    assert storage.latest_version(shard_uri(db, t.name)) == lance_base(db, t.name)
    for host in db.coordinator.hosts:
        ray.kill(host, no_restart=False)
    assert contents(t) == expected


def test_a_stage_held_past_its_lease_cannot_write_lance(fenced: engine.Database, tmp_path: Path) -> None:
    t = fenced.create_table("t", COLUMNS, primary_key="id", shards=1)
    t.insert(rows(0, 10, "first"))
    hold = tmp_path / "hold"
    hold.touch()
    resolve(fenced.coordinator.hosts[0].hold.remote("before_lance_commit", str(hold)))
    zombie = Held(hold, lambda: t.insert(rows(1000, LANCE_ROWS, "zombie")))  # staged, about to commit to Lance
    t.insert(rows(2000, LANCE_ROWS, "second"))  # waits out the lease, aborts the zombie, writes Lance and commits
    expected = {**dict.fromkeys(range(10), "first"), **dict.fromkeys(range(2000, 2000 + LANCE_ROWS), "second")}
    assert_lease_expired(zombie.release())
    assert contents(t) == expected
    uri = shard_uri(fenced, "t")
    assert storage.latest_version(uri) == lance_base(fenced, "t")  # the zombie added no version on top
    for version in range(1, storage.latest_version(uri) + 1):  # nor does any version hold a row of it
        assert "zombie" not in storage.read(uri, version, columns=["who"])["who"].to_pylist(), version
    keeps_working(fenced, t, expected)


def test_a_commit_held_past_its_lease_is_refused_by_the_catalog(fenced: engine.Database, tmp_path: Path) -> None:
    t = fenced.create_table("t", COLUMNS, primary_key="id", shards=1)
    t.insert(rows(0, 10, "first"))
    hold = tmp_path / "hold"
    hold.touch()
    fenced.coordinator.faults.arm("before_commit", str(hold))
    zombie = Held(hold, lambda: t.insert(rows(1000, 5, "zombie")))  # staged (a delta), its commit not yet sent
    t.insert(rows(2000, 5, "second"))  # waits out the lease, aborts the zombie's stage, commits
    record, states, _ = fenced._resolve("t")
    assert_lease_expired(zombie.release())
    assert fenced._resolve("t")[1] == states  # the catalog is as the second writer left it
    expected = {**dict.fromkeys(range(10), "first"), **dict.fromkeys(range(2000, 2005), "second")}
    assert contents(t) == expected
    _, deltas = fenced.catalog.history(record.id, 0, states[0].version)
    logged = [shardlog.decode(d)[1]["who"].to_pylist() for d in deltas]
    assert ["second"] * 5 in logged and not any("zombie" in who for who in logged)  # the shard log: only the second
    keeps_working(fenced, t, expected)
