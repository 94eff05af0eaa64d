"""The durable job queue, in the catalog's SQLite file (tables ``jobs``, ``job_logs`` and ``outbox``).

Life of a job (one row of ``jobs``)::

    submit     pending (an Idempotency-Key per owner returns the first job instead of a second)
    claim      pending -> running: the highest priority first, FIFO (``seq``) within one; the run gets a fresh
               ``lease`` token, and every later write of that run (progress, finish) must present it
    heartbeat  the run is alive (``heartbeat_at``); progress writes count as heartbeats too
    finish     running -> completed | failed | cancelled, by the run holding the lease only
    cancel     pending -> cancelled at once; running -> cancel_requested (the run stops itself, then finishes
               as cancelled)
    recover    running, but its holder process is gone or its heartbeat is stale: re-queued (safe to retry and
               attempts left, not cancel-requested), cancelled (cancel-requested) or failed
    prune      finished jobs completed before a time, and their logs

Fencing: a run that lost its job (recovered, then claimed by another run) presents a lease that is no longer the
job's, so its writes change nothing and answer False; it learns so from ``heartbeat`` and stops.

Every status change of a contract event writes that event to ``outbox`` in the same transaction (``job.started``,
``job.completed``, ``job.failed``, and ``job.progress`` when asked), so an event is delivered (by the webhooks'
sender, reading the outbox) if and only if its change committed. Cancellation and re-queueing are no events.

Every method is one transaction; the times are passed in (``now``, epoch seconds) so tests control the clock.

>>> store = JobStore(catalog.file)
>>> job, created = store.submit("custom", {"type": "sleep", "seconds": 1}, priority=7, now=time.time())
>>> run = store.claim(holders.this_process(), now=time.time())
>>> store.finish(run.id, run.lease, "completed", result={"slept": 1}, now=time.time())
True
"""

from __future__ import annotations

import builtins
import math
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import orjson

from engine.errors import JobNotFinished, JobNotFound
from engine.storage import holders
from engine.storage.idempotency import iso
from engine.storage.sqlite import SqliteFile

JobStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
FinishedStatus = Literal["completed", "failed", "cancelled"]
STATUSES: Final = get_args(JobStatus)
FINISHED: Final = get_args(FinishedStatus)

