"""API keys and their usage, in the catalog's SQLite file (tables ``api_keys`` and ``api_key_usage``).

Only a keyed hash of each key is stored (the service computes it, ``service.auth.keys``); a key is found by that
hash, so every server process sharing the data directory sees a revocation, a rotation or an expiry on the very
next request. Usage is counted per key, minute, route template and status, written in batches by the service's
usage recorder (``service.auth.usage``), never once per request.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from engine.storage.sqlite import SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_prefix TEXT NOT NULL UNIQUE,  -- the key's first 16 characters: shown, and usable to revoke it
    key_hash TEXT NOT NULL UNIQUE,    -- HMAC-SHA256 of the key under the data directory's secret, hex
    permissions TEXT NOT NULL,        -- JSON: [{resource, actions, constraints}]
    created_at TEXT NOT NULL,
    last_used TEXT,
    expires_at TEXT,
    revoked INTEGER NOT NULL DEFAULT 0,
    revoked_at TEXT,
    replaced_by TEXT,                 -- the key a rotation made in its place
    source TEXT                       -- 'config': the administrator key of TESSERA_ADMIN_KEY; NULL: created by a call
);
CREATE TABLE IF NOT EXISTS api_key_usage (
    key_id TEXT NOT NULL,
    minute INTEGER NOT NULL,          -- epoch seconds // 60
    endpoint TEXT NOT NULL,           -- "GET /api/v1/tables/{table}"
    status INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    total_ms REAL NOT NULL,
    PRIMARY KEY (key_id, minute, endpoint, status)
);
"""
_COLUMNS = (
    "id, name, key_prefix, key_hash, permissions, created_at, last_used, expires_at, revoked, replaced_by, source"
)


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    key_prefix: str
    key_hash: str
    permissions: str  # JSON
    created_at: str
    last_used: str | None = None
    expires_at: str | None = None
    revoked: bool = False
    replaced_by: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class UsageCount:
    """Requests of one key in one minute to one endpoint that answered one status, and their total time."""

    key_id: str
    minute: int
    endpoint: str
    status: int
    requests: int
    total_ms: float


def prepare(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)


def _record(row: tuple[object, ...]) -> KeyRecord:
    values = list(row)
    values[8] = bool(values[8])
    return KeyRecord(*values)  # type: ignore[arg-type]


