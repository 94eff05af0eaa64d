"""The Ray actor that runs jobs, one at a time, with an engine client of its own.

The scheduler that claimed a job hands it to ``run``; the worker runs the job's handler with a ``RunContext`` and
writes the outcome itself (completed with its result, failed with its error, or cancelled), under the run's lease:
a run that lost its job (timed out, taken over) changes nothing. A worker that hangs is killed by its scheduler,
which starts another.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from engine.config import Settings
from engine.errors import JobCancelled, TesseraError
from engine.jobs.context import RunContext
from engine.jobs.types import MissingHandler, find_handler
from engine.storage.jobs import JobRecord, JobStore

log = logging.getLogger(__name__)
TRACEBACK_LINES = 20


class JobWorker:
    def __init__(self, settings: Settings, open_database: Callable[[Settings], Any]) -> None:
        # The worker's own client: no maintenance loop and no scheduler of its own.
        self.db = open_database(settings.with_(maintenance_seconds=0, job_workers=0))
        self.store = JobStore(self.db.catalog.file)

    def ready(self) -> int:
        return os.getpid()

    def run(self, job: JobRecord) -> str:
        """Run ``job`` (claimed, with its lease) to its end; returns the status it finished with."""
        context = RunContext(self.store, job, self.db)
        status, result, error = "completed", None, None
        with context.flushing():
            try:
                handler = find_handler(self.db.registry.job_types(), job.job_type, job.parameters)
                result = handler.run(context)
                if isinstance(result, Mapping):
                    result = dict(result)
            except JobCancelled:
                status = "cancelled"
            except (TesseraError, MissingHandler) as exc:
                status, error = "failed", getattr(exc, "message", None) or str(exc)
                result = getattr(exc, "result", None)  # what a handler reports with its failure (a rejected import)
            except Exception as exc:
                status, error = "failed", f"{type(exc).__name__}: {exc}"
                lines = traceback.format_exc().splitlines()[-TRACEBACK_LINES:]
                for line in lines:
                    context.log(line)
        try:
            self.store.finish(job.id, job.lease or "", status, result=result, error=error, now=time.time())  # type: ignore[arg-type]
        except ValueError as exc:  # a result that is not JSON
            error = f"the job's result could not be stored: {exc}"
            self.store.finish(job.id, job.lease or "", "failed", error=error, now=time.time())
            status = "failed"
        return status


def spawn(settings: Settings, open_database: Callable[[Settings], Any]) -> Any:
    """A new worker actor, owned by this process (it dies with it). It takes no CPU slot: the pool's size bounds
    the jobs, and their heavy work runs on the shard hosts."""
    import ray

    return ray.remote(JobWorker).options(num_cpus=0, max_restarts=0, max_task_retries=0).remote(settings, open_database)
