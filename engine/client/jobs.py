"""``db.jobs``: submit, list, watch, cancel and delete background jobs (``engine.jobs``).

>>> job = db.jobs.submit("custom", {"type": "sleep", "seconds": 1}, priority=7)   # doctest: +SKIP
>>> job.wait().status                                                             # doctest: +SKIP
'completed'
>>> db.jobs.list(status="completed")[0].info["result"]                            # doctest: +SKIP
{'slept': 1.0}

Jobs run on the worker actors of a scheduler in a process that has ``job_workers`` > 0 (this one, started on the
first submission or by ``start()``; any other process on the same data directory may claim them too).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from engine.errors import InvalidRequest, JobNotFound
from engine.jobs import worker
from engine.jobs.scheduler import Scheduler
from engine.jobs.types import JOB_TYPES, custom_types, find_handler, retry_safe
from engine.storage.jobs import STATUSES, JobRecord, JobStore

if TYPE_CHECKING:
    from engine.client.database import Database

MAX_URL_LENGTH = 2048
WEBHOOK_EVENTS = ("started", "progress", "completed", "failed")
_ALREADY = {"completed": "completed", "failed": "failed", "cancelled": "been cancelled"}


def job_info(record: JobRecord, logs: Sequence[str]) -> dict[str, Any]:
    """The contract's ``JobInfo`` of a job."""
    return {
        "job_id": record.id,
        "job_type": record.job_type,
        "status": record.status,
        "progress": record.progress,
        "parameters": record.parameters,
        "result": record.result,
        "error": record.error,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
        "webhook_url": record.webhook_url,
        "logs": list(logs),
    }


class Jobs:
    def __init__(self, db: Database) -> None:
        self._db = db
        self.store = JobStore(db.catalog.file)
        self._scheduler: Scheduler | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Run jobs in this process from now on (a no-op with ``job_workers=0`` or when already running)."""
        with self._lock:
            settings = self._db.settings
            if self._scheduler is not None or settings.job_workers <= 0:
                return
            open_database = type(self._db)  # the workers open their own client of the same class
            self._scheduler = Scheduler(self.store, settings, lambda: worker.spawn(settings, open_database))
            self._scheduler.start()

    def submit(
        self,
        job_type: str,
        parameters: Any = None,
        *,
        priority: int = 5,
        timeout_seconds: float = 3600.0,
        webhook_url: str | None = None,
        webhook_events: Sequence[str] | None = None,
        idempotency_key: str | None = None,
        owner_key: str | None = None,
        max_attempts: int = 3,
    ) -> Job:
        """Queue a job; with an ``idempotency_key`` this owner used before, the first job instead. Its parameters
        are checked when it runs (a job with bad parameters fails, naming the parameter); an unknown job type,
        or a ``custom`` job whose ``parameters.type`` names no registered job type, is ``InvalidRequest``."""
        if job_type not in JOB_TYPES:
            raise InvalidRequest(
                f"unknown job_type {job_type!r}; job types: {', '.join(JOB_TYPES)}",
                field="job_type",
                allowed=list(JOB_TYPES),
            )
        parameters = {} if parameters is None else parameters
        types = self._db.registry.job_types()
        if job_type == "custom":
            try:
                find_handler(types, job_type, parameters)
            except InvalidRequest as exc:
                raise InvalidRequest(exc.message, field="parameters.type", allowed=custom_types(types)) from None
        if webhook_url is not None:
            _check_webhook_url(webhook_url)
        if webhook_events is not None:
            unknown = [e for e in webhook_events if e not in WEBHOOK_EVENTS]
            if unknown:
                raise InvalidRequest(
                    f"unknown webhook_events {unknown}; events: {', '.join(WEBHOOK_EVENTS)}", field="webhook_events"
                )
        try:
            record, created = self.store.submit(
                job_type,
                parameters,
                priority=priority,
                timeout_seconds=timeout_seconds,
                webhook_url=webhook_url,
                webhook_events=webhook_events,
                max_attempts=max_attempts,
                retry_safe=retry_safe(types, job_type, parameters),
                idempotency_key=idempotency_key,
                owner_key=owner_key,
                now=time.time(),
            )
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        if created:
            self.start()
            self._wake()
        return Job(self, record)

    def get(self, job_id: str) -> Job:
        record = self.store.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return Job(self, record)

    def list(
        self,
        *,
        status: str | None = None,
        job_type: str | None = None,
        owner_key: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs newest first; ``owner_key`` limits them to one key's."""
        if status is not None and status not in STATUSES:
            raise InvalidRequest(
                f"unknown status {status!r}; statuses: {', '.join(STATUSES)}", field="status", allowed=list(STATUSES)
            )
        if job_type is not None and job_type not in JOB_TYPES:
            raise InvalidRequest(
                f"unknown job_type {job_type!r}; job types: {', '.join(JOB_TYPES)}",
                field="job_type",
                allowed=list(JOB_TYPES),
            )
        records = self.store.list(status=status, job_type=job_type, owner_key=owner_key, limit=limit, offset=offset)  # type: ignore[arg-type]
        return [Job(self, r) for r in records]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a pending job, or ask a running one to stop; on a finished job, say so (idempotent)."""
        record, cancelled = self.store.cancel(job_id, now=time.time())
        if not cancelled:
            return {
                "message": f"Job {job_id} was not cancelled: it had already {_ALREADY[record.status]}",
                "status": record.status,
                "cancelled": False,
            }
        self._wake()
        return {"message": f"Job {job_id} cancelled", "cancelled": True}

    def delete(self, job_id: str) -> dict[str, Any]:
        """Remove a finished job and its log; ``JobNotFinished`` (409) while it is pending or running."""
        self.store.delete(job_id)
        return {"message": f"Job {job_id} deleted", "job_id": job_id}

    def info(self, record: JobRecord) -> dict[str, Any]:
        return job_info(record, self.store.logs(record.id))

    def close(self) -> None:
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.close()

    def _wake(self) -> None:
        scheduler = self._scheduler
        if scheduler is not None:
            scheduler.wake()


def _check_webhook_url(url: str) -> None:
    """An absolute http(s) URL; where it may point is checked when the webhooks deliver (their address guard)."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(
            f"webhook_url must be an absolute http:// or https:// URL of at most {MAX_URL_LENGTH} characters, "
            f"not {url!r:.100}",
            field="webhook_url",
        )


class Job:
    """A handle on one job; ``record`` is its state when last read (``refresh()`` reads it again)."""

    def __init__(self, jobs: Jobs, record: JobRecord) -> None:
        self._jobs = jobs
        self.record = record

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def info(self) -> dict[str, Any]:
        """The contract's ``JobInfo`` (with its log) as last read."""
        return self._jobs.info(self.record)

    def refresh(self) -> Job:
        self.record = self._jobs.get(self.id).record
        return self

    def wait(self, timeout: float | None = None, poll: float = 0.02) -> Job:
        """Block until the job is finished (completed, failed or cancelled); ``TimeoutError`` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.refresh().record.finished:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} is still {self.status} after {timeout} s")
            time.sleep(poll)
        return self

    def cancel(self) -> dict[str, Any]:
        return self._jobs.cancel(self.id)

    def __repr__(self) -> str:
        return f"Job({self.id!r}, {self.record.job_type!r}, {self.status!r}, progress={self.record.progress:g})"
