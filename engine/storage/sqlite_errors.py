"""Where the catalog's calls into sqlite3 have their errors translated: ``SqliteCatalog`` and the shard log's
history readers (``engine.storage.history``) wrap every use of a connection in ``sqlite_errors``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from engine.errors import CatalogBusy, StorageError


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
