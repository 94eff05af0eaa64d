"""Sandbox worker processes, seen from the parent: start, talk to, kill and replace them.

A ``Pool`` keeps up to ``Limits.workers`` workers per process (a shard host, the API server, a Python client),
started on demand and kept warm. A call takes an idle worker (or starts one, or waits), sends one request and waits
for the answer until the wall-clock deadline. A worker that overruns a limit (it died of SIGPROF, exited on a
``MemoryError``, or missed the deadline and was killed) is discarded, and the caller gets ``UdfLimitExceeded``
naming the limit. Calls on other workers go on meanwhile: one runaway UDF never blocks the others.

Workers are ``python -s -m sandbox.worker`` with a minimal environment, ``/`` as working directory, their own
session (a terminal's Ctrl-C is not theirs), and no file descriptors but their pipes. They exit when the parent
goes away (their stdin closes).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from engine.errors import UdfLimitExceeded
from sandbox import wire
from sandbox.worker import EXIT_MEMORY

_ROOT = str(Path(__file__).resolve().parent.parent)  # the directory holding the sandbox package
_START_SECONDS = 60.0  # a cold start on a loaded machine (imports RestrictedPython and quickjs)


@dataclass(frozen=True)
class Limits:
    """Per call of a worker (one batch of at most ``batch_rows`` rows, or one check / execute)."""

    cpu_seconds: float = 2.0
    wall_seconds: float = 5.0
    memory_mb: int = 512  # address space of the whole worker process
    js_memory_mb: int = 128  # quickjs's own heap limit, per UDF
    js_stack_kb: int = 512
    workers: int = 2  # per process using the sandbox
    batch_rows: int = 16_384

    def for_worker(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "memory_bytes": self.memory_mb << 20,
            "js_memory_bytes": self.js_memory_mb << 20,
            "js_stack_bytes": self.js_stack_kb << 10,
        }


class WorkerDied(Exception):
    """The worker stopped without answering: ``limit`` names the limit it hit (or ``crashed``)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class WorkerProcess:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        env = {
            "PYTHONPATH": _ROOT,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8",
            "LC_ALL": "C.UTF-8",
            "PATH": os.defpath,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-m", "sandbox.worker", orjson.dumps(limits.for_worker()).decode()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if os.environ.get("TESSERA_SANDBOX_DEBUG") else subprocess.DEVNULL,
            env=env,
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in, self._out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        header, _ = self._read(time.monotonic() + _START_SECONDS, "starting")
        if not header.get("ready"):
            self.kill()
            raise WorkerDied("crashed", "the sandbox worker did not start")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def request(self, header: dict[str, Any], buffers: list[bytes | memoryview]) -> tuple[dict[str, Any], list[Any]]:
        deadline = time.monotonic() + self.limits.wall_seconds
        self._write(wire.pack(header, buffers), deadline)
        return self._read(deadline, "running")

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()

    # -- the pipe, with the deadline ---------------------------------------------------------------------------
    def _write(self, parts: list[bytes | memoryview], deadline: float) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._in, selectors.EVENT_WRITE)
            for part in parts:
                view = memoryview(part).cast("B")
                while view:
                    self._wait(sel, deadline)
                    try:
                        n = os.write(self._in, view)
                    except BlockingIOError:
                        continue
                    except (BrokenPipeError, OSError):
                        raise self._died() from None
                    view = view[n:]

    def _read(self, deadline: float, doing: str) -> tuple[dict[str, Any], list[Any]]:
        with selectors.DefaultSelector() as sel:
            sel.register(self._out, selectors.EVENT_READ)
            prefix = self._read_exact(sel, wire.PREFIX.size, deadline)
            head_len, _ = wire.PREFIX.unpack(prefix)
            if head_len > wire.MAX_HEADER:
                raise self._protocol("header too large")
            head = self._read_exact(sel, head_len, deadline)
            try:
                header, body_len = wire.unpack_header(prefix, head)
            except (wire.ProtocolError, ValueError) as exc:
                raise self._protocol(str(exc)) from None
            body = self._read_exact(sel, body_len, deadline)
            return header, wire.split(header, body)

    def _read_exact(self, sel: selectors.BaseSelector, n: int, deadline: float) -> bytes:
        out = bytearray()
        while len(out) < n:
            self._wait(sel, deadline)
            try:
                chunk = os.read(self._out, min(n - len(out), 1 << 22))
            except BlockingIOError:
                continue
            if not chunk:
                raise self._died()
            out += chunk
        return bytes(out)

    def _wait(self, sel: selectors.BaseSelector, deadline: float) -> None:
        left = deadline - time.monotonic()
        if (left <= 0 or not sel.select(left)) and time.monotonic() >= deadline:
            self.kill()
            raise WorkerDied("wall_clock", f"wall-clock limit of {self.limits.wall_seconds:g} s exceeded")

    def _died(self) -> WorkerDied:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self.kill()
        lim = self.limits
        if code == -signal.SIGPROF:
            return WorkerDied("cpu_time", f"CPU time limit of {lim.cpu_seconds:g} s exceeded")
        if code == EXIT_MEMORY:
            return WorkerDied("memory", f"memory limit of {lim.memory_mb} MB exceeded")
        if code == -signal.SIGKILL:  # not ours (we raise wall_clock ourselves): the kernel's OOM killer
            return WorkerDied("memory", "the sandbox worker was killed (out of memory)")
        return WorkerDied("crashed", f"the sandbox worker crashed (exit status {code})")

    def _protocol(self, what: str) -> WorkerDied:
        self.kill()
        return WorkerDied("crashed", f"the sandbox worker broke the protocol: {what}")


