"""The Starlette application: routes, middleware and error handlers around one ``Database``.

>>> import engine
>>> from service import create_app
>>> db = engine.connect(data_dir="/tmp/tessera-demo")      # doctest: +SKIP
>>> app = create_app(db, db.settings)                       # doctest: +SKIP

Every success is 200, creating POSTs included (``POST /tables``, ``/rows``, ``/rows/batch``, ``/computed-columns``,
``/udfs``), as the original Pixeltable server answers and its clients' tests expect. An empty or unparsable body
where one is needed is 400 ``malformed_json``, a body that is not declared JSON 415 ``unsupported_media_type``; an
unknown query parameter is 400 ``invalid_parameter``.

Middleware, outermost first (``service.middleware``): request id and last-resort error handling, the ``Host`` check
(open mode, or ``allowed_hosts``), CORS and the error responses it decorates (only with ``cors_origins``),
authentication and the general rate limit (``service.auth``), the body's media type, the body-size limit. Engine calls block, so the endpoints run them in
Starlette's thread pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from engine import Database, Settings
from service import batch, computed, health, jobs, rows, tables, transfer, udfs
from service.auth import routes as auth_routes
from service.auth.gate import ROUTE_KEY, Gate
from service.auth.middleware import AuthMiddleware
from service.auth.policy import public_paths, rule_for
from service.docs import ASSETS_PATH, docs_routes
from service.errors import exception_handlers
from service.middleware import (
    BodyLimitMiddleware,
    CorsMiddleware,
    ErrorResponseMiddleware,
    MediaTypeMiddleware,
    RequestContextMiddleware,
    TrustedHostsMiddleware,
    cors_options,
    cors_origins,
    trusted_hosts,
)
from service.openapi import document_bytes

API_PREFIX = "/api/v1"


Endpoint = Callable[[Request], Awaitable[Response]]


def resource(path: str, **handlers: Endpoint) -> Route:
    """One route per path, dispatching on the method, so a 405 lists every allowed method in ``Allow``. Each
    method's rule in ``service.auth.policy`` (KeyError at build time if one is missing) is checked before its
    handler runs."""
    by_method = {method.upper(): handler for method, handler in handlers.items()}
    rules = {method: rule_for(method, path) for method in by_method}

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        request.scope[ROUTE_KEY] = f"{method} {request.scope.get('root_path', '')}{path}"
        await request.app.state.gate.check(request, rules[method])
        return await by_method[method](request)

    return Route(path, endpoint, methods=list(by_method))


def _health_routes() -> list[BaseRoute]:
    return [resource("/health", get=health.health), resource("/ready", get=health.ready)]


def api_routes() -> list[BaseRoute]:
    """The routes under ``/api/v1``; fixed paths come before ``/rows/{row_id}``."""
    t = "/tables/{table}"
    return [
        *_health_routes(),
        resource("/tables", get=tables.list_tables, post=tables.create_table),
        resource(t, get=tables.get_table, delete=tables.drop_table),
        resource(f"{t}/query", post=rows.query_rows),
        resource(f"{t}/rows/count", get=rows.count_rows),
        resource(f"{t}/rows/batch", post=rows.insert_batch),
        resource(
            f"{t}/rows", get=rows.list_rows, post=rows.insert_row, patch=rows.update_rows, delete=rows.delete_rows
        ),
        resource(t + "/rows/{row_id}", get=rows.get_row, put=rows.update_row, delete=rows.delete_row),
        resource(f"{t}/computed-columns", get=computed.list_computed_columns, post=computed.add_computed_column),
        resource(
            t + "/computed-columns/{column}", get=computed.get_computed_column, delete=computed.drop_computed_column
        ),
        resource(t + "/computed-columns/{column}/recompute", post=computed.recompute),
        resource(f"{t}/udfs", get=udfs.list_udfs, post=udfs.register_udf),
        resource(t + "/udfs/{name}", get=udfs.get_udf, put=udfs.replace_udf, delete=udfs.drop_udf),
        resource(t + "/udfs/{name}/execute", post=udfs.execute_udf),
        resource("/batch/operations", post=batch.batch_operations),
        resource("/batch/jobs", get=jobs.list_jobs, post=jobs.create_job),
        resource("/batch/jobs/{job_id}", get=jobs.get_job, delete=jobs.delete_job),
        resource("/batch/jobs/{job_id}/cancel", post=jobs.cancel_job),
        resource(transfer.IMPORT_PATH, post=transfer.import_data),
        resource("/batch/export", post=transfer.export_data),
        resource("/batch/exports/{job_id}/download", get=transfer.download_export),
        resource("/batch/stream/{table}", post=transfer.stream_rows),
        *_auth_routes(),
    ]


def _auth_routes() -> list[BaseRoute]:
    k = "/auth/api-keys"
    return [
        resource(k, get=auth_routes.list_keys, post=auth_routes.create_key),
        resource(f"{k}/revoke", post=auth_routes.revoke_key),
        resource(k + "/{key_id}", get=auth_routes.get_key),
        resource(k + "/{key_id}/rotate", post=auth_routes.rotate_key),
        resource(k + "/{key_id}/usage", get=auth_routes.key_usage),
        resource("/auth/verify", get=auth_routes.verify),
    ]


def _middleware(settings: Settings, gate: Gate) -> list[Middleware]:
    middleware = [Middleware(RequestContextMiddleware)]
    hosts = trusted_hosts(settings)
    if hosts is not None:
        middleware.append(Middleware(TrustedHostsMiddleware, allowed_hosts=hosts))
    origins = cors_origins(settings)
    if origins:
        middleware += [Middleware(CorsMiddleware, **cors_options(origins)), Middleware(ErrorResponseMiddleware)]
    public = public_paths(("", API_PREFIX))
    middleware.append(Middleware(AuthMiddleware, gate=gate, public=public, public_prefix=f"{ASSETS_PATH}/"))
    upload = f"{API_PREFIX}{transfer.IMPORT_PATH}"  # the one path that takes files, as multipart/form-data
    middleware.append(Middleware(MediaTypeMiddleware, paths={upload: ("multipart/form-data",)}))
    middleware.append(
        Middleware(
            BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes, paths={upload: settings.import_max_bytes}
        )
    )
    return middleware


def create_app(db: Database, settings: Settings) -> Starlette:
    """The REST service over ``db``; ``settings`` decides auth mode, rate limits, trusted hosts, CORS and request
    limits (``ValueError`` for an allowed host or CORS origin that cannot work, or a bad administrator key).
    ``app.state.gate.close()`` writes the last usage counts when the server stops."""
    gate = Gate.of(db, settings)
    app = Starlette(
        routes=[*_health_routes(), *docs_routes(), Mount(API_PREFIX, routes=api_routes())],
        middleware=_middleware(settings, gate),
        exception_handlers=exception_handlers(),
    )
    app.state.db = db
    app.state.settings = settings
    app.state.gate = gate
    document_bytes(app)  # built once; an undocumented route fails here, at start-up
    return app
