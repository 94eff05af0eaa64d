"""Job endpoints: create a background job, list them, read one, cancel it, delete it (``engine.jobs``).

``POST /batch/jobs`` answers 200 with the job's ``JobInfo`` (creating POSTs answer 200), usually still
``pending``: the job runs on the scheduler's Ray workers, never in this process's request threads. A body of the
wrong shape (``priority`` outside 1..10, ``timeout_seconds`` <= 0, an unknown webhook event) is 422; an unknown
``job_type``, or a ``custom`` job whose ``parameters.type`` names no registered job type, is 400 with ``allowed``
(the engine's checks). What a job's ``parameters`` must hold is checked when it runs: a job with bad ones is
created and then fails naming the parameter, as the seed's clients expect. An ``Idempotency-Key`` (1 to 255
characters) returns the job the same key created with it before, whatever the body says.

A job belongs to the key that created it (open mode's anonymous caller: to no key). A key sees and acts on its
own jobs; another key's needs ``admin`` (read to list or read it, write to cancel, delete to delete), and the
permission to create one depends on what it does (``service.auth.policy``). Engine calls block, so they run in
Starlette's thread pool.
"""

from __future__ import annotations

from typing import Any, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from engine import Database
from engine.client.batch import check_idempotency_key
from engine.client.jobs import Job
from service.auth.gate import principal_of
from service.auth.permissions import Principal
from service.auth.policy import authorize_job, authorize_job_access, rule_for, sees_every_job
from service.context import database
from service.json import JSONResponse, parse_body
from service.models import (
    DEFAULT_JOB_LIMIT,
    MAX_JOB_LIMIT,
    MAX_OFFSET,
    CreateJob,
    JobCancelResult,
    JobDeleted,
    JobInfo,
)
from service.query_string import integer, one, refuse_unknown

LIST_PARAMS = ("status", "job_type", "limit", "offset")
JOB_PATH = "/batch/jobs/{job_id}"


# -- blocking work (run in the thread pool) ---------------------------------------------------------------------
def _submit(db: Database, body: CreateJob, owner: str | None, key: str | None) -> JobInfo:
    job = db.jobs.submit(
        body.job_type,
        body.parameters,
        priority=body.priority,
        timeout_seconds=body.timeout_seconds,
        webhook_url=body.webhook_url,
        webhook_events=body.webhook_events,
        idempotency_key=key,
        owner_key=owner,
    )
    return cast(JobInfo, job.info)


def _list(db: Database, filters: dict[str, Any]) -> list[JobInfo]:
    return [cast(JobInfo, job.info) for job in db.jobs.list(**filters)]


def _own(db: Database, principal: Principal, route: str, job_id: str) -> Job:
    """The job (JobNotFound, 404), if the principal may use ``route`` ("POST /path") on it (Forbidden, 403)."""
    job = db.jobs.get(job_id)
    method, template = route.split(" ")
    authorize_job_access(principal, rule_for(method, template), job_id, job.record.owner_key)
    return job


def _read(db: Database, principal: Principal, job_id: str) -> JobInfo:
    return cast(JobInfo, _own(db, principal, f"GET {JOB_PATH}", job_id).info)


def _cancel(db: Database, principal: Principal, job_id: str) -> JobCancelResult:
    return cast(JobCancelResult, _own(db, principal, f"POST {JOB_PATH}/cancel", job_id).cancel())


def _delete(db: Database, principal: Principal, job_id: str) -> JobDeleted:
    _own(db, principal, f"DELETE {JOB_PATH}", job_id)
    return cast(JobDeleted, db.jobs.delete(job_id))


def list_filters(request: Request, principal: Principal) -> dict[str, Any]:
    """``?status=&job_type=&limit=50&offset=0`` as ``db.jobs.list`` arguments; bad parameters are 400. An empty
    ``status`` or ``job_type`` filters nothing (the contract's template writes them empty); unknown values are the
    engine's 400 with ``allowed``. A key without admin read lists its own jobs only."""
    params = request.query_params
    refuse_unknown(params, LIST_PARAMS)
    return {
        "status": one(params, "status") or None,
        "job_type": one(params, "job_type") or None,
        "owner_key": None if sees_every_job(principal) else principal.key_id,
        "limit": integer(params, "limit", DEFAULT_JOB_LIMIT, MAX_JOB_LIMIT, minimum=1),
        "offset": integer(params, "offset", 0, MAX_OFFSET),
    }


# -- endpoints --------------------------------------------------------------------------------------------------
async def create_job(request: Request) -> Response:
    body = await parse_body(request, CreateJob)
    principal = principal_of(request)
    authorize_job(principal, body.job_type, body.parameters)  # before anything is queued
    key = request.headers.get("idempotency-key")
    if key is not None:
        check_idempotency_key(key)
    db = database(request)
    return JSONResponse(await run_in_threadpool(_submit, db, body, principal.key_id, key))


async def list_jobs(request: Request) -> Response:
    filters = list_filters(request, principal_of(request))
    return JSONResponse(await run_in_threadpool(_list, database(request), filters))


async def get_job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    return JSONResponse(await run_in_threadpool(_read, database(request), principal_of(request), job_id))


async def cancel_job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    return JSONResponse(await run_in_threadpool(_cancel, database(request), principal_of(request), job_id))


async def delete_job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    return JSONResponse(await run_in_threadpool(_delete, database(request), principal_of(request), job_id))
