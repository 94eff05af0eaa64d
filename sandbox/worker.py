"""A sandbox worker process: ``python -m sandbox.worker '<limits JSON>'``, driven by ``sandbox.pool``.

Before it reads anything it limits itself: address space (``RLIMIT_AS``), no file writes (``RLIMIT_FSIZE`` 0), no
core dumps. Each request then runs under a CPU-time timer (``ITIMER_PROF``): when it fires the kernel kills the
process with SIGPROF, which no Python code can catch (a bare ``except:`` around a busy loop does not help), and the
parent reports ``cpu_time``. The parent also kills it on a wall-clock deadline (a catastrophic regular expression
holds the CPU inside C code; a blocked read holds none). A ``MemoryError`` ends the worker too (exit status
``EXIT_MEMORY``): the parent reports ``memory`` and starts a new one.

Requests (``sandbox.wire`` messages): ``check`` compiles a UDF and runs its top level; ``call`` runs it over a batch
of columns and answers one column of results (already of the return type) and ``[row, message]`` errors. Compiled
functions are cached by the UDF's key. The worker imports no pyarrow: it works on Python lists and ``array``s.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import resource
import signal
import sys
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, BinaryIO

import orjson

from sandbox import wire

EXIT_MEMORY = 3
EXIT_PROTOCOL = 4
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_CACHED = 64


def main() -> None:
    limits = orjson.loads(sys.argv[1])
    _limit_process(limits)
    # Imported after the limits, before any user code: everything the runtimes need is loaded now, so a UDF never
    # triggers an import that opens files (RLIMIT_FSIZE is 0, and the code is untrusted).
    import _strptime  # noqa: F401  (datetime.strptime imports it lazily)

    from sandbox import js, restricted

    worker = Worker(limits, restricted, js)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but messages on the pipe
    _send(stdout, {"ok": True, "ready": True, "pid": os.getpid()})
    while True:
        try:
            header, buffers = _receive(stdin)
        except EOFError:
            return
        except (wire.ProtocolError, ValueError):
            os._exit(EXIT_PROTOCOL)
        try:
            reply, out = worker.handle(header, buffers)
        except MemoryError:
            _memory_exit(stdout)
        try:
            _send(stdout, reply, out)
        except MemoryError:
            _memory_exit(stdout)


def _limit_process(limits: dict[str, Any]) -> None:
    memory = int(limits["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGPROF, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the parent's terminal is the parent's business


def _memory_exit(stdout: BinaryIO) -> None:
    try:
        _send(stdout, {"ok": False, "error": "limit", "limit": "memory", "message": "MemoryError"})
    finally:
        os._exit(EXIT_MEMORY)


def _receive(stdin: BinaryIO) -> tuple[dict[str, Any], list[memoryview]]:
    prefix = stdin.read(wire.PREFIX.size)
    if not prefix:
        raise EOFError
    if len(prefix) != wire.PREFIX.size:
        raise wire.ProtocolError("torn message")
    head_len, _ = wire.PREFIX.unpack(prefix)
    if head_len > wire.MAX_HEADER:
        raise wire.ProtocolError("header too large")
    head = stdin.read(head_len)
    header, body_len = wire.unpack_header(prefix, head)
    body = stdin.read(body_len)
    if len(body) != body_len:
        raise wire.ProtocolError("torn message")
    return header, wire.split(header, body)


def _send(stdout: BinaryIO, header: dict[str, Any], buffers: list[bytes] | None = None) -> None:
    for part in wire.pack(header, buffers or []):
        stdout.write(part)
    stdout.flush()


class Worker:
    def __init__(self, limits: dict[str, Any], restricted: Any, js: Any) -> None:
        self.limits = limits
        self.restricted = restricted
        self.js = js
        self.cache: OrderedDict[str, Any] = OrderedDict()

    def handle(self, header: dict[str, Any], buffers: list[memoryview]) -> tuple[dict[str, Any], list[bytes]]:
        op = header.get("op")
        if op == "ping":
            return {"ok": True}, []
        udf = header["udf"]
        cpu = float(header.get("cpu_seconds", self.limits["cpu_seconds"]))
        signal.setitimer(signal.ITIMER_PROF, cpu)
        try:
            try:
                function = self._function(udf, cpu)
            except (self.restricted.CompileFailure, self.js.CompileFailure) as exc:
                return {"ok": False, "error": "compile", "message": exc.message, "line": exc.line, "col": exc.col}, []
            if op == "check":
                return {"ok": True}, []
            n = int(header["n"])
            if udf["language"] == "python":
                cols = [wire.decode_column(desc, buffers) for desc in header["columns"]]
                return self._python(function, udf, cols, n)
            function.set_time_limit(cpu)
            desc, out, errors = function.call([_js_column(d, buffers) for d in header["columns"]], n)
            if any("out of memory" in str(e[1]) for e in errors):
                raise MemoryError
            return {"ok": True, "values": desc, "errors": errors}, out
        except self.js.LimitHit as exc:
            if exc.limit == "memory":
                raise MemoryError from None
            return {"ok": False, "error": "limit", "limit": exc.limit, "message": str(exc)}, []
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)

    def _function(self, udf: dict[str, Any], cpu: float) -> Any:
        key = udf["key"]
        function = self.cache.get(key)
        if function is not None:
            self.cache.move_to_end(key)
            return function
        names, types = udf["parameters"], udf["types"]
        if udf["language"] == "python":
            function = self.restricted.compile_function(udf["code"], udf["name"], names)
        else:
            limits = {**self.limits, "cpu_seconds": cpu}
            function = self.js.Function(udf["code"], udf["name"], types, udf["return_type"], limits)
        self.cache[key] = function
        if len(self.cache) > _CACHED:
            self.cache.popitem(last=False)
        return function

    # -- python ------------------------------------------------------------------------------------------------
    def _python(
        self, function: Callable[..., Any], udf: dict[str, Any], cols: list[list[Any]], n: int
    ) -> tuple[dict[str, Any], list[bytes]]:
        cols = [_timestamps(c) if t == "timestamp" else c for c, t in zip(cols, udf["types"], strict=True)]
        errors: list[list[Any]] = []
        out: list[Any]
        try:
            out = list(map(function, *cols)) if cols else [function() for _ in range(n)]
        except MemoryError:
            raise
        except BaseException:  # some row raised: go again row by row to find which
            out = [None] * n
            rows = zip(*cols, strict=True) if cols else ((),) * n
            for i, args in enumerate(rows):
                try:
                    out[i] = function(*args)
                except MemoryError:
                    raise
                except BaseException as exc:
                    errors.append([i, self.restricted.describe(exc)])
        desc, buffers = _encode(udf["return_type"], out, errors)
        return {"ok": True, "values": desc, "errors": errors}, buffers


# -- results -------------------------------------------------------------------------------------------------------
_FAST: dict[str, frozenset[type]] = {
    "float": frozenset({float, int, type(None)}),
    "int": frozenset({int, type(None)}),
    "bool": frozenset({bool, type(None)}),
    "string": frozenset({str, type(None)}),
}


def _encode(rtype: str, out: list[Any], errors: list[list[Any]]) -> tuple[dict[str, Any], list[bytes]]:
    """The results as a column of the return type; a value of the wrong type fails its row (added to ``errors``)."""
    fast = _FAST.get(rtype)
    if fast is not None:
        types = set(map(type, out))
        if types <= fast:
            try:
                return _column(rtype, out, type(None) in types)
            except (OverflowError, TypeError):
                pass  # an int beyond 64 bits: find it below
    out, more = _checked(out, rtype)
    errors += more
    errors.sort(key=lambda e: e[0])
    return _column(rtype, out, True)


def _column(rtype: str, out: list[Any], nulls: bool) -> tuple[dict[str, Any], list[bytes]]:
    if rtype == "float":
        return wire.encode_numbers("f64", out, nulls)
    if rtype in ("int", "timestamp"):
        return wire.encode_numbers("i64" if rtype == "int" else "ts", out, nulls)
    if rtype == "bool":
        return wire.encode_bools(out)
    return wire.encode_list(out)


def _checked(out: list[Any], rtype: str) -> tuple[list[Any], list[list[Any]]]:
    convert = _CONVERT[rtype]
    values: list[Any] = []
    errors: list[list[Any]] = []
    for i, v in enumerate(out):
        if v is None:
            values.append(None)
            continue
        try:
            values.append(convert(v))
        except (TypeError, ValueError, OverflowError) as exc:
            values.append(None)
            errors.append([i, str(exc)])
    return values, errors


def _wrong(v: Any, rtype: str) -> TypeError:
    return TypeError(f"returned {type(v).__name__}, expected {rtype}")


def _to_float(v: Any) -> float:
    if type(v) not in (int, float):
        raise _wrong(v, "float")
    return float(v)


def _to_int(v: Any) -> int:
    if type(v) is not int:
        raise _wrong(v, "int")
    if not -(2**63) <= v < 2**63:
        raise OverflowError(f"returned {v}, which does not fit a 64-bit int")
    return v


def _to_bool(v: Any) -> bool:
    if type(v) is not bool:
        raise _wrong(v, "bool")
    return v


def _to_string(v: Any) -> str:
    if type(v) is not str:
        raise _wrong(v, "string")
    return v


def _to_json(v: Any) -> str:
    try:
        return orjson.dumps(v).decode()
    except TypeError:
        raise TypeError(f"returned {type(v).__name__}, which is not JSON") from None


def _to_timestamp(v: Any) -> int:
    if isinstance(v, str):
        v = _parse_timestamp(v)
    if not isinstance(v, dt.datetime):
        raise _wrong(v, "timestamp")
    if v.tzinfo is None:
        v = v.replace(tzinfo=dt.UTC)
    delta = v - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _parse_timestamp(v: Any) -> Any:
    if not isinstance(v, str):
        return v
    try:
        return dt.datetime.fromisoformat(v)
    except ValueError:
        raise ValueError(f"returned {v[:40]!r}, which is not an ISO-8601 timestamp") from None


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "float": _to_float,
    "int": _to_int,
    "bool": _to_bool,
    "string": _to_string,
    "json": _to_json,
    "timestamp": _to_timestamp,
}


def _js_column(desc: dict[str, Any], buffers: list[memoryview]) -> dict[str, Any]:
    """A column for the JavaScript driver: numbers (sent as ``f64``) and bools stay binary, as base64."""
    kind = desc["kind"]
    if kind == "list":
        return {"k": "list", "v": wire.decode_column(desc, buffers)}
    if kind not in ("f64", "bool"):
        raise wire.ProtocolError(f"a {kind} column for JavaScript")
    data = buffers.pop(0)
    mask = buffers.pop(0) if desc.get("mask") else None
    if len(data) != desc["n"] * (8 if kind == "f64" else 1) or (mask is not None and len(mask) != desc["n"]):
        raise wire.ProtocolError("a column's buffer does not hold n values")
    encode = base64.b64encode
    return {"k": kind, "d": encode(data).decode(), "m": None if mask is None else encode(mask).decode()}


def _timestamps(micros: list[Any]) -> list[Any]:
    return [None if m is None else _EPOCH + dt.timedelta(microseconds=m) for m in micros]


if __name__ == "__main__":
    main()
