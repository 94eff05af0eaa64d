"""The catalog: durable, transactional metadata.

A table's committed state is the version of each of its shards, as named here (a Lance version plus the small
writes logged since, see ``engine.physical.shardlog`` and the ``shard_log`` table). A write becomes visible
only when ``commit`` records its new shard versions; ``commit`` is a compare-and-swap over every shard it
touches, in one SQLite transaction, so a multi-shard (and multi-table) write is published all at once or not
at all. ``Catalog`` is the interface; ``SqliteCatalog`` is the embedded implementation (WAL, full sync).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cachetools
import orjson

from engine.errors import CatalogBusy, CommitConflict, Conflict, LeaseExpired, StorageError, TableExists, TableNotFound
from engine.model.columns import Stats
from engine.model.delta import Delta
from engine.model.schema import TableSchema
from engine.storage import idempotency
from engine.storage.idempotency import IdempotencyRecord, Reservation


@dataclass(frozen=True)
class ShardState:
    version: int
    row_count: int


@dataclass(frozen=True)
class TableRecord:
    id: str
    name: str
    schema: TableSchema
    shards: int
    created_at: str
    version: int  # increases by one with every commit that touches the table
    layout: int = 0  # increases by one with every schema change (a computed column added or dropped)


class SchemaChanged(Conflict):
    """A write planned against a table's old schema: a computed column was added or dropped meanwhile."""

    code = "schema_changed"

    def __init__(self, table_id: str) -> None:
        super().__init__(
            "the table's columns changed (a computed column was added or dropped) while this write ran; retry it",
            table_id=table_id,
        )


@dataclass(frozen=True)
class SchemaChange:
    """Replace a table's schema (its computed columns) in a commit, provided its layout is still ``layout``."""

    table_id: str
    layout: int
    schema: TableSchema
    stale: tuple[str, ...] = ()  # computed columns to mark stale (a UDF they call was replaced)


@dataclass(frozen=True)
class ShardChange:
    """Publish ``new_version`` for a shard, provided the catalog still names ``base_version``.

    The shard log records the new version as built on Lance version ``lance`` (default: ``new_version``, a shard
    whose versions are Lance's) plus ``delta`` and the deltas logged since ``lance`` was written. ``token`` is the
    fencing token of the writer slot grant the version was staged under (``engine.physical.host``).
    """

    table_id: str
    shard: int
    base_version: int
    new_version: int
    row_count: int
    lance: int | None = None
    delta: Delta | None = None
    token: int = 0


