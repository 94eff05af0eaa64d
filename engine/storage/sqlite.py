"""One SQLite file opened the catalog's way: a connection per thread, WAL, full sync, and transactions whose
sqlite3 errors leave as CatalogBusy or StorageError (``engine.storage.sqlite_errors``).

The catalog (``engine.storage.catalog``) and the stores that share its file (API keys) each hold one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.storage.sqlite_errors import sqlite_errors


class SqliteFile:
    """Writes take the database's write lock up front (``BEGIN IMMEDIATE``) so concurrent writers from several
    processes queue instead of failing; a writer that waits longer than ``busy_timeout`` seconds for the lock gets
    CatalogBusy (nothing was changed)."""

    def __init__(self, path: str | Path, busy_timeout: float = 30.0) -> None:
        self.path = str(path)
        self.busy_timeout = busy_timeout
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections are not shareable)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed if the block returns, else rolled back (also when COMMIT itself fails,
        which leaves SQLite's transaction open)."""
        with sqlite_errors(self.busy_timeout):
            db = self.conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent snapshot for several queries."""
        with sqlite_errors(self.busy_timeout):
            db = self.conn()
            db.execute("BEGIN")
            try:
                yield db
            finally:
                if db.in_transaction:
                    db.execute("COMMIT")

    def rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """One query outside a transaction (its own snapshot), its errors translated like a transaction's."""
        with sqlite_errors(self.busy_timeout):
            return self.conn().execute(sql, parameters).fetchall()

    def run(self, setup: Any) -> None:
        """Run ``setup(connection)`` (schema creation, migrations) with errors translated."""
        with sqlite_errors(self.busy_timeout):
            setup(self.conn())
