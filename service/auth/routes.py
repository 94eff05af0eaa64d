"""The ``/auth`` endpoints: create, list, get, revoke and rotate API keys, a key's usage, and ``/auth/verify``.

Who may call them is the route table's business (``service.auth.policy``); the handlers only do the work. Key
operations are quick catalog transactions, run in Starlette's thread pool like every engine call.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from service.auth import keys as key_ops
from service.auth.gate import Gate, principal_of
from service.auth.models import ApiKeyCreated, ApiKeyUsage, CreateApiKey, NoBody, RevokeApiKey, Verified
from service.auth.permissions import from_specs
from service.json import JSONResponse, parse_body, parse_optional_body
from service.models import Message
from service.query_string import integer, refuse_unknown

MAX_HOURS = 744  # 31 days: what the catalog keeps


def gate(request: Request) -> Gate:
    g: Gate = request.app.state.gate
    return g


async def create_key(request: Request) -> Response:
    body = await parse_body(request, CreateApiKey)
    key, record = await run_in_threadpool(
        gate(request).keys.create, body.name, from_specs(body.permissions), body.expires_at
    )
    created: ApiKeyCreated = {"api_key": key, "key_info": key_ops.info(record)}
    return JSONResponse(created)


async def list_keys(request: Request) -> Response:
    records = await run_in_threadpool(gate(request).keys.all)
    return JSONResponse([key_ops.info(r) for r in records])


async def get_key(request: Request) -> Response:
    record = await run_in_threadpool(gate(request).keys.get, request.path_params["key_id"])
    return JSONResponse(key_ops.info(record))


async def revoke_key(request: Request) -> Response:
    body = await parse_body(request, RevokeApiKey)
    keys = gate(request).keys
    caller = principal_of(request).key_id
    record = await run_in_threadpool(keys.revoke, body.key_id, body.key_prefix, caller)
    message: Message = {"message": f"API key {record.key_prefix}... has been revoked"}
    return JSONResponse(message)


async def rotate_key(request: Request) -> Response:
    await parse_optional_body(request, NoBody)
    key, record = await run_in_threadpool(gate(request).keys.rotate, request.path_params["key_id"])
    created: ApiKeyCreated = {"api_key": key, "key_info": key_ops.info(record)}
    return JSONResponse(created)


async def key_usage(request: Request) -> Response:
    hours = _hours(request)
    g = gate(request)
    key_id = request.path_params["key_id"]
    end = dt.datetime.now(dt.UTC)
    start = end - dt.timedelta(hours=hours)

    def usage() -> ApiKeyUsage:
        g.keys.get(key_id)  # 404 for an unknown key
        counts = g.usage.usage(key_id, int(start.timestamp() // 60))
        by_endpoint: defaultdict[str, int] = defaultdict(int)
        by_status: defaultdict[str, int] = defaultdict(int)
        total_ms = 0.0
        for c in counts:
            by_endpoint[c.endpoint] += c.requests
            by_status[str(c.status)] += c.requests
            total_ms += c.total_ms
        total = sum(by_endpoint.values())
        return {
            "key_id": key_id,
            "endpoint_counts": dict(by_endpoint),
            "status_code_counts": dict(by_status),
            "total_requests": total,
            "avg_response_time_ms": round(total_ms / total, 3) if total else 0.0,
            "period_start": key_ops.iso_time(start),
            "period_end": key_ops.iso_time(end),
        }

    return JSONResponse(await run_in_threadpool(usage))


async def verify(request: Request) -> Response:
    principal = principal_of(request)
    verified: Verified = {
        "valid": True,
        "key_id": principal.key_id,
        "name": principal.name,
        "permissions": [p.info() for p in principal.permissions],
    }
    return JSONResponse(verified)


def _hours(request: Request) -> int:
    refuse_unknown(request.query_params, ("hours",))
    return integer(request.query_params, "hours", 24, maximum=MAX_HOURS, minimum=1)
