"""The SQLite catalog on real files, without Ray: busy errors, Idempotency-Key reservations, history readers."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.errors import CatalogBusy, IdempotencyRace
from engine.model.schema import build_schema
from engine.storage import holders
from engine.storage.catalog import SqliteCatalog
from engine.storage.history import HistoryReaders
from engine.storage.idempotency import IdempotencyRecord, iso
from engine.storage.records import TableRecord, now_iso

SCHEMA = build_schema("t", {"id": "int"}, "id")
HOUR = 3600.0


@pytest.fixture
def catalog(tmp_path: Path) -> SqliteCatalog:
    return SqliteCatalog(tmp_path / "catalog.db", busy_timeout=0.1)


@contextmanager
def write_lock(path: str) -> Iterator[sqlite3.Connection]:
    """Another connection holds SQLite's write lock on the file, as a stuck writer of another process would."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield holder
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def table(name: str = "t") -> TableRecord:
    return TableRecord(f"id-{name}", name, SCHEMA, 1, now_iso(), 0)


class TestBusy:
    def test_a_write_past_the_busy_timeout_is_catalog_busy_and_changes_nothing(self, catalog: SqliteCatalog) -> None:
        with write_lock(catalog.path):
            with pytest.raises(CatalogBusy) as exc:
                catalog.create_table(table(), [1])
            assert exc.value.code == "busy" and exc.value.fields["retry_after"] == 1
            assert "0.1 s" in exc.value.message and "nothing was changed" in exc.value.message
            with pytest.raises(CatalogBusy):
                catalog.set_meta("k", "v")
            assert catalog.list_tables() == [] and catalog.get_meta("k") is None  # reads go on (WAL)
        catalog.create_table(table(), [1])  # the connection was left clean: the next write passes
        assert [r.name for r in catalog.list_tables()] == ["t"]

    def test_every_kind_of_write_is_translated(self, catalog: SqliteCatalog) -> None:
        catalog.create_table(table(), [1])
        writes = [
            lambda: catalog.drop_table("t"),
            lambda: catalog.count_udf_calls("id-t", "f"),
            lambda: catalog.prune_log("id-t", 0),
            lambda: catalog.commit([]),
            lambda: catalog.reserve_key("k", "h", ttl_seconds=HOUR, stale_seconds=60),
            lambda: catalog.prune_keys(HOUR),
        ]
        with write_lock(catalog.path):
            for write in writes:
                with pytest.raises(CatalogBusy):
                    write()

    def test_a_catalog_opened_while_another_writer_holds_the_lock(self, tmp_path: Path) -> None:
        SqliteCatalog(tmp_path / "catalog.db")  # the file exists, in WAL mode
        with write_lock(str(tmp_path / "catalog.db")), pytest.raises(CatalogBusy):
            SqliteCatalog(tmp_path / "catalog.db", busy_timeout=0.1)  # its set-up writes


