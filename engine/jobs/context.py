"""What a running job's handler gets: progress, a log, a cancel check and the engine client.

Progress and log lines are buffered and written by a flusher thread a few times a second (``FLUSH_SECONDS``), so a
handler may report as often as it likes and ``GET /batch/jobs/{id}`` shows it within a second; a ``job.progress``
event goes to the outbox at most every ``EVENT_SECONDS``. ``cancelled()`` reads the catalog at most every
``CANCEL_POLL_SECONDS``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from engine.errors import JobCancelled
from engine.storage.jobs import JobRecord, JobStore

FLUSH_SECONDS: Final = 0.25
EVENT_SECONDS: Final = 5.0
CANCEL_POLL_SECONDS: Final = 0.05


class RunContext:
    """One run of one job (``engine.registry.JobContext``)."""

    def __init__(self, store: JobStore, job: JobRecord, db: Any) -> None:
        assert job.lease is not None, "a run holds its job's lease"
        self.job_id = job.id
        self.job_type = job.job_type
        self.parameters = job.parameters
        self.attempt = job.attempts
        self.db = db
        self._store = store
        self._lease = job.lease
        self._lock = threading.Lock()
        self._pct = self._written = job.progress
        self._lines: list[str] = []
        self._last_event = 0.0
        self._stopped = False
        self._polled = 0.0

    def progress(self, pct: float, message: str | None = None) -> None:
        if isinstance(pct, bool) or not isinstance(pct, int | float) or math.isnan(pct):
            raise ValueError(f"progress is a number from 0 to 100, not {pct!r}")
        with self._lock:
            self._pct = max(self._pct, min(100.0, max(0.0, float(pct))))
            if message is not None:
                self._lines.append(str(message))

    def log(self, line: str) -> None:
        with self._lock:
            self._lines.append(str(line))

    def cancelled(self) -> bool:
        if self._stopped:
            return True
        now = time.monotonic()
        if now - self._polled >= CANCEL_POLL_SECONDS:
            self._polled = now
            self._stopped = self._store.should_stop(self.job_id, self._lease)
        return self._stopped

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled(self.job_id)

    def flush(self) -> None:
        """Write what was reported since the last flush."""
        with self._lock:
            lines, self._lines = self._lines, []
            pct = self._pct
        if lines:
            self._store.log(self.job_id, lines)
        if pct > self._written:
            now = time.time()
            event = now - self._last_event >= EVENT_SECONDS
            if self._store.progress(self.job_id, self._lease, pct, now=now, emit_event=event) and event:
                self._last_event = now
            self._written = pct

    @contextmanager
    def flushing(self) -> Iterator[RunContext]:
        """Flush in the background while the block runs, and once more at its end."""
        done = threading.Event()

        def loop() -> None:
            while not done.wait(FLUSH_SECONDS):
                self.flush()

        thread = threading.Thread(target=loop, name=f"tessera-job-{self.job_id[:8]}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            done.set()
            thread.join()
            self.flush()
