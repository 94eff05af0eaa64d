"""Idempotency keys in the catalog: a key is reserved before its request runs, then answered.

Life of a key (one row of the ``idempotency`` table)::

    reserve      no row: insert it, reserved by this attempt (its holder process and a fresh attempt token)
    store        the attempt's answer (done), or the progress of a batch whose operations commit one by one;
                 only the attempt that holds the reservation may write, so a write by an attempt that lost it
                 raises IdempotencyRace and (inside a commit) rolls the whole commit back
    release      a transient failure: nothing is stored as the key's answer, and the next retry runs at once
    prune        rows older than the time to live are deleted

A retry finds the row answered (replay it), reserved by a live attempt (``running``: 409 request_in_progress), or
reserved by an attempt that is gone (take it over and resume). An attempt is gone when its holder process is
(``engine.storage.holders``), or when it has not written for ``stale_seconds`` (a holder on another machine).
Taking a reservation over is always safe: every write of the attempt that lost it is refused.

The functions take a connection inside the caller's transaction (``SqliteCatalog`` owns those).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from dataclasses import dataclass
from typing import Literal

from engine.errors import IdempotencyRace
from engine.storage import holders

SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,   -- JSON: the answer (done), a batch's progress so far, or null
    created_at TEXT NOT NULL, -- ISO-8601 UTC; the time to live counts from here
    done INTEGER NOT NULL DEFAULT 1,
    holder TEXT,              -- the process running the reserved attempt (NULL: nobody, take it over at once)
    attempt TEXT,             -- the reserved attempt's token: only it may store
    beat_at REAL NOT NULL DEFAULT 0  -- when the attempt reserved the key or last stored progress (epoch seconds)
);
"""
# Catalogs from before reservations hold answers only: the columns they lack, with the defaults that say so.
_ADDED = {
    "done": "INTEGER NOT NULL DEFAULT 1",
    "holder": "TEXT",
    "attempt": "TEXT",
    "beat_at": "REAL NOT NULL DEFAULT 0",
}
_NOTHING = "null"  # the response of a reservation with no progress yet

State = Literal["reserved", "answered", "running", "reused"]


@dataclass(frozen=True)
class IdempotencyRecord:
    """What an attempt stores under its key: the answer (``final``), or the progress of a batch whose operations
    commit one by one (so that a retry after a crash resumes after them instead of applying them again)."""

    key: str
    attempt: str
    response: str  # JSON
    final: bool = True


@dataclass(frozen=True)
class Reservation:
    """What ``reserve`` found: ``reserved`` (run it; ``attempt`` is the token to store with, ``response`` the
    progress an interrupted attempt left, if any), ``answered`` (``response`` is the answer), ``running`` (another
    live attempt holds it) or ``reused`` (the key came with another request)."""

    state: State
    attempt: str = ""
    response: str | None = None


def prepare(db: sqlite3.Connection) -> None:
    """Create the table, or add the columns an older catalog's table lacks."""
    db.executescript(SCHEMA)
    present = {row[1] for row in db.execute("PRAGMA table_info(idempotency)")}
    for column, declaration in _ADDED.items():
        if column not in present:
            db.execute(f"ALTER TABLE idempotency ADD COLUMN {column} {declaration}")


def reserve(
    db: sqlite3.Connection,
    key: str,
    request_hash: str,
    *,
    now: float,
    ttl_seconds: float,
    stale_seconds: float,
) -> Reservation:
    """Reserve ``key`` for a new attempt unless it is answered, reused or held by a live attempt (see the module)."""
    row = db.execute(
        "SELECT request_hash, done, response, holder, beat_at, created_at FROM idempotency WHERE key = ?", (key,)
    ).fetchone()
    if row is not None and row[5] < iso(now - ttl_seconds):  # past its time to live: as if never used
        db.execute("DELETE FROM idempotency WHERE key = ?", (key,))
        row = None
    attempt = uuid.uuid4().hex
    if row is None:
        db.execute(
            "INSERT INTO idempotency (key, request_hash, response, created_at, done, holder, attempt, beat_at) "
            "VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
            (key, request_hash, _NOTHING, iso(now), holders.this_process(), attempt, now),
        )
        return Reservation("reserved", attempt)
    stored_hash, done, response, holder, beat_at, _ = row
    if stored_hash != request_hash:
        return Reservation("reused")
    if done:
        return Reservation("answered", response=response)
    if holder is not None and now - beat_at <= stale_seconds and not holders.is_gone(holder):
        return Reservation("running")
    db.execute(
        "UPDATE idempotency SET holder = ?, attempt = ?, beat_at = ? WHERE key = ?",
        (holders.this_process(), attempt, now, key),
    )
    return Reservation("reserved", attempt, None if response == _NOTHING else response)


def store(db: sqlite3.Connection, record: IdempotencyRecord, now: float) -> None:
    """Store the attempt's answer or progress; IdempotencyRace if the attempt no longer holds the reservation."""
    cur = db.execute(
        "UPDATE idempotency SET response = ?, done = ?, beat_at = ? WHERE key = ? AND attempt = ? AND done = 0",
        (record.response, int(record.final), now, record.key, record.attempt),
    )
    if cur.rowcount != 1:
        raise IdempotencyRace(record.key)


def release(db: sqlite3.Connection, key: str, attempt: str) -> None:
    """Give the reservation up without an answer: forget the key if nothing was stored under it, else keep the
    progress (for the retry to resume from) with nobody holding it."""
    db.execute(
        "DELETE FROM idempotency WHERE key = ? AND attempt = ? AND done = 0 AND response = ?", (key, attempt, _NOTHING)
    )
    db.execute("UPDATE idempotency SET holder = NULL WHERE key = ? AND attempt = ? AND done = 0", (key, attempt))


def prune(db: sqlite3.Connection, *, now: float, ttl_seconds: float) -> int:
    """Delete the keys older than ``ttl_seconds``; returns how many."""
    return db.execute("DELETE FROM idempotency WHERE created_at < ?", (iso(now - ttl_seconds),)).rowcount


def iso(t: float) -> str:
    """Epoch seconds as the catalog's ISO-8601 UTC text, which sorts like the times it names."""
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
