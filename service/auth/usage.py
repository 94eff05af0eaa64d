"""Per-key usage, counted in memory and written to the catalog every few seconds (never once per request).

A request adds one to its key's count for (minute, route template, status) and its time to the total, under a
lock; a background thread writes the counts gathered so far every ``flush_seconds`` (5 s) and when the server
stops, in one catalog transaction, with each key's ``last_used``. A kill -9 loses at most the last interval's
counts: usage is a statistic, not a record of what was done. A usage query adds this process's unwritten counts
to what the catalog holds, so a key sees its own requests at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from engine.storage.api_keys import ApiKeyStore, UsageCount
from engine.storage.idempotency import iso

log = logging.getLogger("tessera.service")
RETENTION_MINUTES = 31 * 24 * 60  # usage older than this is deleted (hours=N answers at most 744 hours)

_Slot = tuple[str, int, str, int]  # key id, minute, endpoint, status


class UsageRecorder:
    def __init__(self, store: ApiKeyStore, flush_seconds: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: defaultdict[_Slot, list[float]] = defaultdict(lambda: [0, 0.0])
        self._in_flight: dict[_Slot, list[float]] = {}
        self._last_used: dict[str, float] = {}
        self._writing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flushes = 0

    def record(self, key_id: str, endpoint: str, status: int, elapsed_ms: float) -> None:
        now = self._clock()
        with self._lock:
            count = self._counts[(key_id, int(now // 60), endpoint, status)]
            count[0] += 1
            count[1] += elapsed_ms
            self._last_used[key_id] = now

    def usage(self, key_id: str, since_minute: int) -> list[UsageCount]:
        """The catalog's counts and this process's unwritten ones. A flush holds ``_writing`` while its counts are
        on their way to the catalog, so none is missed or counted twice."""
        with self._writing:
            with self._lock:
                mine = _counts(self._counts, key_id, since_minute) + _counts(self._in_flight, key_id, since_minute)
            return self.store.usage(key_id, since_minute) + mine

    def flush(self) -> None:
        """Write what was counted since the last flush; requests keep being counted meanwhile (the write happens
        outside the counting lock), and counts that could not be written wait for the next flush."""
        with self._writing:
            with self._lock:
                self._in_flight, self._counts = self._counts, defaultdict(lambda: [0, 0.0])
                last_used, self._last_used = self._last_used, {}
            if not self._in_flight and not last_used:
                return
            counts = _counts(self._in_flight)
            try:
                self.store.add_usage(counts, {k: iso(t) for k, t in last_used.items()})
            except Exception:  # the catalog is busy or failing: keep the counts, say so, try again next time
                log.warning("could not write API key usage; keeping it for the next flush", exc_info=True)
                with self._lock:
                    for slot, c in self._in_flight.items():
                        mine = self._counts[slot]
                        mine[0] += c[0]
                        mine[1] += c[1]
                    for k, t in last_used.items():
                        self._last_used[k] = max(t, self._last_used.get(k, 0.0))
            finally:
                self._in_flight = {}
        self._flushes += 1
        if self._flushes % 720 == 1:  # about hourly at 5 s
            self.store.prune_usage(int(self._clock() // 60) - RETENTION_MINUTES)

    def start(self) -> None:
        if self._thread is None and self.flush_seconds > 0:
            self._thread = threading.Thread(target=self._run, name="tessera-key-usage", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()


def _counts(counts: dict[_Slot, list[float]], key_id: str | None = None, since_minute: int = 0) -> list[UsageCount]:
    """The counts as records: of one key since a minute, or (``key_id`` None) all of them."""
    return [
        UsageCount(k, minute, endpoint, status, int(c[0]), c[1])
        for (k, minute, endpoint, status), c in counts.items()
        if (key_id is None or k == key_id) and minute >= since_minute
    ]