class ApiKeyStore:
    """The keys of one data directory; every method is one transaction on the catalog's file."""

    def __init__(self, file: SqliteFile) -> None:
        self.file = file
        file.run(prepare)

    def insert(self, record: KeyRecord) -> bool:
        """Store a new key; False (nothing stored) if its prefix is taken, so the caller draws another key."""
        with self.file.write() as db:
            return _insert(db, record)

    def by_hash(self, key_hash: str) -> KeyRecord | None:
        return self._find("key_hash", key_hash)

    def get(self, key_id: str) -> KeyRecord | None:
        return self._find("id", key_id)

    def by_prefix(self, prefix: str) -> KeyRecord | None:
        return self._find("key_prefix", prefix)

    def _find(self, column: str, value: str) -> KeyRecord | None:
        """The key whose ``column`` (a unique one: id, key_hash, key_prefix) is ``value``."""
        rows = self.file.rows(f"SELECT {_COLUMNS} FROM api_keys WHERE {column} = ?", (value,))
        return _record(rows[0]) if rows else None

    def all(self) -> list[KeyRecord]:
        return [_record(r) for r in self.file.rows(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")]

    def has_keys(self) -> bool:
        """Whether any key was ever stored (revoked ones count)."""
        return bool(self.file.rows("SELECT 1 FROM api_keys LIMIT 1"))

    def revoke(self, key_id: str, at: str) -> bool:
        """Revoke a key; False if it was revoked already."""
        with self.file.write() as db:
            return _revoke(db, key_id, at)

    def rotate(self, old_id: str, new: KeyRecord) -> bool | None:
        """Revoke ``old_id`` and store ``new`` in its place, in one transaction. None if ``old_id`` was revoked
        already (nothing changed: a rotated-out key cannot be rotated twice), False if ``new``'s prefix is taken."""
        with self.file.write() as db:
            if _taken(db, new):
                return False
            if not _revoke(db, old_id, new.created_at, replaced_by=new.id):
                return None
            return _insert(db, new)

    def use_config_key(self, record: KeyRecord) -> KeyRecord:
        """Make ``record`` (the configured administrator key) the one active configured key: keep (or revive) it if
        stored, else store it; configured keys of earlier starts with another value are revoked."""
        with self.file.write() as db:
            db.execute(
                "UPDATE api_keys SET revoked = 1, revoked_at = ? WHERE source = 'config' AND revoked = 0 "
                "AND key_hash != ?",
                (record.created_at, record.key_hash),
            )
            row = db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = ?", (record.key_hash,)).fetchone()
            if row is not None:  # configured before: it works again if a later configuration had replaced it
                db.execute(
                    "UPDATE api_keys SET revoked = 0, revoked_at = NULL WHERE id = ? AND source = 'config'", (row[0],)
                )
                return _record(db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (row[0],)).fetchone())
            db.execute(  # a dead configured key may share the new one's first characters
                "DELETE FROM api_keys WHERE source = 'config' AND revoked = 1 AND key_prefix = ?", (record.key_prefix,)
            )
            if not _insert(db, record):
                raise ValueError(f"key prefix {record.key_prefix!r} is taken by another key")
            return record

    def add_usage(self, counts: Iterable[UsageCount], last_used: dict[str, str]) -> None:
        """Add counted requests and move keys' ``last_used`` forward, in one transaction."""
        with self.file.write() as db:
            db.executemany(
                "INSERT INTO api_key_usage VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key_id, minute, endpoint, status) "
                "DO UPDATE SET requests = requests + excluded.requests, total_ms = total_ms + excluded.total_ms",
                [(c.key_id, c.minute, c.endpoint, c.status, c.requests, c.total_ms) for c in counts],
            )
            db.executemany(
                "UPDATE api_keys SET last_used = ? WHERE id = ? AND (last_used IS NULL OR last_used < ?)",
                [(at, key_id, at) for key_id, at in last_used.items()],
            )

    def usage(self, key_id: str, since_minute: int) -> list[UsageCount]:
        rows = self.file.rows(
            "SELECT key_id, minute, endpoint, status, requests, total_ms FROM api_key_usage "
            "WHERE key_id = ? AND minute >= ?",
            (key_id, since_minute),
        )
        return [UsageCount(*r) for r in rows]

    def prune_usage(self, before_minute: int) -> int:
        with self.file.write() as db:
            return db.execute("DELETE FROM api_key_usage WHERE minute < ?", (before_minute,)).rowcount


def _taken(db: sqlite3.Connection, r: KeyRecord) -> bool:
    found = db.execute("SELECT 1 FROM api_keys WHERE key_prefix = ? OR key_hash = ?", (r.key_prefix, r.key_hash))
    return found.fetchone() is not None


def _insert(db: sqlite3.Connection, r: KeyRecord) -> bool:
    if _taken(db, r):
        return False
    db.execute(
        f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            r.id,
            r.name,
            r.key_prefix,
            r.key_hash,
            r.permissions,
            r.created_at,
            r.last_used,
            r.expires_at,
            int(r.revoked),
            r.replaced_by,
            r.source,
        ),
    )
    return True


def _revoke(db: sqlite3.Connection, key_id: str, at: str, replaced_by: str | None = None) -> bool:
    cur = db.execute(
        "UPDATE api_keys SET revoked = 1, revoked_at = ?, replaced_by = ? WHERE id = ? AND revoked = 0",
        (at, replaced_by, key_id),
    )
    return cur.rowcount == 1