class Catalog(Protocol):
    def create_table(self, record: TableRecord, shard_versions: Sequence[int]) -> None: ...
    def drop_table(self, name: str) -> TableRecord: ...
    def get_table(self, name: str) -> TableRecord: ...
    def get_table_by_id(self, table_id: str) -> TableRecord | None: ...
    def list_tables(self) -> list[TableRecord]: ...
    def snapshot(self, table_id: str) -> list[ShardState]: ...
    def commit(
        self,
        changes: Sequence[ShardChange],
        record: IdempotencyRecord | None = None,
        layouts: dict[str, int] | None = None,
        schema: SchemaChange | None = None,
    ) -> None: ...
    def history(self, table_id: str, shard: int, version: int) -> tuple[int, list[Delta]]: ...
    def prune_log(self, table_id: str, retention_seconds: float) -> list[int]: ...
    def computed_stats(self, table_id: str) -> dict[str, Stats]: ...
    def udf_usage(self, table_id: str) -> dict[str, int]: ...
    def count_udf_calls(self, table_id: str, name: str, calls: int = 1) -> None: ...
    def reserve_key(self, key: str, request_hash: str, *, ttl_seconds: float, stale_seconds: float) -> Reservation: ...
    def put_record(self, record: IdempotencyRecord) -> None: ...
    def release_key(self, key: str, attempt: str) -> None: ...
    def prune_keys(self, ttl_seconds: float) -> int: ...
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tables (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    schema TEXT NOT NULL,
    shards INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS shards (
    table_id TEXT NOT NULL REFERENCES tables(id) ON DELETE CASCADE,
    shard INTEGER NOT NULL,
    version INTEGER NOT NULL,
    row_count INTEGER NOT NULL,
    PRIMARY KEY (table_id, shard)
);
CREATE TABLE IF NOT EXISTS computed_stats (
    table_id TEXT NOT NULL REFERENCES tables(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    last_computed TEXT,
    computation_time_ms REAL,
    errors INTEGER NOT NULL,
    stale INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (table_id, name)
);
CREATE TABLE IF NOT EXISTS udf_usage (
    table_id TEXT NOT NULL REFERENCES tables(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    calls INTEGER NOT NULL,
    PRIMARY KEY (table_id, name)
);
-- The shard log (engine.physical.shardlog): a row per committed shard version, naming the Lance version it is built on;
-- a small write's rows also hold its delta. Pruned by ``prune_log``.
CREATE TABLE IF NOT EXISTS shard_log (
    table_id TEXT NOT NULL REFERENCES tables(id) ON DELETE CASCADE,
    shard INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lance INTEGER NOT NULL,
    gone BLOB,
    rows BLOB,
    at REAL NOT NULL,
    PRIMARY KEY (table_id, shard, version)
);
-- The fencing token of the latest commit per shard: a commit staged under an older grant of the shard's writer
-- slot (one revoked when its lease ran out) is refused.
CREATE TABLE IF NOT EXISTS shard_tokens (
    table_id TEXT NOT NULL REFERENCES tables(id) ON DELETE CASCADE,
    shard INTEGER NOT NULL,
    token INTEGER NOT NULL,
    PRIMARY KEY (table_id, shard)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SqliteCatalog:
    """SQLite in WAL mode with ``synchronous=FULL``: a returned ``commit`` survives kill -9 and power loss, and so
    do the Lance versions it names (``engine.storage.lance`` fsyncs a version's files and directories before it
    returns the version number, so before any commit can name it).

    One connection per thread (sqlite3 connections are not shareable); writes take the database's write lock up
    front (``BEGIN IMMEDIATE``) so concurrent committers from several processes queue instead of failing. A writer
    that waits longer than ``busy_timeout`` seconds for the lock gets CatalogBusy (nothing was changed).
    """

    def __init__(self, path: str | Path, busy_timeout: float = 30.0) -> None:
        self.path = str(path)
        self.busy_timeout = busy_timeout
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with sqlite_errors(busy_timeout):
            self._prepare(self._conn())

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Create the tables, or bring an older catalog's up to date."""
        conn.executescript(_SCHEMA)
        idempotency.prepare(conn)
        if "layout" not in {row[1] for row in conn.execute("PRAGMA table_info(tables)")}:  # older catalogs
            conn.execute("ALTER TABLE tables ADD COLUMN layout INTEGER NOT NULL DEFAULT 0")
        if "stale" not in {row[1] for row in conn.execute("PRAGMA table_info(computed_stats)")}:
            conn.execute("ALTER TABLE computed_stats ADD COLUMN stale INTEGER NOT NULL DEFAULT 0")
        conn.execute(  # catalogs from before the shard log: every shard's version is a Lance version
            "INSERT INTO shard_log (table_id, shard, version, lance, at) SELECT table_id, shard, version, version, ? "
            "FROM shards WHERE NOT EXISTS (SELECT 1 FROM shard_log l WHERE l.table_id = shards.table_id "
            "AND l.shard = shards.shard)",
            (time.time(),),
        )

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed if the block returns, else rolled back (also when COMMIT itself fails,
        which leaves SQLite's transaction open). sqlite3's errors leave as CatalogBusy or StorageError."""
        with sqlite_errors(self.busy_timeout):
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with sqlite_errors(self.busy_timeout):
            db = self._conn()
            db.execute("BEGIN")
            try:
                yield db
            finally:
                if db.in_transaction:
                    db.execute("COMMIT")

    def _rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """One query outside a transaction (its own snapshot), its errors translated like a transaction's."""
        with sqlite_errors(self.busy_timeout):
            return self._conn().execute(sql, parameters).fetchall()

    def create_table(self, record: TableRecord, shard_versions: Sequence[int]) -> None:
        with self._write() as db:
            if db.execute("SELECT 1 FROM tables WHERE name = ?", (record.name,)).fetchone():
                raise TableExists(record.name)
            db.execute(
                "INSERT INTO tables (id, name, schema, shards, created_at, version, layout) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.name,
                    orjson.dumps(record.schema.to_dict()).decode(),
                    record.shards,
                    record.created_at,
                    record.version,
                    record.layout,
                ),
            )
            db.executemany(
                "INSERT INTO shards VALUES (?, ?, ?, 0)", [(record.id, i, v) for i, v in enumerate(shard_versions)]
            )
            db.executemany(
                "INSERT INTO shard_log (table_id, shard, version, lance, at) VALUES (?, ?, ?, ?, ?)",
                [(record.id, i, v, v, time.time()) for i, v in enumerate(shard_versions)],
            )

    def drop_table(self, name: str) -> TableRecord:
        with self._write() as db:
            record = self._get(db, name)
            db.execute("DELETE FROM tables WHERE id = ?", (record.id,))
            return record

    def get_table(self, name: str) -> TableRecord:
        with self._read() as db:
            return self._get(db, name)

    def get_table_by_id(self, table_id: str) -> TableRecord | None:
        rows = self._rows(
            "SELECT id, name, schema, shards, created_at, version, layout FROM tables WHERE id = ?", (table_id,)
        )
        return _record(rows[0]) if rows else None

    def _get(self, db: sqlite3.Connection, name: str) -> TableRecord:
        row = db.execute(
            "SELECT id, name, schema, shards, created_at, version, layout FROM tables WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise TableNotFound(name)
        return _record(row)

    def list_tables(self) -> list[TableRecord]:
        rows = self._rows("SELECT id, name, schema, shards, created_at, version, layout FROM tables ORDER BY name")
        return [_record(r) for r in rows]

    def snapshot(self, table_id: str) -> list[ShardState]:
        rows = self._rows("SELECT version, row_count FROM shards WHERE table_id = ? ORDER BY shard", (table_id,))
        return [ShardState(v, n) for v, n in rows]

    def read_table(self, name: str) -> tuple[TableRecord, list[ShardState]]:
        """The table's record and its shard versions, read in one consistent snapshot."""
        with self._read() as db:
            record = self._get(db, name)
            rows = db.execute(
                "SELECT version, row_count FROM shards WHERE table_id = ? ORDER BY shard", (record.id,)
            ).fetchall()
        return record, [ShardState(v, n) for v, n in rows]

    def commit(
        self,
        changes: Sequence[ShardChange],
        record: IdempotencyRecord | None = None,
        layouts: dict[str, int] | None = None,
        schema: SchemaChange | None = None,
    ) -> None:
        """Publish every change or none: raises CommitConflict if any shard moved on since its base version, and
        LeaseExpired if a change was staged under a grant older than the last one committed on its shard (fencing).

        ``record`` is stored in the same transaction, so a write and its idempotency record are durable together.
        ``layouts`` (table id -> layout the write was planned on) raises SchemaChanged if a table's columns changed
        meanwhile; ``schema`` replaces a table's schema in the same transaction as its shards' new versions.
        """
        with self._write() as db:
            if record is not None:
                self._put_record(db, record)
            expected = dict(layouts or {})
            if schema is not None:
                expected[schema.table_id] = schema.layout
            for table_id, layout in expected.items():
                row = db.execute("SELECT layout FROM tables WHERE id = ?", (table_id,)).fetchone()
                if row is None:
                    raise TableNotFound(table_id)
                if row[0] != layout:
                    raise SchemaChanged(table_id)
            if schema is not None:
                db.execute(
                    "UPDATE tables SET schema = ?, layout = layout + 1 WHERE id = ?",
                    (orjson.dumps(schema.schema.to_dict()).decode(), schema.table_id),
                )
                db.execute(  # the stats of dropped columns go with them
                    "DELETE FROM computed_stats WHERE table_id = ? AND name NOT IN (SELECT value FROM json_each(?))",
                    (schema.table_id, orjson.dumps([c.name for c in schema.schema.computed]).decode()),
                )
                db.execute(  # and the usage counts of dropped UDFs
                    "DELETE FROM udf_usage WHERE table_id = ? AND name NOT IN (SELECT value FROM json_each(?))",
                    (schema.table_id, orjson.dumps([u.name for u in schema.schema.udfs]).decode()),
                )
                db.executemany(
                    "INSERT INTO computed_stats (table_id, name, errors, stale) VALUES (?, ?, 0, 1) "
                    "ON CONFLICT (table_id, name) DO UPDATE SET stale = 1",
                    [(schema.table_id, name) for name in schema.stale],
                )
            for c in changes:
                cur = db.execute(
                    "UPDATE shards SET version = ?, row_count = ? WHERE table_id = ? AND shard = ? AND version = ?",
                    (c.new_version, c.row_count, c.table_id, c.shard, c.base_version),
                )
                if cur.rowcount != 1:
                    raise _fenced(db, c) or CommitConflict(
                        f"shard {c.shard} of table {c.table_id} is no longer at version {c.base_version}",
                        table_id=c.table_id,
                        shard=c.shard,
                    )
                _advance_token(db, c)
            now = time.time()
            db.executemany(
                "INSERT INTO shard_log (table_id, shard, version, lance, gone, rows, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        c.table_id,
                        c.shard,
                        c.new_version,
                        c.new_version if c.lance is None else c.lance,
                        c.delta.gone if c.delta else None,
                        c.delta.rows if c.delta else None,
                        now,
                    )
                    for c in changes
                ],
            )
            db.executemany(
                "UPDATE tables SET version = version + 1 WHERE id = ?", [(t,) for t in {c.table_id for c in changes}]
            )

    def history(self, table_id: str, shard: int, version: int) -> tuple[int, list[Delta]]:
        with self._read() as db:
            return history(db, table_id, shard, version)

    def prune_log(self, table_id: str, retention_seconds: float) -> list[int]:
        """Forget the shard log rows that no version committed within ``retention_seconds`` needs; returns, per
        shard, the oldest Lance version a kept version is built on (older ones may be deleted)."""
        now = time.time()
        keep = []
        with self._write() as db:
            shards = db.execute("SELECT shard FROM shards WHERE table_id = ? ORDER BY shard", (table_id,)).fetchall()
            for (shard,) in shards:
                # the newest base written before the cut: every version committed since is built on it or later
                row = db.execute(
                    "SELECT version, at FROM shard_log WHERE table_id = ? AND shard = ? AND rows IS NULL "
                    "AND gone IS NULL AND at <= ? ORDER BY version DESC LIMIT 1",
                    (table_id, shard, now - retention_seconds),
                ).fetchone()
                if row is not None:
                    db.execute(
                        "DELETE FROM shard_log WHERE table_id = ? AND shard = ? AND version < ?",
                        (table_id, shard, row[0]),
                    )
                keep.append(
                    db.execute(
                        "SELECT MIN(lance) FROM shard_log WHERE table_id = ? AND shard = ?", (table_id, shard)
                    ).fetchone()[0]
                )
        return keep

    # -- idempotency keys (``engine.storage.idempotency``) ------------------------------------------------------
    def reserve_key(self, key: str, request_hash: str, *, ttl_seconds: float, stale_seconds: float) -> Reservation:
        """Reserve ``key`` for a request before it runs, or say why not (answered, running, reused)."""
        with self._write() as db:
            return idempotency.reserve(
                db, key, request_hash, now=time.time(), ttl_seconds=ttl_seconds, stale_seconds=stale_seconds
            )

    def put_record(self, record: IdempotencyRecord) -> None:
        """Store an answer (or progress) outside a commit; IdempotencyRace if the attempt lost its reservation."""
        with self._write() as db:
            self._put_record(db, record)

    @staticmethod
    def _put_record(db: sqlite3.Connection, record: IdempotencyRecord) -> None:
        idempotency.store(db, record, time.time())

    def release_key(self, key: str, attempt: str) -> None:
        with self._write() as db:
            idempotency.release(db, key, attempt)

    def prune_keys(self, ttl_seconds: float) -> int:
        """Forget the keys older than ``ttl_seconds`` (the maintenance pass calls this); returns how many."""
        with self._write() as db:
            return idempotency.prune(db, now=time.time(), ttl_seconds=ttl_seconds)

    def computed_stats(self, table_id: str) -> dict[str, Stats]:
        rows = self._rows(
            "SELECT name, last_computed, computation_time_ms, errors, stale FROM computed_stats WHERE table_id = ?",
            (table_id,),
        )
        return {name: Stats(last, ms, errors, bool(stale)) for name, last, ms, errors, stale in rows}

    def set_computed_stats(self, table_id: str, name: str, stats: Stats) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO computed_stats VALUES (?, ?, ?, ?, ?, ?)",
                (table_id, name, stats.last_computed, stats.computation_time_ms, stats.errors, int(stats.stale)),
            )

    def udf_usage(self, table_id: str) -> dict[str, int]:
        return dict(self._rows("SELECT name, calls FROM udf_usage WHERE table_id = ?", (table_id,)))

    def count_udf_calls(self, table_id: str, name: str, calls: int = 1) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO udf_usage VALUES (?, ?, ?) ON CONFLICT (table_id, name) DO UPDATE SET calls = calls + ?",
                (table_id, name, calls, calls),
            )

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value)
            )


