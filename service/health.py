"""Liveness and readiness: ``GET /health`` and ``GET /ready`` (also under ``/api/v1``), open in every auth mode."""

from __future__ import annotations

import importlib.metadata

import ray
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from engine import Database
from service.context import database
from service.errors import NotReady
from service.json import JSONResponse
from service.models import Health

PING_TIMEOUT_SECONDS = 2.0


def _version() -> str:
    try:
        return importlib.metadata.version("tessera")
    except importlib.metadata.PackageNotFoundError:
        return "0.1.0"


VERSION = _version()


def _health(db: Database) -> Health:
    return {
        "status": "healthy",
        "version": VERSION,
        "tables": len(db.list_tables()),
        "ray": "connected" if ray.is_initialized() else "disconnected",
    }


def _ping(db: Database) -> None:
    try:
        ray.get([host.ping.remote() for host in db.coordinator.hosts], timeout=PING_TIMEOUT_SECONDS)
    except Exception as exc:  # timeout, dead actor, Ray gone: all mean "not yet"
        raise NotReady(f"Engine not ready: shard hosts did not answer ({type(exc).__name__})", retry_after=1) from exc


async def health(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_health, database(request)))


async def ready(request: Request) -> Response:
    await run_in_threadpool(_ping, database(request))
    return JSONResponse({"status": "ready"})