class Pool:
    """Up to ``limits.workers`` workers, thread-safe. ``call`` raises UdfLimitExceeded when a limit was hit."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._idle: list[WorkerProcess] = []
        self._count = 0
        self._cond = threading.Condition()
        atexit.register(self.close)  # workers would exit on their own (stdin closes); this reaps them first

    def call(
        self,
        udf: str,
        header: dict[str, Any],
        buffers: list[bytes | memoryview] = (),  # type: ignore[assignment]
        read: Callable[[dict[str, Any], list[Any]], Any] | None = None,
    ) -> Any:
        """Send one request to a worker; ``read`` (if given) turns the answer (header, buffers) into the result
        before the worker is reused.

        An answer ``read`` cannot use (ValueError) means the worker misbehaved: it is discarded, and the call
        fails with the limit ``crashed``.
        """
        worker = self._acquire()
        try:
            header_in, body = worker.request(header, list(buffers))
            if header_in.get("error") == "limit":  # the worker stopped the code itself (quickjs's own limits)
                limit = header_in.get("limit", "cpu_time")
                raise WorkerDied(limit, self._message(limit))
            result = (header_in, body) if read is None else read(header_in, body)
        except WorkerDied as exc:
            self._discard(worker)
            raise UdfLimitExceeded(udf, exc.limit, str(exc)) from None
        except ValueError as exc:
            self._discard(worker)
            raise UdfLimitExceeded(udf, "crashed", f"the sandbox worker sent a bad answer: {exc}") from None
        except BaseException:
            self._discard(worker)
            raise
        self._release(worker)
        return result

    def _message(self, limit: str) -> str:
        if limit == "memory":
            return f"memory limit of {self.limits.memory_mb} MB exceeded"
        return f"CPU time limit of {self.limits.cpu_seconds:g} s exceeded"

    def pids(self) -> list[int]:
        with self._cond:
            return [w.pid for w in self._idle]

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for w in idle:
            w.kill()

    def _acquire(self) -> WorkerProcess:
        with self._cond:
            while not self._idle and self._count >= self.limits.workers:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            return WorkerProcess(self.limits)
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, worker: WorkerProcess) -> None:
        with self._cond:
            self._idle.append(worker)
            self._cond.notify()

    def _discard(self, worker: WorkerProcess) -> None:
        worker.kill()
        with self._cond:
            self._count -= 1
            self._cond.notify()