def _advance_token(db: sqlite3.Connection, change: ShardChange) -> None:
    """Move the shard's fencing token up to ``change``'s (never down); raise LeaseExpired if it is older.

    The version compare-and-swap already refuses a writer that a later one overtook; this holds even if a version
    number were ever reused, and it keeps the token beside the version in the same transaction."""
    cur = db.execute(
        "INSERT INTO shard_tokens (table_id, shard, token) VALUES (?, ?, ?) ON CONFLICT (table_id, shard) "
        "DO UPDATE SET token = excluded.token WHERE excluded.token >= shard_tokens.token",
        (change.table_id, change.shard, change.token),
    )
    if cur.rowcount != 1:
        refused = _fenced(db, change)
        assert refused is not None, "a token is refused only when an older one than the shard's"
        raise refused


def _fenced(db: sqlite3.Connection, change: ShardChange) -> LeaseExpired | None:
    """LeaseExpired if a commit staged under a later grant of the shard's writer slot has been published: this
    change's grant was revoked (its lease ran out) and the next writer's commit must not be overwritten."""
    row = db.execute(
        "SELECT token, (SELECT name FROM tables WHERE id = ?) FROM shard_tokens WHERE table_id = ? AND shard = ?",
        (change.table_id, change.table_id, change.shard),
    ).fetchone()
    if row is None or row[0] <= change.token:
        return None
    return LeaseExpired(
        row[1] or change.table_id,
        change.shard,
        "the writer slot grant it was staged under was revoked (its lease ran out, or the shard's host restarted) "
        "and a later writer has committed",
    )


def catalog_path(root: str) -> str:
    return str(Path(root) / "catalog.db")


class VersionGone(Conflict):
    """A read of a shard version older than the history kept (``prune_log``): a fresh snapshot will do."""

    code = "version_gone"


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


@contextmanager
def sqlite_errors(busy_timeout: float) -> Iterator[None]:
    """Translate sqlite3's errors where the catalog calls it: a lock still held by another connection after the busy
    timeout is CatalogBusy (503 with Retry-After: nothing was changed, a retry soon will likely pass); any other
    ``OperationalError`` (I/O, disk full ...) is StorageError."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if _busy(exc):
            raise CatalogBusy(
                f"The catalog stayed locked by another writer past its busy timeout ({busy_timeout:g} s); "
                "nothing was changed, retry shortly"
            ) from exc
        raise StorageError(f"the catalog failed: {exc}", step="catalog") from exc


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _record(row: tuple) -> TableRecord:
    table_id, name, schema, shards, created_at, version, layout = row
    return TableRecord(
        table_id, name, TableSchema.from_dict(name, orjson.loads(schema)), shards, created_at, version, layout
    )
