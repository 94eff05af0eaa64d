"""The shard host: a Ray actor serving many shards. A thin shell around ``engine.physical.shard``.

It owns two things only: the shards it has loaded, and one writer slot per shard. A writer holds the slot
from ``acquire`` (or ``stage``) until ``finish``; others wait. Coordinators take the slots of a multi-shard write
in one global order, so writers never wait for each other in a cycle. A writer that does not finish within the
lease (its coordinator died) is aborted, so a crashed client cannot wedge a shard.

An aborted writer may still be running (a slow stage, not a dead one), so every grant of a slot carries a fencing
token, larger than any earlier grant's. A stage gets its shard only while its grant is current, takes each Lance
commit under the slot's lock after checking its token (so the next grant waits for a commit under way, and a
revoked stage cannot write), and is refused at its end if it was revoked meanwhile. The aborted writer's shard
object is dropped with the abort, so what it still computes touches nothing the next writer sees. The token goes
back in the ``StageResult`` and on into the catalog commit, which refuses a token older than the shard's last.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from engine.errors import LeaseExpired, ShardUnavailable
from engine.logical.plan import Insert, ReadPlan, ReadResult, ShardOp, ShardSpec, Spooled, StageResult
from engine.physical import faults
from engine.physical.shard import Shard
from engine.registry import Registry, UdfLimits, install
from engine.storage.history import HistoryReaders

Key = tuple[str, int]
CURSOR_IDLE_SECONDS = 600.0  # a cursor its reader stopped fetching from (a dead stream or export) is dropped


def _history(spec: ShardSpec, readers: HistoryReaders) -> Any:
    """The shard's log in its table's catalog (None: a spec without one, whose versions are Lance's)."""
    if not spec.catalog:
        return None
    return functools.partial(readers.read, spec.catalog, spec.table_id, spec.shard)


@dataclass
class _Slot:
    cond: threading.Condition = field(default_factory=threading.Condition)
    owner: str | None = None
    since: float = 0.0
    token: int = 0  # the fencing token of the latest grant

    def grant(self, owner: str) -> int:
        """Give the slot to ``owner`` (``cond`` held); returns the grant's fencing token.

        Tokens are wall-clock nanoseconds, bumped past the previous grant's: they increase with every grant, and
        also across a restart of the host (which starts its slots afresh) unless the clock steps back further than
        a restart takes. A per-slot counter would restart at 1, below tokens the catalog has already stored.
        """
        self.owner, self.since = owner, time.monotonic()
        self.token = max(self.token + 1, time.time_ns())
        return self.token


@dataclass
class _Cursor:
    table: pa.Table
    used: float  # time.monotonic() of the last fetch


@dataclass(frozen=True)
class _Fence:
    """One stage's grant of a shard's writer slot, checked before it touches the shard or writes Lance."""

    slot: _Slot
    token: int
    spec: ShardSpec
    lease: float
    holds: faults.Holds

    def check(self) -> None:
        """Raise LeaseExpired if the slot was granted again since (``slot.cond`` held)."""
        if self.slot.token != self.token:
            raise LeaseExpired(
                self.spec.table,
                self.spec.shard,
                f"it held the shard's writer slot past the lease ({self.lease:g} s) and the slot went to the next writer",
            )

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Around one Lance commit: only while the grant is current, and no new grant until the commit is done."""
        self.holds.reach("before_lance_commit")  # a test can hold the stage here (outside the lock)
        with self.slot.cond:
            self.check()
            yield


def _unspooled(op: ShardOp) -> ShardOp:
    """An insert whose rows wait in a spool file, with the rows mapped from it (the page cache holds them)."""
    if isinstance(op, Insert) and isinstance(op.rows, Spooled):
        with pa.memory_map(op.rows.path) as source:
            return dataclasses.replace(op, rows=pa.ipc.open_file(source).read_all())
    return op


class ShardHost:
    def __init__(self, lease_seconds: float = 60.0, udf_limits: UdfLimits | None = None) -> None:
        # Ray sets OMP_NUM_THREADS=1 in actors that reserve no CPU, which shrinks Arrow's pool to one thread;
        # shard work is vectorised Arrow, so give it the machine's cores back.
        pa.set_cpu_count(os.cpu_count() or 1)
        self.lease = lease_seconds
        # This process's functions and UDF languages, from the same entry points as the driver's (a Ray worker
        # inherits the environment, PYTHONPATH included, of the Ray that started it): UDF columns run through them.
        self.registry = Registry.load(udf_limits)
        install(self.registry)
        self._shards: dict[Key, Shard] = {}
        self._slots: dict[Key, _Slot] = {}
        self._mutex = threading.Lock()
        self.faults = faults.Holds()
        self._catalogs = HistoryReaders()  # connections to the catalogs its shards load from
        self._cursors: dict[str, _Cursor] = {}

    def ping(self) -> bool:
        return True

    def hold(self, step: str, path: str) -> None:
        """Test-only: the next stage to reach ``step`` (``before_lance_commit``) waits while file ``path`` exists."""
        self.faults.arm(step, path)

    def pid(self) -> int:
        return os.getpid()

    def plugins(self) -> dict[str, list[dict[str, str | None]]]:
        """What this host's registry holds (``Registry.describe``): a plugin on the driver's path is here too."""
        return self.registry.describe()

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
                shard = Shard(spec, version, _history(spec, self._catalogs))
                self._shards[key] = shard
            return shard

    def acquire(self, table_id: str, shard: int, txn: str, after: object = None) -> int:
        """Wait for the shard's writer slot and take it for ``txn`` (held until ``finish``); returns the grant's
        fencing token.

        ``after`` is the result of the coordinator's previous acquire: Ray runs this call only once it exists.
        """
        key = (table_id, shard)
        slot = self._slot(key)
        with slot.cond:
            if slot.owner == txn:
                return slot.token
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
            return slot.grant(txn)

    def stage(self, spec: ShardSpec, txn: str, base: int, ops: Sequence[ShardOp], after: object = None) -> StageResult:
        """Apply ``ops`` on top of committed version ``base`` (taking the slot unless ``acquire`` did).

        ``after``: an acquire this stage must follow (see ``Coordinator._acquire``); Ray resolves it first.
        The result carries the grant's fencing token, for the catalog commit.
        """
        key = (spec.table_id, spec.shard)
        token = self.acquire(spec.table_id, spec.shard, txn)
        try:
            fence = _Fence(self._slot(key), token, spec, self.lease, self.faults)
            with fence.slot.cond:  # the grant and the shard object together: a revoked stage never gets the next
                fence.check()  # writer's shard (an abort drops the shard object its writer staged on)
                shard = self._shard(spec, base)
            ops = [_unspooled(op) for op in ops]
            result = shard.stage(txn, base if base > shard.version else None, ops, spec, fence.guard)
            with fence.slot.cond:
                fence.check()  # revoked while it ran: what it staged must not reach the catalog
            return dataclasses.replace(result, token=token)
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
            # Reload from the catalog's version on next use. The aborted stage, if it is still running, keeps this
            # object: nothing it does from now on reaches the next writer's shard (and its fence refuses Lance).
            self._shards.pop(key, None)
        self._slots[key].owner = None

    def _release(self, key: Key, txn: str) -> None:
        slot = self._slot(key)
        with slot.cond:
            if slot.owner == txn:
                slot.owner = None
                slot.cond.notify_all()

    def read(self, spec: ShardSpec, version: int, plan: ReadPlan) -> ReadResult:
        return self._shard(spec, version).read(version, plan, spec.computed)

    # -- cursors: a read's result handed out page by page (streams and exports) --------------------------------
    def open_cursor(self, spec: ShardSpec, version: int, plan: ReadPlan) -> tuple[str, int, int]:
        """Run ``plan`` on the shard at ``version`` and keep its result for ``fetch``: (cursor id, rows, bytes).

        The result is the shard's rows or slices and a filtered copy of them: one version held whatever writers
        do meanwhile. Cursors idle for ``CURSOR_IDLE_SECONDS`` are dropped (their reader went away)."""
        result = self.read(spec, version, plan)
        table = result.table if result.table is not None else pa.table({})
        cursor = uuid.uuid4().hex
        now = time.monotonic()
        with self._mutex:
            for stale in [c for c, held in self._cursors.items() if now - held.used > CURSOR_IDLE_SECONDS]:
                del self._cursors[stale]
            self._cursors[cursor] = _Cursor(table, now)
        return cursor, table.num_rows, table.nbytes

    def fetch(self, cursor: str, start: int, count: int) -> pa.Table:
        """Rows ``start`` to ``start + count`` of a cursor's result (zero-copy slices of what it holds)."""
        held = self._cursors.get(cursor)
        if held is None:
            raise ShardUnavailable("the read's cursor is gone (its host restarted or it sat idle); read again")
        held.used = time.monotonic()
        return held.table.slice(start, count)

    def close_cursor(self, cursor: str) -> None:
        with self._mutex:
            self._cursors.pop(cursor, None)

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
            slot.grant("maintenance")
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
