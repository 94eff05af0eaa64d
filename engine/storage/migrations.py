"""The catalog's tables, and the migrations that bring an older catalog's up to date.

``prepare`` runs on every open (``SqliteCatalog``): each step checks what is there first, so a catalog of any age
ends up with the current tables, and a current one is left as it is.
"""

from __future__ import annotations

import sqlite3
import time

from engine.storage import api_keys, idempotency, jobs

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


def prepare(conn: sqlite3.Connection) -> None:
    """Create the tables, or bring an older catalog's up to date."""
    conn.executescript(_SCHEMA)
    idempotency.prepare(conn)
    api_keys.prepare(conn)
    jobs.prepare(conn)
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