class TestReservations:
    def reserve(self, catalog: SqliteCatalog, key: str = "k", request: str = "h", stale: float = 60.0):  # type: ignore[no-untyped-def]
        return catalog.reserve_key(key, request, ttl_seconds=HOUR, stale_seconds=stale)

    def test_reserved_running_answered_reused(self, catalog: SqliteCatalog) -> None:
        first = self.reserve(catalog)
        assert first.state == "reserved" and first.attempt and first.response is None
        assert self.reserve(catalog).state == "running"  # this process is alive and holds it
        assert self.reserve(catalog, request="other").state == "reused"
        catalog.put_record(IdempotencyRecord("k", first.attempt, '{"answer": 1}'))
        answered = self.reserve(catalog)
        assert answered.state == "answered" and answered.response == '{"answer": 1}'
        assert self.reserve(catalog, request="other").state == "reused"

    def test_only_the_attempt_holding_the_reservation_may_store(self, catalog: SqliteCatalog) -> None:
        self.reserve(catalog)
        with pytest.raises(IdempotencyRace):
            catalog.put_record(IdempotencyRecord("k", "not-the-attempt", "{}"))
        with pytest.raises(IdempotencyRace), catalog.file.write() as db:  # inside a commit: the commit rolls back
            catalog._put_record(db, IdempotencyRecord("k", "not-the-attempt", "{}"))

    def test_a_holder_on_another_machine_expires_after_the_stale_bound(self, catalog: SqliteCatalog) -> None:
        first = self.reserve(catalog)
        elsewhere = f"{socket.gethostname()}-elsewhere/boot/1/1"
        self.set(catalog, "k", holder=elsewhere, beat_at=time.time())
        assert self.reserve(catalog, stale=60).state == "running"  # can't tell it is gone: wait for the bound
        self.set(catalog, "k", beat_at=time.time() - 61)
        taken = self.reserve(catalog, stale=60)
        assert taken.state == "reserved" and taken.attempt != first.attempt
        with pytest.raises(IdempotencyRace):  # the attempt that lost it can store nothing
            catalog.put_record(IdempotencyRecord("k", first.attempt, "{}"))
        catalog.put_record(IdempotencyRecord("k", taken.attempt, "{}"))

    def test_a_holder_process_that_exited_is_taken_over_at_once(self, catalog: SqliteCatalog) -> None:
        self.reserve(catalog)
        child = subprocess.Popen(["true"])
        child.wait()
        gone = "/".join([*holders.this_process().split("/")[:2], str(child.pid), "1"])
        self.set(catalog, "k", holder=gone, beat_at=time.time())
        assert self.reserve(catalog, stale=HOUR).state == "reserved"

    def test_release_forgets_a_key_without_progress_and_keeps_progress_for_the_retry(
        self, catalog: SqliteCatalog
    ) -> None:
        attempt = self.reserve(catalog).attempt
        catalog.release_key("k", attempt)
        assert self.reserve(catalog, request="another").state == "reserved"  # nothing was stored: the key is free
        attempt = self.reserve(catalog, key="p").attempt
        catalog.put_record(IdempotencyRecord("p", attempt, '{"so": "far"}', final=False))
        assert self.reserve(catalog, key="p").state == "running"
        catalog.release_key("p", attempt)
        resumed = self.reserve(catalog, key="p")
        assert resumed.state == "reserved" and resumed.response == '{"so": "far"}'

    def test_keys_live_for_their_time_to_live(self, catalog: SqliteCatalog) -> None:
        for key in ("old", "new"):
            catalog.put_record(IdempotencyRecord(key, self.reserve(catalog, key=key).attempt, "{}"))
        self.set(catalog, "old", created_at=iso(time.time() - 2 * HOUR))
        assert self.reserve(catalog, key="old", request="other").state == "reserved"  # expired: as if never used
        self.set(catalog, "old", created_at=iso(time.time() - 2 * HOUR))
        assert catalog.prune_keys(HOUR) == 1
        assert self.reserve(catalog, key="new").state == "answered"

    def test_answers_stored_by_an_older_catalog_are_still_replayed(self, tmp_path: Path) -> None:
        path = tmp_path / "catalog.db"
        with sqlite3.connect(path) as old:
            old.execute(
                "CREATE TABLE idempotency (key TEXT PRIMARY KEY, request_hash TEXT NOT NULL, response TEXT NOT NULL, "
                "created_at TEXT NOT NULL)"
            )
            old.execute("INSERT INTO idempotency VALUES ('k', 'h', '{\"old\": 1}', ?)", (now_iso(),))
        catalog = SqliteCatalog(path)
        answered = self.reserve(catalog)
        assert answered.state == "answered" and answered.response == '{"old": 1}'

    @staticmethod
    def set(catalog: SqliteCatalog, key: str, **columns: object) -> None:
        """Stand-in for what cannot happen here: a holder on another machine, a process that is gone, time passing."""
        assignments = ", ".join(f"{c} = ?" for c in columns)
        with sqlite3.connect(catalog.path) as db:
            db.execute(f"UPDATE idempotency SET {assignments} WHERE key = ?", (*columns.values(), key))


class TestHolders:
    def test_this_process_is_alive(self) -> None:
        assert not holders.is_gone(holders.this_process())

    def test_a_process_that_exited_or_whose_pid_was_reused_is_gone(self) -> None:
        host, boot, pid, start = holders.this_process().split("/")
        child = subprocess.Popen(["true"])
        child.wait()
        assert holders.is_gone("/".join([host, boot, str(child.pid), start]))
        assert holders.is_gone("/".join([host, boot, pid, str(int(start) + 1)]))  # our pid, another process
        assert holders.is_gone("/".join([host, "an-earlier-boot", pid, start]))

    @pytest.mark.parametrize("holder", ["elsewhere/boot/1/1", "", "no slashes", "a/b/c/d/e", "h/b/not-a-pid/1"])
    def test_what_cannot_be_checked_counts_as_alive(self, holder: str) -> None:
        assert not holders.is_gone(holder)


class TestHistoryReaders:
    def catalogs(self, tmp_path: Path, n: int) -> list[str]:
        paths = []
        for i in range(n):
            catalog = SqliteCatalog(tmp_path / f"c{i}" / "catalog.db")
            catalog.create_table(table(), [7])
            paths.append(catalog.path)
        return paths

    def test_at_most_size_connections_are_kept_and_close_closes_them(self, tmp_path: Path) -> None:
        paths = self.catalogs(tmp_path, 3)
        readers = HistoryReaders(size=2)
        for path in [*paths, paths[0]]:
            assert readers.read(path, "id-t", 0, 7) == (7, [])
            assert readers.open_count() <= 2
        readers.close()
        assert readers.open_count() == 0
        assert readers.read(paths[1], "id-t", 0, 7) == (7, [])  # usable again: opens afresh

    def test_readers_on_many_threads_share_them_safely(self, tmp_path: Path) -> None:
        paths = self.catalogs(tmp_path, 3)
        readers = HistoryReaders(size=2)
        failures: list[BaseException] = []

        def read_many(offset: int) -> None:
            try:
                for i in range(60):
                    assert readers.read(paths[(i + offset) % 3], "id-t", 0, 7) == (7, [])
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=read_many, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures[0]
        readers.close()
