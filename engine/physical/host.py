"""The shard host: a Ray actor serving many shards. A thin shell around ``engine.physical.shard``.

It owns two things only: the shards it has loaded, and one writer slot per shard. A writer holds the slot
from ``acquire`` (or ``stage``) until ``finish``; others wait. Coordinators take the slots of a multi-shard write
in one global order, so writers never wait for each other in a cycle. A writer that does not finish within the
lease (its coordinator died) is aborted, so a crashed client cannot wedge a shard.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from engine.errors import ShardUnavailable
from engine.expr import udfs
from engine.logical.plan import ReadPlan, ReadResult, ShardOp, ShardSpec, StageResult
from engine.physical.shard import Shard
from engine.storage import catalog

Key = tuple[str, int]


def _history(spec: ShardSpec) -> Any:
    """The shard's log in its table's catalog (None: a spec without one, whose versions are Lance's)."""
    if not spec.catalog:
        return None
    return functools.partial(catalog.read_history, spec.catalog, spec.table_id, spec.shard)


@dataclass
class _Slot:
    cond: threading.Condition = field(default_factory=threading.Condition)
    owner: str | None = None
    since: float = 0.0


class ShardHost:
    def __init__(self, lease_seconds: float = 60.0, udf_runner: tuple[str, dict[str, Any]] | None = None) -> None:
        # Ray sets OMP_NUM_THREADS=1 in actors that reserve no CPU, which shrinks Arrow's pool to one thread;
        # shard work is vectorised Arrow, so give it the machine's cores back.
        pa.set_cpu_count(os.cpu_count() or 1)
        self.lease = lease_seconds
        if udf_runner is not None:  # UDF columns run their code through this (in sandbox worker processes)
            udfs.configure(*udf_runner)
        self._shards: dict[Key, Shard] = {}
        self._slots: dict[Key, _Slot] = {}
        self._mutex = threading.Lock()

    def ping(self) -> bool:
        return True

    def pid(self) -> int:
        return os.getpid()

    def _slot(self, key: Key) -> _Slot:
        with self._mutex:
            return self._slots.setdefault(key, _Slot())

    def _shard(self, spec: ShardSpec, version: int) -> Shard:
        """The loaded shard, or load it at ``version`` (the catalog's) if unknown or behind the catalog."""
        key = (spec.table_id, spec.shard)
        with self._mutex:
            shard = self._shards.get(key)
            # A spec that differs (a computed column added or dropped) reaches the shard through a stage: it
            # becomes the shard's when that stage commits.
            if shard is None or (shard.staged is None and version > shard.version):
                shard = Shard(spec, version, _history(spec))
                self._shards[key] = shard
            return shard

    def acquire(self, table_id: str, shard: int, txn: str, after: object = None) -> None:
        """Wait for the shard's writer slot and take it for ``txn`` (held until ``finish``).

        ``after`` is the result of the coordinator's previous acquire: Ray runs this call only once it exists.
        """
        key = (table_id, shard)
        slot = self._slot(key)
        with slot.cond:
            if slot.owner == txn:
                return
            deadline = time.monotonic() + self.lease
            while slot.owner is not None:
                if time.monotonic() - slot.since > self.lease:
                    self._abort_locked(key, slot.owner)  # its coordinator is gone
                    break
                if time.monotonic() > deadline:
                    raise ShardUnavailable(
                        f"shard {shard} of table {table_id} stayed busy for {self.lease}s", retry_after=1
                    )
                slot.cond.wait(timeout=1.0)
            slot.owner, slot.since = txn, time.monotonic()

    def stage(self, spec: ShardSpec, txn: str, base: int, ops: Sequence[ShardOp], after: object = None) -> StageResult:
        """Apply ``ops`` on top of committed version ``base`` (taking the slot unless ``acquire`` did).

        ``after``: an acquire this stage must follow (see ``Coordinator._acquire``); Ray resolves it first.
        """
        key = (spec.table_id, spec.shard)
        self.acquire(spec.table_id, spec.shard, txn)
        try:
            shard = self._shard(spec, base)
            return shard.stage(txn, base if base > shard.version else None, ops, spec)
        except BaseException:
            self._release(key, txn)
            raise

    def finish(self, table_id: str, shard: int, txn: str, commit: bool) -> None:
        key = (table_id, shard)
        s = self._shards.get(key)
        if s is not None:
            s.commit(txn) if commit else s.abort(txn)
        self._release(key, txn)

    def _abort_locked(self, key: Key, txn: str) -> None:
        s = self._shards.get(key)
        if s is not None:
            s.abort(txn)
            self._shards.pop(key, None)  # reload from the catalog's version on next use
        self._slots[key].owner = None

    def _release(self, key: Key, txn: str) -> None:
        slot = self._slot(key)
        with slot.cond:
            if slot.owner == txn:
                slot.owner = None
                slot.cond.notify_all()

    def read(self, spec: ShardSpec, version: int, plan: ReadPlan) -> ReadResult:
        return self._shard(spec, version).read(version, plan, spec.computed)

    def scan(self, spec: ShardSpec, version: int) -> pa.Table:
        """All rows of a shard at ``version`` (a block of a Ray Dataset)."""
        return self._shard(spec, version).rows_at(version, spec.computed)

    def maintain(self, spec: ShardSpec, version: int, min_fragments: int, keep_from: int) -> bool:
        """Delete Lance versions below ``keep_from``; True if the shard has logged writes to fold into Lance or
        enough small fragments to be worth compacting."""
        key = (spec.table_id, spec.shard)
        slot = self._slot(key)
        with slot.cond:
            if slot.owner is not None:
                return False
            slot.owner, slot.since = "maintenance", time.monotonic()
        try:
            shard = self._shard(spec, version)
            shard.cleanup(keep_from)
            return shard.needs_compaction(min_fragments)
        finally:
            self._release(key, "maintenance")

    def forget(self, table_id: str) -> None:
        with self._mutex:
            for key in [k for k in self._shards if k[0] == table_id]:
                self._shards.pop(key, None)
                self._slots.pop(key, None)