MAX_LOG_LINES: Final = 1000
MAX_LINE_BYTES: Final = 2048  # of UTF-8
INTERRUPTED: Final = "interrupted by a server restart"

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,              -- uuid4
    seq INTEGER NOT NULL,             -- insertion order: FIFO within a priority, newest first in listings
    job_type TEXT NOT NULL,
    parameters TEXT NOT NULL,         -- JSON, checked by the job type when it runs
    priority INTEGER NOT NULL,        -- 1..10, higher runs first
    status TEXT NOT NULL,             -- pending | running | completed | failed | cancelled
    progress REAL NOT NULL DEFAULT 0, -- 0..100, never lower within a run
    result TEXT,                      -- JSON
    error TEXT,
    created_at TEXT NOT NULL,         -- ISO-8601 UTC
    started_at TEXT,                  -- the first start
    completed_at TEXT,
    webhook_url TEXT,
    webhook_events TEXT,              -- JSON list, or NULL
    timeout_seconds REAL NOT NULL,    -- counted from the start of the current run (claimed_at)
    owner_key TEXT,                   -- the API key id that submitted it
    idempotency_key TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    retry_safe INTEGER NOT NULL,      -- 1: a run interrupted by a crash may run again
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    holder TEXT,                      -- the process of the current or last run (engine.storage.holders)
    lease TEXT,                       -- the current or last run's token: its writes must present it
    heartbeat_at REAL,                -- epoch seconds: the run's last sign of life
    claimed_at REAL                   -- epoch seconds: the current or last run's start (timeouts count from it)
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_seq ON jobs (seq);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, priority DESC, seq);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (completed_at) WHERE completed_at IS NOT NULL;
-- One job per (owner, key); jobs without a key are not limited. NULL owners (no auth) share one key space.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (COALESCE(owner_key, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS job_logs (
    job_id TEXT NOT NULL,
    n INTEGER NOT NULL,               -- 1, 2, ... per job; only the last MAX_LOG_LINES are kept
    line TEXT NOT NULL,
    PRIMARY KEY (job_id, n)
) WITHOUT ROWID;
-- The transactional outbox: events written with the change they announce, delivered later by the webhooks' sender.
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,            -- JSON
    created_at TEXT NOT NULL
);
"""
_COLUMNS: Final = (
    "id",
    "seq",
    "job_type",
    "parameters",
    "priority",
    "status",
    "progress",
    "result",
    "error",
    "created_at",
    "started_at",
    "completed_at",
    "webhook_url",
    "webhook_events",
    "timeout_seconds",
    "owner_key",
    "idempotency_key",
    "attempts",
    "max_attempts",
    "retry_safe",
    "cancel_requested",
    "holder",
    "lease",
    "heartbeat_at",
    "claimed_at",
)
_SELECT: Final = f"SELECT {', '.join(_COLUMNS)} FROM jobs"
_EVENTS: Final[Mapping[str, str]] = {"running": "job.started", "completed": "job.completed", "failed": "job.failed"}


@dataclass(frozen=True)
class JobRecord:
    """One row of ``jobs``, its JSON parsed."""

    id: str
    seq: int
    job_type: str
    parameters: Any
    priority: int
    status: JobStatus
    progress: float
    result: Any
    error: str | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    webhook_url: str | None
    webhook_events: tuple[str, ...] | None
    timeout_seconds: float
    owner_key: str | None
    idempotency_key: str | None
    attempts: int
    max_attempts: int
    retry_safe: bool
    cancel_requested: bool
    holder: str | None
    lease: str | None
    heartbeat_at: float | None
    claimed_at: float | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class OutboxEvent:
    id: int
    event: str
    payload: dict[str, Any]
    created_at: str


def prepare(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)


class JobStore:
    """The jobs of one data directory; every method is one transaction on the catalog's file, so several server
    processes on one data directory share one queue (a claim takes the file's write lock: one job, one run)."""

    def __init__(self, file: SqliteFile) -> None:
        self.file = file
        file.run(prepare)

    def submit(
        self,
        job_type: str,
        parameters: Any,
        *,
        priority: int = 5,
        timeout_seconds: float = 3600.0,
        webhook_url: str | None = None,
        webhook_events: Sequence[str] | None = None,
        max_attempts: int = 3,
        retry_safe: bool = False,
        idempotency_key: str | None = None,
        owner_key: str | None = None,
        now: float,
    ) -> tuple[JobRecord, bool]:
        """Queue a job (pending); with an ``idempotency_key`` that this owner used before, that job instead.
        Returns the job and whether it was created. ValueError for a priority outside 1..10, a timeout that is not
        a positive number of seconds, or fewer than one attempt."""
        _check_submission(priority, timeout_seconds, max_attempts)
        events = None if webhook_events is None else _json(list(webhook_events), "webhook_events")
        with self.file.write() as db:
            if idempotency_key is not None:
                found = db.execute(
                    f"{_SELECT} WHERE COALESCE(owner_key, '') = ? AND idempotency_key = ?",
                    (owner_key or "", idempotency_key),
                ).fetchone()
                if found is not None:
                    return _record(found), False
            job_id = str(uuid.uuid4())
            db.execute(
                "INSERT INTO jobs (id, seq, job_type, parameters, priority, status, created_at, webhook_url, "
                "webhook_events, timeout_seconds, owner_key, idempotency_key, max_attempts, retry_safe) "
                "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    job_type,
                    _json(parameters, "parameters"),
                    priority,
                    iso(now),
                    webhook_url,
                    events,
                    float(timeout_seconds),
                    owner_key,
                    idempotency_key,
                    max_attempts,
                    int(retry_safe),
                ),
            )
            return _get(db, job_id), True

    def claim(
        self, holder: str, *, now: float, limits: Mapping[str, int] | None = None, total: int | None = None
    ) -> JobRecord | None:
        """Take the next pending job for a run in ``holder`` (``holders.this_process()``), or None.

        Skips the types that already run ``limits[type]`` jobs (counted over every holder: the limit protects what
        the jobs share, the tables), and takes nothing when ``holder`` already runs ``total`` jobs (its pool)."""
        with self.file.write() as db:
            if total is not None:
                (mine,) = db.execute(
                    "SELECT COUNT(*) FROM jobs WHERE status = 'running' AND holder = ?", (holder,)
                ).fetchone()
                if mine >= total:
                    return None
            full: builtins.list[str] = []
            if limits:
                running = dict(
                    db.execute("SELECT job_type, COUNT(*) FROM jobs WHERE status = 'running' GROUP BY job_type")
                )
                full = [t for t, limit in limits.items() if running.get(t, 0) >= limit]
            skip = f" AND job_type NOT IN ({', '.join('?' * len(full))})" if full else ""
            row = db.execute(
                f"SELECT id FROM jobs WHERE status = 'pending'{skip} ORDER BY priority DESC, seq LIMIT 1", full
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, ?), attempts = attempts + 1, "
                "holder = ?, lease = ?, heartbeat_at = ?, claimed_at = ? WHERE id = ?",
                (iso(now), holder, uuid.uuid4().hex, now, now, row[0]),
            )
            return _changed(db, row[0], now)

    def heartbeat(self, leases: Mapping[str, str], *, now: float) -> set[str]:
        """Mark the runs of ``leases`` (job id -> lease) alive. Returns the jobs whose run lost them (recovered
        elsewhere, or finished): the caller stops working on those."""
        with self.file.write() as db:
            lost = set()
            for job_id, lease in leases.items():
                cur = db.execute(
                    "UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND lease = ? AND status = 'running'",
                    (now, job_id, lease),
                )
                if cur.rowcount != 1:
                    lost.add(job_id)
            return lost

    def progress(self, job_id: str, lease: str, pct: float, *, now: float, emit_event: bool = False) -> bool:
        """Move the run's progress up to ``pct`` (clamped to 0..100; a lower value changes nothing, so progress
        never goes back within a run) and count as a heartbeat. With ``emit_event``, a rise writes
        ``job.progress``. False when the run no longer holds the job (nothing written)."""
        if math.isnan(pct):
            raise ValueError("progress must be a number from 0 to 100, not NaN")
        pct = min(100.0, max(0.0, float(pct)))
        with self.file.write() as db:
            row = db.execute(
                "SELECT progress FROM jobs WHERE id = ? AND lease = ? AND status = 'running'", (job_id, lease)
            ).fetchone()
            if row is None:
                return False
            rises = pct > row[0]
            db.execute("UPDATE jobs SET progress = MAX(progress, ?), heartbeat_at = ? WHERE id = ?", (pct, now, job_id))
            if rises and emit_event:
                _emit(db, "job.progress", _get(db, job_id), now)
            return True

    def log(self, job_id: str, lines: Sequence[str]) -> bool:
        """Append lines to the job's log, each cut to MAX_LINE_BYTES of UTF-8 (on a character boundary), keeping
        the last MAX_LOG_LINES. False if the job does not exist (nothing written)."""
        kept = [_cut(line) for line in lines[-MAX_LOG_LINES:]]
        with self.file.write() as db:
            if db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                return False
            (last,) = db.execute("SELECT COALESCE(MAX(n), 0) FROM job_logs WHERE job_id = ?", (job_id,)).fetchone()
            db.executemany(
                "INSERT INTO job_logs (job_id, n, line) VALUES (?, ?, ?)",
                [(job_id, last + i, line) for i, line in enumerate(kept, 1)],
            )
            db.execute("DELETE FROM job_logs WHERE job_id = ? AND n <= ?", (job_id, last + len(kept) - MAX_LOG_LINES))
            return True

    def finish(
        self,
        job_id: str,
        lease: str,
        status: FinishedStatus,
        *,
        result: Any = None,
        error: str | None = None,
        now: float,
    ) -> bool:
        """End the run holding ``lease``: completed (progress 100), failed or cancelled. False when the run no
        longer holds the job (recovered and claimed again meanwhile, or finished already): nothing changes."""
        if status not in FINISHED:
            raise ValueError(f"a job finishes as one of {', '.join(FINISHED)}, not {status!r}")
        stored = None if result is None else _json(result, "result")
        with self.file.write() as db:
            cur = db.execute(
                "UPDATE jobs SET status = ?, result = ?, error = ?, completed_at = ?, "
                "progress = CASE WHEN ? = 'completed' THEN 100 ELSE progress END "
                "WHERE id = ? AND lease = ? AND status = 'running'",
                (status, stored, error, iso(now), status, job_id, lease),
            )
            if cur.rowcount != 1:
                return False
            _changed(db, job_id, now)
            return True

    def cancel(self, job_id: str, *, now: float) -> tuple[JobRecord, bool]:
        """Cancel a pending job at once, or ask a running one to stop (its run finishes it as cancelled). Returns
        the job and whether it was (being) cancelled: False for a finished job, which is left as it is."""
        with self.file.write() as db:
            job = _find(db, job_id)
            if job.status == "pending":
                db.execute("UPDATE jobs SET status = 'cancelled', completed_at = ? WHERE id = ?", (iso(now), job_id))
            elif job.status == "running":
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            else:
                return job, False
            return _get(db, job_id), True

    def cancel_requested(self, job_id: str) -> bool:
        """For runs to poll between batches; a job that no longer exists has nothing left to run (True)."""
        rows = self.file.rows("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
        return not rows or bool(rows[0][0])

    def recover(self, *, now: float, stale_seconds: float) -> builtins.list[JobRecord]:
        """Settle the running jobs whose run is gone: its holder process exited (``holders.is_gone``), or its last
        heartbeat is older than ``stale_seconds`` (a holder on another machine, or a stuck run). Each is re-queued
        (pending, progress 0) if it is safe to retry, has attempts left and was not asked to cancel; cancelled if
        it was; else failed with INTERRUPTED. Returns the jobs as they are now."""
        with self.file.write() as db:
            running = db.execute(
                "SELECT id, holder, heartbeat_at, retry_safe, attempts, max_attempts, cancel_requested FROM jobs "
                "WHERE status = 'running' ORDER BY seq"
            ).fetchall()
            settled = []
            for job_id, holder, beat, retry_safe, attempts, max_attempts, cancel in running:
                if _gone(holder, beat, now, stale_seconds):
                    settled.append(
                        _settle(db, job_id, bool(retry_safe and attempts < max_attempts), cancel, INTERRUPTED, now)
                    )
            return settled

    def abandon(self, job_id: str, lease: str, *, error: str, now: float) -> JobRecord | None:
        """Settle a run whose worker was lost while the process that ran it lives on (the worker crashed): as
        ``recover`` does, with ``error`` if it fails. None when the run no longer holds the job."""
        with self.file.write() as db:
            row = db.execute(
                "SELECT retry_safe, attempts, max_attempts, cancel_requested FROM jobs "
                "WHERE id = ? AND lease = ? AND status = 'running'",
                (job_id, lease),
            ).fetchone()
            if row is None:
                return None
            retry_safe, attempts, max_attempts, cancel = row
            return _settle(db, job_id, bool(retry_safe and attempts < max_attempts), cancel, error, now)

    def should_stop(self, job_id: str, lease: str) -> bool:
        """For a run to poll between steps: True once its job was asked to cancel, or is no longer its to run
        (finished by a timeout, taken over, deleted)."""
        rows = self.file.rows("SELECT status, lease, cancel_requested FROM jobs WHERE id = ?", (job_id,))
        return not rows or rows[0][0] != "running" or rows[0][1] != lease or bool(rows[0][2])

    def runs(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """The given jobs as they are now (those that still exist), for a runner watching its runs."""
        if not job_ids:
            return {}
        rows = self.file.rows(f"{_SELECT} WHERE id IN ({', '.join('?' * len(job_ids))})", tuple(job_ids))
        return {r.id: r for r in map(_record, rows)}

    def timed_out(self, *, now: float, holder: str | None = None) -> builtins.list[JobRecord]:
        """The running jobs (of ``holder``, if given) whose current run started more than ``timeout_seconds``
        before ``now``; the runner stops each and fails it with "timeout after N s"."""
        mine = " AND holder = ?" if holder is not None else ""
        rows = self.file.rows(
            f"{_SELECT} WHERE status = 'running' AND claimed_at + timeout_seconds < ?{mine} ORDER BY seq",
            (now, holder) if holder is not None else (now,),
        )
        return [_record(r) for r in rows]

    def get(self, job_id: str) -> JobRecord | None:
        rows = self.file.rows(f"{_SELECT} WHERE id = ?", (job_id,))
        return _record(rows[0]) if rows else None

    def list(
        self,
        *,
        status: JobStatus | None = None,
        job_type: str | None = None,
        owner_key: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[JobRecord]:
        """Jobs newest first, filtered by whichever of status, type and owner are given."""
        filters = {"status": status, "job_type": job_type, "owner_key": owner_key}
        given = {column: value for column, value in filters.items() if value is not None}
        where = " WHERE " + " AND ".join(f"{column} = ?" for column in given) if given else ""
        rows = self.file.rows(f"{_SELECT}{where} ORDER BY seq DESC LIMIT ? OFFSET ?", (*given.values(), limit, offset))
        return [_record(r) for r in rows]

    def logs(self, job_id: str) -> builtins.list[str]:
        """The job's kept log lines, oldest first."""
        return [r[0] for r in self.file.rows("SELECT line FROM job_logs WHERE job_id = ? ORDER BY n", (job_id,))]

    def delete(self, job_id: str) -> JobRecord:
        """Remove a finished job and its log; JobNotFinished while it is pending or running."""
        with self.file.write() as db:
            job = _find(db, job_id)
            if not job.finished:
                raise JobNotFinished(job_id, job.status)
            db.execute("DELETE FROM job_logs WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            return job

    def prune(self, before: float) -> int:
        """Delete the finished jobs completed before ``before`` (epoch seconds), and their logs; returns how many."""
        finished = f"status IN ({', '.join('?' * len(FINISHED))}) AND completed_at < ?"
        with self.file.write() as db:
            params = (*FINISHED, iso(before))
            db.execute(f"DELETE FROM job_logs WHERE job_id IN (SELECT id FROM jobs WHERE {finished})", params)
            return db.execute(f"DELETE FROM jobs WHERE {finished}", params).rowcount

    def outbox_since(self, after_id: int = 0, limit: int = 100) -> builtins.list[OutboxEvent]:
        """The outbox's events after ``after_id``, oldest first."""
        rows = self.file.rows(
            "SELECT id, event, payload, created_at FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        )
        return [OutboxEvent(i, event, orjson.loads(payload), at) for i, event, payload, at in rows]


def _check_submission(priority: int, timeout_seconds: float, max_attempts: int) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 10:
        raise ValueError(f"priority must be an integer from 1 to 10 (higher runs first), not {priority!r}")
    if not isinstance(timeout_seconds, int | float) or not (0 < timeout_seconds < math.inf):
        raise ValueError(f"timeout_seconds must be a positive number of seconds, not {timeout_seconds!r}")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be an integer of at least 1, not {max_attempts!r}")


def _json(value: Any, what: str) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:  # orjson.JSONEncodeError
        raise ValueError(f"a job's {what} must be JSON: {exc}") from exc


def _cut(line: str) -> str:
    """At most MAX_LINE_BYTES of UTF-8; a character the cut would split is dropped whole (lone surrogates, which
    UTF-8 cannot hold, become "?")."""
    return line.encode("utf-8", "replace")[:MAX_LINE_BYTES].decode("utf-8", "ignore")


def _gone(holder: str | None, beat: float | None, now: float, stale_seconds: float) -> bool:
    return holder is None or beat is None or now - beat > stale_seconds or holders.is_gone(holder)


def _settle(db: sqlite3.Connection, job_id: str, retry: bool, cancel: bool, error: str, now: float) -> JobRecord:
    """End a lost run: cancelled if it was asked to, re-queued (pending, progress 0) if ``retry``, else failed."""
    if cancel:
        db.execute("UPDATE jobs SET status = 'cancelled', completed_at = ? WHERE id = ?", (iso(now), job_id))
    elif retry:
        db.execute(
            "UPDATE jobs SET status = 'pending', progress = 0, holder = NULL, lease = NULL, heartbeat_at = NULL, "
            "claimed_at = NULL WHERE id = ?",
            (job_id,),
        )
    else:
        db.execute(
            "UPDATE jobs SET status = 'failed', error = ?, completed_at = ? WHERE id = ?", (error, iso(now), job_id)
        )
    return _changed(db, job_id, now)


def _record(row: Sequence[Any]) -> JobRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["parameters"] = orjson.loads(values["parameters"])
    values["result"] = None if values["result"] is None else orjson.loads(values["result"])
    events = values["webhook_events"]
    values["webhook_events"] = None if events is None else tuple(orjson.loads(events))
    values["retry_safe"] = bool(values["retry_safe"])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return JobRecord(**values)


def _get(db: sqlite3.Connection, job_id: str) -> JobRecord:
    return _record(db.execute(f"{_SELECT} WHERE id = ?", (job_id,)).fetchone())


def _find(db: sqlite3.Connection, job_id: str) -> JobRecord:
    row = db.execute(f"{_SELECT} WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    return _record(row)


def _changed(db: sqlite3.Connection, job_id: str, now: float) -> JobRecord:
    """The job after a status change in this transaction, with that change's event written if it has one."""
    job = _get(db, job_id)
    event = _EVENTS.get(job.status)
    if event is not None:
        _emit(db, event, job, now)
    return job


def _emit(db: sqlite3.Connection, event: str, job: JobRecord, now: float) -> None:
    payload: dict[str, Any] = {
        "job_id": job.id,
        "job_type": job.job_type,
        "status": job.status,
        "progress": job.progress,
    }
    if job.result is not None:
        payload["result"] = job.result
    if job.error is not None:
        payload["error"] = job.error
    db.execute(
        "INSERT INTO outbox (event, payload, created_at) VALUES (?, ?, ?)",
        (event, orjson.dumps(payload).decode(), iso(now)),
    )
