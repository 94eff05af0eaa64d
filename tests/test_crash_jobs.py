"""Kill -9 of the whole server while jobs run, then a restart on the same data directory: every job is still
there, pending ones run, running ones are re-queued when their type is safe to retry and failed otherwise, and a
cancellation made before the crash holds. The jobs are queued straight into the catalog's job table from this
process, as a second server process would (the queue is the catalog, shared by every process on it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_crash import Server

from engine.storage.catalog import catalog_path
from engine.storage.jobs import INTERRUPTED, JobRecord, JobStore
from engine.storage.sqlite import SqliteFile

pytestmark = pytest.mark.slow
JOB_SERVER = {"TESSERA_JOB_WORKERS": "2"}


def wait_for(what: str, check: Callable[[], bool], seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def sleep_job(store: JobStore, seconds: float, *, priority: int, retry_safe: bool = True) -> JobRecord:
    job, _ = store.submit(
        "custom", {"type": "sleep", "seconds": seconds}, priority=priority, retry_safe=retry_safe, now=time.time()
    )
    return job


def test_jobs_survive_a_kill_9_and_resume_after_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = Server(data_dir, env=JOB_SERVER)
    store = JobStore(SqliteFile(catalog_path(str(data_dir))))
    try:
        retried = sleep_job(store, 6, priority=10)  # safe to retry: runs again from the start
        interrupted = sleep_job(store, 600, priority=10, retry_safe=False)  # not safe: fails on restart
        wait_for(
            "both long jobs to run", lambda: all(store.get(j.id).status == "running" for j in (retried, interrupted))
        )
        waiting = [sleep_job(store, 0, priority=5) for _ in range(3)]  # both workers are busy: these wait
        cancelled = sleep_job(store, 0, priority=1)
        store.cancel(cancelled.id, now=time.time())
        assert {store.get(j.id).status for j in waiting} == {"pending"}
    finally:
        server.kill()
    assert store.get(retried.id).status == "running"  # what the dead server left behind

    server = Server(data_dir, env=JOB_SERVER)
    try:
        everything = [retried, interrupted, *waiting, cancelled]
        wait_for("every job to finish", lambda: all(store.get(j.id).finished for j in everything))
        listed = {j.id for j in store.list(limit=100)}
        assert listed == {j.id for j in everything}, "a job went missing across the crash"

        again = store.get(retried.id)
        assert (again.status, again.attempts, again.result) == ("completed", 2, {"slept": 6.0})
        lost = store.get(interrupted.id)
        assert (lost.status, lost.error, lost.attempts) == ("failed", INTERRUPTED, 1)
        assert [store.get(j.id).status for j in waiting] == ["completed"] * 3
        assert all(store.get(j.id).attempts == 1 for j in waiting)
        kept = store.get(cancelled.id)
        assert (kept.status, kept.attempts) == ("cancelled", 0), "a cancel made before the crash did not hold"
        assert store.list(status="running") == []
        events = [
            e.event
            for e in store.outbox_since(0, limit=1000)
            if e.payload["job_id"] == retried.id and e.event != "job.progress"
        ]
        assert events == ["job.started", "job.started", "job.completed"]  # both runs announced, one completion
    finally:
        server.kill()
