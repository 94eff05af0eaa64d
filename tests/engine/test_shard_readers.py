"""Readers of a shard while its writer commits: every version a reader asks for comes with that version's rows.

The shard host serves reads and a writer's ``commit`` on different threads of one actor, without a lock between
them. The first test stops ``commit`` between every two of its bytecode instructions (a per-opcode trace hook, on
the committing thread) and reads there, which is what a reader thread scheduled at that instant would see; the
second has threads hammer commits and reads, the trace hook giving the interpreter a chance to switch threads at
every instruction of ``commit`` and ``table_at``. Both assert consistency, never timing.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from test_shard import make_shard, rows

from engine.logical.plan import Insert
from engine.physical.shard import Shard

Tracer = Callable[[FrameType, str, Any], Any]


def traced(codes: set[Any], at_each_opcode: Callable[[], None]) -> Tracer:
    """A trace function that calls ``at_each_opcode`` before every bytecode instruction of the functions whose code
    objects are in ``codes`` (and traces nothing else)."""

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            at_each_opcode()
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code in codes:
            frame.f_trace_lines = False
            frame.f_trace_opcodes = True
            return local
        return None

    return tracer


def stage_one(shard: Shard, n: int, expected: dict[int, int]) -> str:
    """Stage an insert of one row; records the staged version's row count in ``expected``."""
    txn = f"t{n}"
    result = shard.stage(txn, None, [Insert(rows((n, n)))])
    expected[result.version] = result.row_count
    return txn


def check_reads(shard: Shard, expected: dict[int, int]) -> None:
    """What any reader may do at any moment: ask for the version the shard says it has, and for every version
    known, and get exactly that version's rows."""
    current = shard.version
    assert shard.table_at(current).num_rows == expected[current], f"version {current} paired with other rows"
    for version, count in expected.items():
        assert shard.table_at(version).num_rows == count, f"version {version}"


def test_a_reader_at_any_instruction_of_commit_sees_whole_versions(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    expected = {shard.version: 0}
    checked: list[int] = []

    def read_here() -> None:
        check_reads(shard, expected)
        checked.append(shard.version)

    for n in range(4):
        txn = stage_one(shard, n, expected)
        sys.settrace(traced({Shard.commit.__code__}, read_here))
        try:
            shard.commit(txn)
        finally:
            sys.settrace(None)
        check_reads(shard, expected)
    assert len(checked) > 20  # the hook did run inside commit, at many instructions


@pytest.mark.slow
def test_threads_hammering_commit_and_reads_never_see_a_torn_version(tmp_path: Path) -> None:
    shard = make_shard(tmp_path)
    expected = {shard.version: 0}
    done = threading.Event()
    failures: list[BaseException] = []
    reads = itertools.count()

    def yield_now() -> None:
        time.sleep(0)  # let another thread run between these two instructions

    hook = traced({Shard.commit.__code__, Shard.table_at.__code__}, yield_now)

    def reader() -> None:
        sys.settrace(hook)
        try:
            while not done.is_set():
                check_reads(shard, dict(expected))
                next(reads)
        except BaseException as exc:
            failures.append(exc)
            done.set()
        finally:
            sys.settrace(None)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    sys.settrace(hook)
    try:
        for n in range(150):
            if done.is_set():
                break
            shard.commit(stage_one(shard, n, expected))
    finally:
        sys.settrace(None)
        done.set()
        for t in threads:
            t.join(timeout=60)
    assert not failures, failures[0]
    assert next(reads) > 0
