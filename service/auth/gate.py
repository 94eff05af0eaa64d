"""The gate every request passes: who it is (authentication), whether it may (the route's rule) and whether it
is within its key's rate limits. One per app, at ``app.state.gate``.

``AuthMiddleware`` (``service.auth.middleware``) authenticates and applies the general limit to every request
but the public ones; ``check`` runs in each route before its handler (``service.app.resource``), with the route's
rule from ``service.auth.policy``. In open mode a request without a key is the local administrator: not limited,
not counted. Every presented key is checked, limited and counted, administrators' keys included.
"""

from __future__ import annotations

import math
import time

import orjson
from starlette.datastructures import Headers
from starlette.requests import Request

from engine import Database, Settings
from engine.storage.api_keys import ApiKeyStore
from service.auth.keys import ApiKeys, load_secret, presented_key
from service.auth.limits import Decision, KeyLimits, LimitConfig, LimitName, tightest
from service.auth.permissions import ANONYMOUS, Principal
from service.auth.policy import Rule, authorize
from service.auth.usage import UsageRecorder
from service.errors import RateLimited, Unauthorized

PRINCIPAL_KEY = "tessera.principal"  # where the middleware leaves the request's Principal in the ASGI scope
LIMIT_KEY = "tessera.rate_limit"  # the tightest rate-limit Decision so far, for the X-RateLimit-* headers
ROUTE_KEY = "tessera.route"  # "GET /api/v1/tables/{table}", set by the route: what usage counts by


class Gate:
    def __init__(self, keys: ApiKeys, limits: KeyLimits | None, usage: UsageRecorder, settings: Settings) -> None:
        self.keys = keys
        self.limits = limits
        self.usage = usage
        self.open_mode = settings.auth == "open"
        c = limits.config if limits is not None else LimitConfig()
        self._described: dict[str, str] = {
            "requests": f"{c.requests_per_minute} requests per minute (bursts of {c.burst})",
            "batch": f"{c.batch_per_minute} batch operations per minute",
            "jobs": f"{c.jobs_per_hour} job creations per hour",
            "streams": f"{c.concurrent_streams} concurrent streams",
        }

    @classmethod
    def of(cls, db: Database, settings: Settings) -> Gate:
        store = ApiKeyStore(db.catalog.file)
        keys = ApiKeys(store, load_secret(db.root))
        if settings.admin_key:
            keys.use_config_key(settings.admin_key)
        limits = None
        if settings.rate_limits == "on":
            limits = KeyLimits(
                LimitConfig(
                    requests_per_minute=settings.rate_limit_requests_per_minute,
                    burst=settings.rate_limit_burst,
                    batch_per_minute=settings.rate_limit_batch_per_minute,
                    jobs_per_hour=settings.rate_limit_jobs_per_hour,
                    concurrent_streams=settings.max_concurrent_streams,
                )
            )
        usage = UsageRecorder(store, settings.usage_flush_seconds)
        usage.start()
        return cls(keys, limits, usage, settings)

    def close(self) -> None:
        self.usage.close()

    def principal(self, headers: Headers) -> Principal:
        """The request's principal; Unauthorized for a missing key (required mode) or a bad one (any mode)."""
        key = presented_key(headers)
        if key is None:
            if self.open_mode:
                return ANONYMOUS
            raise Unauthorized()
        return self.keys.authenticate(key)

    def take(self, principal: Principal, name: LimitName) -> Decision | None:
        """Count a request against one of the key's limits (None: no limit applies)."""
        if self.limits is None or principal.key_id is None:
            return None
        return self.limits.take(principal.key_id, name)

    def refuse(self, decision: Decision) -> RateLimited:
        return RateLimited(decision.name, self._described[decision.name], decision.retry_after)

    async def check(self, request: Request, rule: Rule) -> None:
        """Before a route's handler: Forbidden if the principal may not, RateLimited if past the route's limit."""
        if rule.kind == "public":
            return
        principal: Principal | None = request.scope.get(PRINCIPAL_KEY)
        if principal is None:  # the middleware always sets it for routes that are not public
            raise Unauthorized()
        table = await _table(request, rule)
        authorize(principal, rule, request, table, self.open_mode)
        if rule.limit is not None:
            decision = self.take(principal, rule.limit)  # type: ignore[arg-type]
            request.scope[LIMIT_KEY] = tightest([request.scope.get(LIMIT_KEY), decision])
            if decision is not None and not decision.allowed:
                raise self.refuse(decision)


def principal_of(request: Request) -> Principal:
    """The principal the request acts as (set by the middleware; the anonymous administrator on public paths)."""
    principal: Principal | None = request.scope.get(PRINCIPAL_KEY)
    return ANONYMOUS if principal is None else principal


def rate_limit_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    reset = math.ceil(time.time() + decision.reset_after)
    return [
        (b"x-ratelimit-limit", str(decision.limit).encode()),
        (b"x-ratelimit-remaining", str(max(0, decision.remaining)).encode()),
        (b"x-ratelimit-reset", str(reset).encode()),
    ]


async def _table(request: Request, rule: Rule) -> str | None:
    if rule.table == "path":
        return request.path_params.get("table")
    if rule.table == "body":  # a create: the new table's name; a body that does not parse is the handler's 400/422
        try:
            name = orjson.loads(await request.body()).get("name")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        return name if isinstance(name, str) else None
    return None
