"""Sandbox workers are separate processes with their own limits, started directly (no Ray, no server).

The limits are read from the kernel (``/proc/<pid>/limits``), not from the code that sets them: address space, no
file writes, no core dumps. A worker that overruns the CPU limit is killed by the kernel and replaced by the pool.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import UdfLimitExceeded
from sandbox.pool import Limits, Pool, WorkerProcess

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
LIMITS = Limits(cpu_seconds=1.0, wall_seconds=5.0, memory_mb=256, workers=2)


def proc_limits(pid: int) -> dict[str, tuple[str, str]]:
    """``/proc/<pid>/limits`` as ``{name: (soft, hard)}``."""
    lines = Path(f"/proc/{pid}/limits").read_text().splitlines()
    header = lines[0]
    soft, hard, units = header.index("Soft Limit"), header.index("Hard Limit"), header.index("Units")
    return {line[:soft].strip(): (line[soft:hard].strip(), line[hard:units].strip()) for line in lines[1:]}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def udf(code: str, key: str) -> dict[str, object]:
    return {
        "key": key,
        "language": "python",
        "name": "f",
        "code": code,
        "parameters": ["x"],
        "types": ["float"],
        "return_type": "float",
    }


def call(pool: Pool, code: str, key: str, x: float = 1.0) -> dict[str, object]:
    header = {"op": "call", "udf": udf(code, key), "n": 1, "columns": [{"kind": "f64", "n": 1, "mask": False}]}
    reply, _ = pool.call("f", header, [struct.pack("<d", x)])
    return reply


@pytest.fixture
def worker() -> Iterator[WorkerProcess]:
    w = WorkerProcess(LIMITS)
    yield w
    w.kill()


@pytest.fixture
def pool() -> Iterator[Pool]:
    p = Pool(LIMITS)
    yield p
    p.close()


def test_worker_is_a_separate_process_with_kernel_limits(worker: WorkerProcess) -> None:
    pid = worker.pid
    assert pid != os.getpid() and alive(pid)
    limits = proc_limits(pid)
    assert limits["Max address space"] == (str(256 << 20), str(256 << 20))
    assert limits["Max file size"] == ("0", "0")
    assert limits["Max core file size"] == ("0", "0")
    # its own session (a terminal's Ctrl-C is not its business), / as working directory, only its three pipes
    assert os.getsid(pid) == pid != os.getsid(0)
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]
    env = dict(v.split("=", 1) for v in Path(f"/proc/{pid}/environ").read_text().split("\0") if v)
    assert set(env) == {"PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING", "LC_ALL", "PATH"}
    reply, _ = worker.request({"op": "ping"}, [])
    assert reply["ok"] is True
    worker.kill()
    assert not alive(pid)


def test_pool_workers_have_the_limits_and_a_runaway_one_is_replaced(pool: Pool) -> None:
    assert call(pool, "def f(x):\n    y = x * 2\n    return y\n", "good")["ok"] is True
    (pid,) = pool.pids()
    assert proc_limits(pid)["Max address space"][0] == str(256 << 20)
    assert proc_limits(pid)["Max file size"][0] == "0"
    with pytest.raises(UdfLimitExceeded) as info:
        call(pool, "def f(x):\n    while True:\n        pass\n", "runaway")
    assert info.value.limit in ("cpu_time", "wall_clock")
    assert not alive(pid) and pool.pids() == []  # killed, and not handed out again
    assert call(pool, "def f(x):\n    y = x * 2\n    return y\n", "good", 4.0)["ok"] is True
    (replacement,) = pool.pids()
    assert replacement != pid and proc_limits(replacement)["Max address space"][0] == str(256 << 20)


def test_memory_limit_ends_the_worker_not_the_caller(pool: Pool) -> None:
    assert call(pool, "def f(x):\n    y = x\n    return y\n", "good")["ok"] is True
    (pid,) = pool.pids()
    with pytest.raises(UdfLimitExceeded) as info:
        call(pool, "def f(x):\n    return float(len('x' * 10**9))\n", "big")
    assert info.value.limit == "memory"
    assert not alive(pid)
