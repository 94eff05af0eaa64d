"""``engine.connect()`` and the ``Database`` it returns: tables, batches, maintenance.

>>> import engine
>>> db = engine.connect(data_dir="/tmp/tessera-demo")          # doctest: +SKIP
>>> users = db.create_table("users", {"id": "int", "name": "string"}, primary_key="id")  # doctest: +SKIP
>>> users.insert([{"id": 1, "name": "Ada"}])                   # doctest: +SKIP
>>> users.query(where={"id": 1}).to_pylist()                   # doctest: +SKIP
[{'id': 1, 'name': 'Ada'}]

Every write is one atomic transaction over the shards it touches; every read sees one committed version of
each shard, as named together by the catalog.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.client.batch import BatchContext, BatchResult, run_batch
from engine.client.jobs import Jobs
from engine.client.results import MAX_SHARDS
from engine.client.table import Table
from engine.config import Settings
from engine.errors import InvalidRequest
from engine.logical.plan import (
    Compact,
    ShardSpec,
)
from engine.logical.planner import specs_of
from engine.model.names import check_name
from engine.model.schema import build_schema
from engine.physical import runtime
from engine.physical.coordinator import Coordinator, ShardWork, resolve
from engine.physical.derived import DerivedCache
from engine.registry import Registry, UdfLimits, install, uninstall
from engine.storage import lance as storage
from engine.storage.catalog import SqliteCatalog, catalog_path
from engine.storage.records import ShardState, TableRecord, now_iso
from engine.transfer import exporter

log = logging.getLogger(__name__)


def connect(
    data_dir: str | None = None, address: str | None = None, settings: Settings | None = None, **overrides: Any
) -> Database:
    """Open a database: start a local Ray (default) or join ``address`` ("auto", "ray://host:10001").

    Settings come from ``TESSERA_*`` variables, then ``settings``, then keyword overrides.
    """
    base = settings or Settings.from_env()
    changes = {k: v for k, v in {"data_dir": data_dir, "ray_address": address, **overrides}.items() if v is not None}
    return Database(base.with_(**changes))


class Database:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = str(Path(settings.data_dir).absolute())
        Path(self.root).mkdir(parents=True, exist_ok=True)
        # Functions and UDF languages (with the sandbox limits) for this process, until close(); a plugin conflict
        # fails here, before anything starts. The shard hosts build theirs from the same entry points.
        limits = UdfLimits.of(settings)
        self.registry = Registry.load(limits)
        runtime.start(settings.ray_address, settings.num_cpus)
        self.catalog = SqliteCatalog(catalog_path(self.root), busy_timeout=settings.catalog_busy_timeout_seconds)
        hosts = self.catalog.get_meta("hosts")
        if hosts is None:
            hosts = str(settings.hosts or runtime.cluster_cpus())
            self.catalog.set_meta("hosts", hosts)
        pool = runtime.host_pool(self.root, int(hosts), settings.lease_seconds, limits)
        self.coordinator = Coordinator(self.catalog, pool)
        self.default_shards = settings.shards or runtime.cluster_cpus()
        self.derived = DerivedCache()
        self._reconcile()
        self.jobs = Jobs(self)  # background jobs; they run once ``jobs.start()`` or a submission starts them
        self._previous_registry = install(self.registry)
        self._stop = threading.Event()
        self._maintenance: threading.Thread | None = None
        if settings.maintenance_seconds > 0:
            self._maintenance = threading.Thread(target=self._maintain_loop, name="tessera-maintenance", daemon=True)
            self._maintenance.start()

    # -- tables -------------------------------------------------------------------------------------------------
    def create_table(
        self,
        name: str,
        columns: dict[str, Any],
        primary_key: str | Sequence[str] | None = None,
        shards: int | None = None,
    ) -> Table:
        """Create a table. ``columns`` maps names to types (``"int"``) or ``{"type", "nullable"}``."""
        schema = build_schema(
            name, columns, primary_key if primary_key is None or isinstance(primary_key, str) else list(primary_key)
        )
        count = self.default_shards if shards is None else shards
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SHARDS:
            raise InvalidRequest(f"shards must be an integer from 1 to {MAX_SHARDS}", field="shards")
        record = TableRecord(uuid.uuid4().hex, name, schema, count, now_iso(), 0)
        arrow = schema.arrow_schema()
        try:
            versions = [storage.create(storage.shard_uri(self.root, record.id, i), arrow) for i in range(count)]
            self.catalog.create_table(record, versions)
        except BaseException:
            storage.remove(storage.table_dir(self.root, record.id))
            raise
        return Table(self, name)

    def drop_table(self, name: str) -> None:
        record = self.catalog.drop_table(name)
        for host in self.coordinator.hosts:
            host.forget.remote(record.id)
        storage.remove(storage.table_dir(self.root, record.id))

    def batch(
        self,
        operations: Sequence[dict[str, Any]],
        *,
        transaction: bool = True,
        continue_on_error: bool = False,
        idempotency_key: str | None = None,
    ) -> BatchResult:
        """Run insert / update / delete / upsert operations on any tables, by default as one transaction.

        Each operation is ``{"operation", "table", "data" | "where" [+ "set"], "expect_rows"?}`` as in the REST
        API; ``set`` values may be ``{"expr": "balance - 10"}``. A retry with the same ``idempotency_key``
        returns the first result without applying anything twice. See ``engine.client.batch``.
        """
        return run_batch(
            BatchContext.of(self.catalog, self.coordinator, self.root, self.settings),
            operations,
            transaction=transaction,
            continue_on_error=continue_on_error,
            idempotency_key=idempotency_key,
        )

    def list_tables(self) -> list[str]:
        return [r.name for r in self.catalog.list_tables()]

    def table(self, name: str) -> Table:
        check_name(name, "table")
        self.catalog.get_table(name)
        return Table(self, name)

    def __getitem__(self, name: str) -> Table:
        return self.table(name)

    def close(self) -> None:
        self.jobs.close()
        self._stop.set()
        if self._maintenance is not None:
            self._maintenance.join(timeout=5)
        uninstall(self.registry, self._previous_registry)
        self.registry.close()  # its sandbox workers stop (they start again if something still runs a UDF)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------------------------
    def _resolve(self, name: str) -> tuple[TableRecord, list[ShardState], tuple[ShardSpec, ...]]:
        record, states = self.catalog.read_table(name)
        return record, states, specs_of(record, self.root)

    def _reconcile(self) -> None:
        """Remove the data of tables the catalog does not name (dropped, or created by a crashed request).

        Another process may be creating a table right now: its data is written before the catalog names it. So a
        directory is removed only once nothing in it changed for ``lease_seconds`` (a create is long done by
        then), and the catalog is read after the directories are listed (a table named meanwhile is known)."""
        found = storage.list_table_dirs(self.root)
        known = {r.id for r in self.catalog.list_tables()}
        for table_id in found:
            path = storage.table_dir(self.root, table_id)
            if table_id not in known and _idle_seconds(path) > self.settings.lease_seconds:
                storage.remove(path)

    def _maintain_loop(self) -> None:
        while not self._stop.wait(self.settings.maintenance_seconds):
            try:
                self.maintain()
            except Exception:
                log.exception("background maintenance failed")

    def maintain(self) -> int:
        """Clean up versions older than the retention and expired export files, fold shards' logged writes into Lance and compact shards with
        many small fragments; returns the shards folded or compacted."""
        compacted = 0
        s = self.settings
        self.catalog.prune_keys(s.idempotency_ttl_hours * 3600)  # Idempotency-Keys past their time to live
        exporter.sweep(self.root)  # export files past their expires_at (their downloads answer 410)
        for record in self.catalog.list_tables():
            specs = specs_of(record, self.root)
            keep = self.catalog.prune_log(record.id, s.version_retention_seconds)
            states = self.catalog.snapshot(record.id)
            refs = [
                self.coordinator.host(spec.table_id, spec.shard).maintain.remote(
                    spec, st.version, s.compact_min_fragments, first
                )
                for spec, st, first in zip(specs, states, keep, strict=True)
            ]
            for spec, ref in zip(specs, refs, strict=True):
                if resolve(ref):
                    self.coordinator.run([ShardWork(spec, (Compact(),))])
                    compacted += 1
        return compacted


def _idle_seconds(path: str) -> float:
    """Seconds since anything in a table's directory (itself, its shards' datasets, their top entries) last changed."""
    try:
        root = Path(path)
        entries = [root, *root.iterdir(), *(e for d in root.iterdir() if d.is_dir() for e in d.iterdir())]
        return time.time() - max(e.stat().st_mtime for e in entries)
    except OSError:  # removed meanwhile (a drop): nothing to do
        return 0.0
