"""The scheduler of one process: claims pending jobs and runs each on a worker actor of a bounded pool.

One thread, woken by a submission, a cancel or a run that ended (and at least every ``IDLE_SECONDS``):

1. reap the runs that ended (a worker that died: its job is re-queued if it is safe to retry, else failed);
2. watch the running ones: a job asked to cancel, past its ``timeout_seconds`` (failed "timeout after N s" at once)
   or no longer this run's (taken over) is asked to stop, through the worker's ``cancelled()`` check, and its
   worker is killed and replaced when it has not stopped after ``job_cancel_grace_seconds``;
3. every ``job_heartbeat_seconds``: mark its runs alive, settle the runs of processes that are gone or silent for
   ``job_stale_seconds`` (``JobStore.recover``), and prune finished jobs past ``job_retention_days``;
4. claim pending jobs while a worker is idle, by priority then FIFO, within the per-type limits.

Claims are transactions on the catalog, so several processes with schedulers share one queue and a job runs once.
The workers are Ray actors owned by this process: when it dies they die with it, and a restart re-queues (or
fails) what they were running.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final

import ray

from engine.config import Settings
from engine.storage import holders
from engine.storage.jobs import JobRecord, JobStore

log = logging.getLogger(__name__)
IDLE_SECONDS: Final = 1.0  # how soon a job queued by another process is claimed here
WATCH_SECONDS: Final = 0.05  # how often running jobs are checked for cancel and timeout
SHUTDOWN: Final = "interrupted by a server shutdown"


@dataclass
class Run:
    job: JobRecord
    worker: Any
    ref: Any
    done: Future[Any]  # the ref's, made once: its callback wakes the scheduler
    stop_at: float | None = None  # when the worker is forced, if it has not stopped by itself
    forced_status: str | None = None  # what a forced stop finishes the job as ("cancelled"), if still running


class Scheduler:
    def __init__(self, store: JobStore, settings: Settings, spawn: Callable[[], Any]) -> None:
        self.store = store
        self.settings = settings
        self.spawn = spawn
        self.limits = settings.job_limits()
        self.holder = holders.this_process()
        self.idle: list[Any] = []
        self.runs: dict[str, Run] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_beat = 0.0
        self._next_prune = 0.0

    def start(self) -> None:
        self.idle = [self.spawn() for _ in range(self.settings.job_workers)]
        self._thread = threading.Thread(target=self._loop, name="tessera-jobs", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        """Stop claiming, kill the workers, and settle their jobs as a restart would (re-queued if safe)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        now = time.time()
        for run in self.runs.values():
            _kill(run.worker)
            self.store.abandon(run.job.id, run.job.lease or "", error=SHUTDOWN, now=now)
        for worker in self.idle:
            _kill(worker)
        self.runs.clear()
        self.idle.clear()

    # -- the loop ----------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(WATCH_SECONDS if self.runs else IDLE_SECONDS)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.step(time.time())
            except Exception:
                log.exception("the job scheduler's step failed; trying again")

    def step(self, now: float) -> None:
        self._reap(now)
        if self.runs:
            self._watch(now)
        if now >= self._next_beat:
            self._beat(now)
        self._fill(now)

    def _reap(self, now: float) -> None:
        for job_id, run in list(self.runs.items()):
            if not run.done.done():
                continue
            del self.runs[job_id]
            try:
                ray.get(run.ref)
                self.idle.append(run.worker)
            except Exception as exc:  # the worker died (killed, out of memory, its process crashed)
                log.warning("the worker of job %s was lost: %s", job_id, exc)
                self.store.abandon(
                    job_id, run.job.lease or "", error=f"its worker was lost: {_first_line(exc)}", now=now
                )
                _kill(run.worker)
                self.idle.append(self.spawn())

    def _watch(self, now: float) -> None:
        current = self.store.runs(list(self.runs))
        grace = self.settings.job_cancel_grace_seconds
        for job_id, run in list(self.runs.items()):
            job = current.get(job_id)
            if run.stop_at is not None:
                if now >= run.stop_at:
                    self._force(run, now)
                continue
            if job is None or job.status != "running" or job.lease != run.job.lease:
                run.stop_at = now + grace  # finished (it is about to return), timed out or taken over
            elif job.cancel_requested:
                run.stop_at, run.forced_status = now + grace, "cancelled"
            elif job.claimed_at is not None and now > job.claimed_at + job.timeout_seconds:
                error = f"timeout after {_seconds(job.timeout_seconds)} s"
                self.store.finish(job_id, run.job.lease or "", "failed", error=error, now=now)
                run.stop_at = now + grace

    def _force(self, run: Run, now: float) -> None:
        """Kill a worker that did not stop when asked, and start another in its place."""
        del self.runs[run.job.id]
        _kill(run.worker)
        if run.forced_status == "cancelled":
            self.store.finish(run.job.id, run.job.lease or "", "cancelled", now=now)
        log.warning(
            "job %s did not stop within %s s of being asked; its worker was killed",
            run.job.id,
            self.settings.job_cancel_grace_seconds,
        )
        self.idle.append(self.spawn())

    def _beat(self, now: float) -> None:
        s = self.settings
        self._next_beat = now + s.job_heartbeat_seconds
        lost = self.store.heartbeat({job_id: run.job.lease or "" for job_id, run in self.runs.items()}, now=now)
        for job_id in lost:
            run = self.runs[job_id]
            if run.stop_at is None:
                run.stop_at = now + s.job_cancel_grace_seconds
        for job in self.store.recover(now=now, stale_seconds=s.job_stale_seconds):
            log.warning("job %s lost its worker (its process is gone or silent); now %s", job.id, job.status)
        if now >= self._next_prune:
            retention = s.job_retention_days * 86400
            self._next_prune = now + min(3600.0, retention)
            pruned = self.store.prune(now - retention)
            if pruned:
                log.info("pruned %d finished jobs older than %s days", pruned, s.job_retention_days)

    def _fill(self, now: float) -> None:
        while self.idle and not self._stop.is_set():
            job = self.store.claim(self.holder, now=time.time(), limits=self.limits)  # its own start time
            if job is None:
                return
            worker = self.idle.pop()
            ref = worker.run.remote(job)
            done = ref.future()
            self.runs[job.id] = Run(job, worker, ref, done)
            done.add_done_callback(lambda _: self._wake.set())


def _kill(worker: Any) -> None:
    with contextlib.suppress(Exception):  # already dead
        ray.kill(worker, no_restart=True)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
