"""The write coordinator: every write, on one shard or many tables, is one transaction.

1. take the writer slot of every shard involved, in one global order (so concurrent writers never wait for
   each other in a cycle), then stage the operations on all of them in parallel;
2. publish all new shard versions with one catalog compare-and-swap;
3. tell the shards the outcome. Any failure before 2 aborts every staged shard: nothing is visible.

A conflict (a shard moved on under us) or a host that died mid-stage aborts and retries the whole transaction:
nothing was applied, so a retry is safe. A write fenced off for holding a shard past its lease (``LeaseExpired``:
a shard refused its stage, or the catalog its commit, by the fencing token of its slot grant) is aborted and
reported, not retried.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import ray
from ray.exceptions import RayActorError, RayTaskError

from engine.errors import CommitConflict, EngineError, ShardUnavailable, TableNotFound, TesseraError, UserError
from engine.logical.plan import ReadPlan, ReadResult, ShardOp, ShardSpec, StageResult
from engine.physical import faults
from engine.storage.catalog import IdempotencyRecord, SqliteCatalog
from engine.storage.records import SchemaChange, ShardChange

log = logging.getLogger(__name__)
T = TypeVar("T")
Check = Callable[[list[StageResult]], IdempotencyRecord | None]
Progress = Callable[[int, int], None]  # (shards staged, shards in all); raising from it aborts the write

try:  # absent in some Ray versions
    from ray.exceptions import ActorUnavailableError
except ImportError:  # pragma: no cover
    ActorUnavailableError = RayActorError  # type: ignore[misc,assignment]


@dataclass(frozen=True)
class ShardWork:
    spec: ShardSpec
    ops: tuple[ShardOp, ...]


def resolve(ref: Any) -> Any:
    """``ray.get`` with Ray's wrappers taken off: our own errors come back as themselves."""
    try:
        return ray.get(ref)
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, TesseraError):
            raise cause from None
        raise EngineError(f"shard operation failed: {cause or exc}") from exc
    except (RayActorError, ActorUnavailableError) as exc:
        raise ShardUnavailable("a shard host was unavailable; it is being restarted", retry_after=1) from exc


def gather(refs: Sequence[Any]) -> tuple[list[Any], TesseraError | None]:
    """Resolve every reference (so no failed result is left unread), returning the results and the first error."""
    results, error = [], None
    for ref in refs:
        try:
            results.append(resolve(ref))
        except TesseraError as exc:
            results.append(None)
            error = error or exc
    return results, error


