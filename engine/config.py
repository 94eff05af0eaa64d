"""Settings: one frozen object, built from ``TESSERA_*`` variables and explicit overrides at the composition root."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args, get_origin, get_type_hints

AuthMode = Literal["open", "required"]
RateLimitMode = Literal["on", "off"]
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    data_dir: str = "./tessera-data"
    ray_address: str | None = None  # None: start a local Ray; "auto" or "ray://host:port": join a cluster
    shards: int = 0  # default shards per table; 0: one per CPU of the cluster
    host: str = "127.0.0.1"
    port: int = 8000
    auth: AuthMode = "open"
    admin_key: str | None = field(default=None, repr=False)  # a secret: kept out of logs and tracebacks
    num_cpus: int | None = None  # CPUs of a locally started Ray (None: all)
    hosts: int = 0  # shard-host actors; 0: one per CPU of the cluster
    # Host names the service answers to besides loopback names and its own address (a DNS-rebinding guard:
    # always on in open mode, on in required mode once names are given); ``*.example.com`` covers subdomains.
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API; none: CORS stays off
    # API keys in open mode may be refused on a non-loopback --host; this says the operator means it.
    allow_open_remote: bool = False
    # Per-key rate limits (0 disables one; rate_limits="off" disables all, for benchmarks). Per server process.
    rate_limits: RateLimitMode = "on"
    rate_limit_requests_per_minute: int = 1200
    rate_limit_burst: int = 50
    rate_limit_batch_per_minute: int = 100
    rate_limit_jobs_per_hour: int = 50  # job creation, imports and exports included
    max_webhooks_per_key: int = 10
    max_concurrent_streams: int = 10  # per key
    usage_flush_seconds: float = 5.0  # how often per-key usage counts are written to the catalog
    max_body_bytes: int = 64 * 1024 * 1024
    max_rows_per_request: int = 100_000
    # A page past the first (offset > 0) must end within this many rows: every shard sends offset + limit rows to
    # find it (Elasticsearch's max_result_window). Pages past the end are empty whatever the offset.
    max_query_window: int = 100_000
    # Ordering by aggregate or window values sorts the matching rows' key and sort columns in the reading process;
    # more matching rows than this is refused (400 query_too_large).
    max_query_rows: int = 1_000_000
    lease_seconds: float = 60.0  # a writer that holds a shard longer than this without finishing is aborted
    catalog_busy_timeout_seconds: float = 30.0  # how long a catalog write waits for SQLite's lock before 503 busy
    idempotency_ttl_hours: float = 24.0  # how long an Idempotency-Key's answer is kept and replayed
    maintenance_seconds: float = 30.0  # how often background compaction and cleanup run; 0 disables
    compact_min_fragments: int = 16
    version_retention_seconds: float = 300.0  # versions older than this can no longer be read (their files go)
    # UDF sandbox limits per worker call, a call being one batch of at most udf_batch_rows rows, one registration
    # check or one execute; handed to the UDF languages the plugin registry provides (engine.registry.UdfLimits).
    udf_cpu_seconds: float = 2.0
    udf_wall_seconds: float = 5.0
    udf_memory_mb: int = 512  # address space of a worker process
    udf_workers: int = 2  # sandbox worker processes per process that runs UDFs (each shard host, the server)
    udf_batch_rows: int = 16_384
    # Background jobs (engine.jobs): Ray worker actors per process that runs jobs (0: this process only queues
    # them), and per-type limits across every process on the data directory ("table_recompute=1,custom=4").
    job_workers: int = 2
    job_type_limits: tuple[str, ...] = ()
    job_retention_days: float = 7.0  # finished jobs older than this are pruned, with their logs
    job_cancel_grace_seconds: float = 5.0  # a running job asked to stop (cancel, timeout) is forced after this
    job_heartbeat_seconds: float = 2.0  # how often a process marks its running jobs alive
    job_stale_seconds: float = 30.0  # a running job without a heartbeat for this long has lost its worker

    # Imports and exports (engine.transfer). file:// sources must be under import_dir (None: none allowed);
    # http(s) sources are fetched through engine.fetch, which refuses private, loopback, link-local and metadata
    # addresses unless the host is in fetch_allowed_hosts.
    import_dir: str | None = None
    import_max_bytes: int = 16 * 1024**3  # a source as read (compressed), uploads included
    import_max_decompressed_bytes: int = 64 * 1024**3  # a gzip or zip source once decompressed (zip bombs)
    fetch_allowed_hosts: tuple[str, ...] = ()
    fetch_timeout_seconds: float = 30.0  # connect and between bytes, for import downloads
    export_ttl_hours: float = 24.0  # an export's file is downloadable this long, then 410 and deleted

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """``TESSERA_<FIELD>`` for every field; explicit ``overrides`` (e.g. command-line flags) win."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        hints = get_type_hints(cls)
        for f in fields(cls):
            raw = env.get(f"TESSERA_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            if get_origin(hints[f.name]) is tuple:
                values[f.name] = cls.split_list(raw)
                continue
            kinds = set(get_args(hints[f.name])) or {hints[f.name]}
            if bool in kinds:
                if raw.lower() not in _TRUE | _FALSE:
                    raise ValueError(f"TESSERA_{f.name.upper()}={raw!r} is not a yes/no value (1, 0, true, false)")
                values[f.name] = raw.lower() in _TRUE
                continue
            try:
                values[f.name] = int(raw) if int in kinds else float(raw) if float in kinds else raw
            except ValueError:
                raise ValueError(f"TESSERA_{f.name.upper()}={raw!r} is not a number") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        if settings.auth not in ("open", "required"):
            raise ValueError(f"auth must be 'open' or 'required', not {settings.auth!r}")
        if settings.rate_limits not in ("on", "off"):
            raise ValueError(f"rate_limits must be 'on' or 'off', not {settings.rate_limits!r}")
        settings.job_limits()  # a malformed TESSERA_JOB_TYPE_LIMITS fails at start-up, named
        return settings

    @staticmethod
    def split_list(raw: str) -> tuple[str, ...]:
        """A comma-separated setting (``"a.example, b.example"``) as its non-empty items."""
        return tuple(item.strip() for item in raw.split(",") if item.strip())

    def udf_limits(self) -> dict[str, Any]:
        """The UDF languages' limits, as the keyword arguments of ``engine.registry.UdfLimits``."""
        return {
            "cpu_seconds": self.udf_cpu_seconds,
            "wall_seconds": self.udf_wall_seconds,
            "memory_mb": self.udf_memory_mb,
            "workers": self.udf_workers,
            "batch_rows": self.udf_batch_rows,
        }

    def job_limits(self) -> dict[str, int]:
        """``job_type_limits`` as {job type: most running at once}; ValueError names a malformed item."""
        limits = {}
        given = self.job_type_limits
        for item in self.split_list(given) if isinstance(given, str) else given:  # connect(job_type_limits="a=1")
            name, _, count = item.partition("=")
            if not name.strip() or not count.strip().isdigit():
                raise ValueError(f"job_type_limits item {item!r} is not 'job_type=N' (N a whole number)")
            limits[name.strip()] = int(count)
        return limits

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)
