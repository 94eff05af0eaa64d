"""A shard version's history in the catalog's shard log: the Lance version it is built on and the small writes
(deltas, ``engine.physical.shardlog``) logged since, in order. A shard replays them to rebuild the version.

``SqliteCatalog.history`` reads it in a transaction of its own; a shard host, which holds no catalog, reads it over
``HistoryReaders``; tests and tools call ``read_history``.
"""

from __future__ import annotations

import sqlite3
import threading

import cachetools

from engine.errors import VersionGone
from engine.model.delta import Delta
from engine.storage.sqlite_errors import sqlite_errors


def history(db: sqlite3.Connection, table_id: str, shard: int, version: int) -> tuple[int, list[Delta]]:
    """How to rebuild ``version`` of a shard: the Lance version it is built on and the deltas to apply, in order."""
    base = db.execute(  # the newest version written to Lance (a row without a delta) at or before ``version``
        "SELECT version, lance FROM shard_log WHERE table_id = ? AND shard = ? AND version <= ? AND rows IS NULL "
        "ORDER BY version DESC LIMIT 1",
        (table_id, shard, version),
    ).fetchone()
    if base is None:
        raise VersionGone(
            f"version {version} of shard {shard} of table {table_id} is older than the history kept; read again",
            table_id=table_id,
            shard=shard,
        )
    rows = db.execute(
        "SELECT gone, rows FROM shard_log WHERE table_id = ? AND shard = ? AND version > ? AND version <= ? "
        "ORDER BY version",
        (table_id, shard, base[0], version),
    ).fetchall()
    return base[1], [Delta(gone, data) for gone, data in rows]


class HistoryReaders:
    """``history`` for a process that holds no catalog (a shard host loading shards), over connections it keeps.

    One read-only connection per catalog file, shared by the owner's threads under a lock (loads are rare), at most
    ``size`` of them: the least recently used is closed when another is opened. The owner closes them with
    ``close``; nothing is kept per process beyond its owner.

    >>> readers = HistoryReaders()                          # doctest: +SKIP
    >>> base, deltas = readers.read("data/catalog.db", table_id, shard=0, version=7)  # doctest: +SKIP
    """

    def __init__(self, size: int = 8, busy_timeout: float = 30.0) -> None:
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._connections = _ClosingLRU(maxsize=size)

    def read(self, path: str, table_id: str, shard: int, version: int) -> tuple[int, list[Delta]]:
        with self._lock, sqlite_errors(self.busy_timeout):
            db = self._connections.get(path)
            if db is None:
                db = self._connections[path] = _reader(path, self.busy_timeout)
            db.execute("BEGIN")
            try:
                return history(db, table_id, shard, version)
            finally:
                db.execute("COMMIT")

    def open_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def close(self) -> None:
        with self._lock:
            while self._connections:
                self._connections.popitem()


class _ClosingLRU(cachetools.LRUCache):  # type: ignore[misc]
    """An LRU cache of connections that closes each one it evicts."""

    def popitem(self) -> tuple[str, sqlite3.Connection]:
        path, db = super().popitem()
        db.close()
        return path, db


def read_history(path: str, table_id: str, shard: int, version: int) -> tuple[int, list[Delta]]:
    """``history`` once, over a connection opened and closed for it (tests, tools; hosts use HistoryReaders)."""
    with sqlite_errors(30.0):
        db = _reader(path, 30.0)
        try:
            db.execute("BEGIN")
            return history(db, table_id, shard, version)
        finally:
            db.close()


def _reader(path: str, busy_timeout: float) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