class Coordinator:
    def __init__(
        self, catalog: SqliteCatalog, hosts: Sequence[Any], retries: int = 4, retry_seconds: float = 60.0
    ) -> None:
        self.catalog = catalog
        self.hosts = list(hosts)
        self.retries = retries
        self.retry_seconds = retry_seconds
        self.faults = faults.Holds()  # test-only pauses at the fault points (``faults.STEPS``)

    def host(self, table_id: str, shard: int) -> Any:
        """A table's shards go round-robin over the hosts from a per-table offset: spread evenly, stable."""
        return self.hosts[(zlib.crc32(table_id.encode()) + shard) % len(self.hosts)]

    def run(
        self,
        work: Sequence[ShardWork],
        check: Check | None = None,
        schema: SchemaChange | None = None,
        progress: Progress | None = None,
    ) -> list[StageResult]:
        """Apply all work atomically; returns one StageResult per ShardWork, in order.

        ``check`` sees the staged results before the commit; raising from it aborts everything (a batch's
        ``expect_rows``); a record it returns is committed in the same catalog transaction (Idempotency-Key).
        A failing shard's error carries ``work_index`` (and the shard's ``op_position``). ``schema`` changes the
        table's schema in the same commit (adding, dropping or recomputing a computed column). ``progress`` is
        called as each shard's stage arrives (a job's progress and cancel check); what it raises aborts the write
        once every stage has answered, and is raised.
        """
        return self._retrying(lambda: self._attempt(work, check, schema, progress))

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Retry what failed before anything was applied: a commit conflict, or a host that Ray is restarting.

        Waits with capped exponential backoff, for up to ``retry_seconds``.
        """
        deadline = time.monotonic() + self.retry_seconds
        for n in itertools.count():
            try:
                return attempt()
            except (CommitConflict, ShardUnavailable) as exc:
                if time.monotonic() > deadline:
                    raise
                log.info("retrying after: %s", exc)
            time.sleep(random.uniform(0.5, 1.0) * min(1.0, 0.005 * 2**n))
        raise AssertionError("unreachable")

    def _attempt(
        self,
        work: Sequence[ShardWork],
        check: Check | None = None,
        schema: SchemaChange | None = None,
        progress: Progress | None = None,
    ) -> list[StageResult]:
        txn = uuid.uuid4().hex
        bases: dict[str, list[int]] = {}
        for w in work:
            if w.spec.table_id not in bases:
                states = self.catalog.snapshot(w.spec.table_id)
                if not states:
                    raise TableNotFound(w.spec.table_id)
                bases[w.spec.table_id] = [s.version for s in states]
        after = self._acquire(work, txn)
        refs = [
            self.host(w.spec.table_id, w.spec.shard).stage.remote(
                w.spec, txn, bases[w.spec.table_id][w.spec.shard], w.ops, after[i]
            )
            for i, w in enumerate(work)
        ]
        results: list[StageResult | None] = []
        failure: TesseraError | None = None
        interrupted: BaseException | None = None
        for index, ref in enumerate(refs):
            try:
                results.append(resolve(ref))
                if len(results) == 1:
                    self.faults.reach("after_stage_one")
            except TesseraError as exc:
                exc.work_index = index
                results.append(None)
                # Report the client's mistake rather than a side effect of aborting it elsewhere.
                if failure is None or (isinstance(exc, UserError) and not isinstance(failure, UserError)):
                    failure = exc
            if progress is not None and interrupted is None and failure is None:
                try:
                    progress(index + 1, len(refs))
                except BaseException as exc:  # a cancelled job: abort once every stage has answered
                    interrupted = exc
        if failure is not None or interrupted is not None:
            self._finish(work, [True] * len(work), txn, commit=False)  # some slots may be held without a stage
            raise failure or interrupted  # type: ignore[misc]
        self.faults.reach("after_stage_all")
        staged = [r for r in results if r is not None]
        record = None
        if check is not None:
            try:
                record = check(staged)
            except BaseException:
                self._finish(work, results, txn, commit=False)
                raise
        changes = [
            ShardChange(
                w.spec.table_id, w.spec.shard, r.base_version, r.version, r.row_count, r.lance, r.delta, r.token
            )
            for w, r in zip(work, staged, strict=True)
            if r.version != r.base_version
        ]
        if changes or record is not None or schema is not None:
            self.faults.reach("before_commit")
            try:
                layouts = {w.spec.table_id: w.spec.layout for w in work}
                self.catalog.commit(changes, record, layouts, schema)
            except BaseException:
                self._finish(work, results, txn, commit=False)
                raise
            self.faults.reach("after_commit")
        self._finish(work, results, txn, commit=True)
        return staged

    def _acquire(self, work: Sequence[ShardWork], txn: str) -> list[Any]:
        """Chain the slot acquisitions in (table, shard) order; returns, per work item, what its stage waits for.

        Each ``acquire`` takes the previous one's result as an argument, so Ray starts it only once the lower
        slot is held: no round trip per slot. The stage of a shard waits for its own acquire (the last shard's
        stage, for the one before it, and takes its slot itself). So a writer only ever waits for a slot above
        every slot it holds, and concurrent writers never wait for each other in a cycle.
        """
        order = sorted(range(len(work)), key=lambda i: (work[i].spec.table_id, work[i].spec.shard))
        assert len({(w.spec.table_id, w.spec.shard) for w in work}) == len(work), "one ShardWork per shard"
        after: list[Any] = [None] * len(work)
        if not work:
            return after
        previous = None
        for i in order[:-1]:
            spec = work[i].spec
            previous = after[i] = self.host(spec.table_id, spec.shard).acquire.remote(
                spec.table_id, spec.shard, txn, previous
            )
        after[order[-1]] = previous
        return after

    def _finish(self, work: Sequence[ShardWork], results: Sequence[object], txn: str, commit: bool) -> None:
        # Not awaited: the next writer of a shard waits for its slot, and readers of the new version are served
        # from the staged copy until this arrives.
        for w, r in zip(work, results, strict=True):
            if r is not None:
                self.host(w.spec.table_id, w.spec.shard).finish.remote(w.spec.table_id, w.spec.shard, txn, commit)

    def read(self, specs: Sequence[ShardSpec], versions: Sequence[int], plan: ReadPlan) -> list[ReadResult]:
        """Read the given shard versions in parallel; a host that died is restarted by Ray and asked again."""

        def attempt() -> list[ReadResult]:
            refs = [
                self.host(s.table_id, s.shard).read.remote(s, v, plan) for s, v in zip(specs, versions, strict=True)
            ]
            results, error = gather(refs)
            if error is not None:
                raise error
            return results

        return self._retrying(attempt)
