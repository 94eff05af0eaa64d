"""The catalog: durable, transactional metadata.

A table's committed state is the version of each of its shards, as named here (a Lance version plus the small
writes logged since, see ``engine.physical.shardlog`` and the ``shard_log`` table). A write becomes visible
only when ``commit`` records its new shard versions; ``commit`` is a compare-and-swap over every shard it
touches, in one SQLite transaction, so a multi-shard (and multi-table) write is published all at once or not
at all. ``Catalog`` is the interface; ``SqliteCatalog`` is the embedded implementation (WAL, full sync).

Beside it: the records it stores and is told (``engine.storage.records``), its tables and the migrations of older
catalogs (``engine.storage.migrations``), a shard version's history in the shard log (``engine.storage.history``),
and the translation of sqlite3's errors (``engine.storage.sqlite_errors``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import orjson

from engine.errors import CommitConflict, LeaseExpired, SchemaChanged, TableExists, TableNotFound
from engine.model.columns import Stats
from engine.model.delta import Delta
from engine.model.schema import TableSchema
from engine.storage import idempotency, migrations
from engine.storage.history import history
from engine.storage.idempotency import IdempotencyRecord, Reservation
from engine.storage.records import SchemaChange, ShardChange, ShardState, TableRecord
from engine.storage.sqlite import SqliteFile


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


class SqliteCatalog:
    """SQLite in WAL mode with ``synchronous=FULL``: a returned ``commit`` survives kill -9 and power loss, and so
    do the Lance versions it names (``engine.storage.lance`` fsyncs a version's files and directories before it
    returns the version number, so before any commit can name it).

    Connections (one per thread), transactions (writes take the lock up front) and the translation of sqlite3's
    errors are ``engine.storage.sqlite.SqliteFile``'s, which the stores sharing this file use too.
    """

    def __init__(self, path: str | Path, busy_timeout: float = 30.0) -> None:
        self.file = SqliteFile(path, busy_timeout)
        self.path = self.file.path
        self.busy_timeout = busy_timeout
        self.file.run(migrations.prepare)

    def create_table(self, record: TableRecord, shard_versions: Sequence[int]) -> None:
        with self.file.write() as db:
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
        with self.file.write() as db:
            record = self._get(db, name)
            db.execute("DELETE FROM tables WHERE id = ?", (record.id,))
            return record

    def get_table(self, name: str) -> TableRecord:
        with self.file.read() as db:
            return self._get(db, name)

    def get_table_by_id(self, table_id: str) -> TableRecord | None:
        rows = self.file.rows(
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
        rows = self.file.rows("SELECT id, name, schema, shards, created_at, version, layout FROM tables ORDER BY name")
        return [_record(r) for r in rows]

    def snapshot(self, table_id: str) -> list[ShardState]:
        rows = self.file.rows("SELECT version, row_count FROM shards WHERE table_id = ? ORDER BY shard", (table_id,))
        return [ShardState(v, n) for v, n in rows]

    def read_table(self, name: str) -> tuple[TableRecord, list[ShardState]]:
        """The table's record and its shard versions, read in one consistent snapshot."""
        with self.file.read() as db:
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
        with self.file.write() as db:
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
        with self.file.read() as db:
            return history(db, table_id, shard, version)

    def prune_log(self, table_id: str, retention_seconds: float) -> list[int]:
        """Forget the shard log rows that no version committed within ``retention_seconds`` needs; returns, per
        shard, the oldest Lance version a kept version is built on (older ones may be deleted)."""
        now = time.time()
        keep = []
        with self.file.write() as db:
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
        with self.file.write() as db:
            return idempotency.reserve(
                db, key, request_hash, now=time.time(), ttl_seconds=ttl_seconds, stale_seconds=stale_seconds
            )

    def put_record(self, record: IdempotencyRecord) -> None:
        """Store an answer (or progress) outside a commit; IdempotencyRace if the attempt lost its reservation."""
        with self.file.write() as db:
            self._put_record(db, record)

    @staticmethod
    def _put_record(db: sqlite3.Connection, record: IdempotencyRecord) -> None:
        idempotency.store(db, record, time.time())

    def release_key(self, key: str, attempt: str) -> None:
        with self.file.write() as db:
            idempotency.release(db, key, attempt)

    def prune_keys(self, ttl_seconds: float) -> int:
        """Forget the keys older than ``ttl_seconds`` (the maintenance pass calls this); returns how many."""
        with self.file.write() as db:
            return idempotency.prune(db, now=time.time(), ttl_seconds=ttl_seconds)

    def computed_stats(self, table_id: str) -> dict[str, Stats]:
        rows = self.file.rows(
            "SELECT name, last_computed, computation_time_ms, errors, stale FROM computed_stats WHERE table_id = ?",
            (table_id,),
        )
        return {name: Stats(last, ms, errors, bool(stale)) for name, last, ms, errors, stale in rows}

    def set_computed_stats(self, table_id: str, name: str, stats: Stats) -> None:
        with self.file.write() as db:
            db.execute(
                "INSERT OR REPLACE INTO computed_stats VALUES (?, ?, ?, ?, ?, ?)",
                (table_id, name, stats.last_computed, stats.computation_time_ms, stats.errors, int(stats.stale)),
            )

    def udf_usage(self, table_id: str) -> dict[str, int]:
        return dict(self.file.rows("SELECT name, calls FROM udf_usage WHERE table_id = ?", (table_id,)))

    def count_udf_calls(self, table_id: str, name: str, calls: int = 1) -> None:
        with self.file.write() as db:
            db.execute(
                "INSERT INTO udf_usage VALUES (?, ?, ?) ON CONFLICT (table_id, name) DO UPDATE SET calls = calls + ?",
                (table_id, name, calls, calls),
            )

    def get_meta(self, key: str) -> str | None:
        rows = self.file.rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.file.write() as db:
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


def _record(row: tuple) -> TableRecord:
    table_id, name, schema, shards, created_at, version, layout = row
    return TableRecord(
        table_id, name, TableSchema.from_dict(name, orjson.loads(schema)), shards, created_at, version, layout
    )
