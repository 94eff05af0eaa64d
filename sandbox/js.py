"""JavaScript UDFs under quickjs (quickjs-ng), inside a sandbox worker.

Each UDF gets its own context, with its memory, stack and time limits set before any user code runs, and with
``eval`` and the ``Function`` constructors removed (``(function(){}).constructor('...')`` throws). A quickjs
context has no host objects: no ``require``, ``process``, file system, network or timers.

A batch crosses into JavaScript as one JSON text (one array per parameter) and comes back as one JSON text: calling
into quickjs once per row from Python would cost a microsecond a row. The driver calls the function per row, catches
what it throws, and checks the result's type: the Python side gets values and per-row errors.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson
import quickjs

_HARDEN = """
(function () {
  const kinds = [function () {}, function* () {}, async function () {}, async function* () {}];
  for (const f of kinds) {
    Object.defineProperty(Object.getPrototypeOf(f), "constructor", {
      get() { throw new TypeError("the Function constructor is disabled"); },
      configurable: false,
    });
  }
  for (const name of ["eval", "Function"]) {
    Object.defineProperty(globalThis, name, {
      get() { throw new TypeError(name + " is disabled"); },
      configurable: false,
    });
  }
})();
"""

# The per-UDF driver, specialised to the number of parameters (CALL is ``f(c0[i], c1[i])``). Numbers and bools cross
# as base64 typed arrays (``Uint8Array.fromBase64``: no per-number text), text and JSON as JSON arrays. The try
# is outside the row loop (a try per row costs more than the call); a row that throws is recorded and skipped.
_DRIVER = """
(function (f, types, rtype) {
  function column(c, type) {
    if (c.k === "list") return c.v;
    const m = c.m === null ? null : Uint8Array.fromBase64(c.m);
    const bytes = Uint8Array.fromBase64(c.d);
    if (c.k === "bool") return Array.from(bytes, (x, i) => (m !== null && !m[i] ? null : x !== 0));
    const a = new Float64Array(bytes.buffer);
    if (type === "timestamp") return Array.from(a, (x, i) => (m !== null && !m[i] ? null : new Date(x)));
    return m === null ? a : Array.from(a, (x, i) => (m[i] ? x : null));
  }
  const numeric = rtype === "float" || rtype === "int" || rtype === "timestamp";
  function wrong(v) {
    const what = v instanceof Date ? "a Date" : Array.isArray(v) ? "an array" : typeof v;
    return new TypeError("returned " + what + ", expected " + rtype);
  }
  return function (payload) {
    const input = JSON.parse(payload);
    const n = input.n;
    const cols = input.cols.map((c, j) => column(c, types[j]));
    CLOSE_OVER
    const out = numeric ? new Float64Array(n) : rtype === "bool" ? new Uint8Array(n) : new Array(n).fill(null);
    const ok = new Uint8Array(n);
    const errors = [];
    let i = 0;
    while (i < n) {
      try {
        for (; i < n; i++) {
          const v = CALL;
          if (v === null || v === undefined) continue;
          switch (rtype) {
            case "float": if (typeof v !== "number") throw wrong(v); out[i] = v; break;
            case "int":
              if (typeof v !== "number") throw wrong(v);
              if (!Number.isSafeInteger(v)) throw new TypeError("returned " + v + ", expected an integer below 2**53");
              out[i] = v; break;
            case "timestamp": {
              const t = v instanceof Date ? v.getTime() : typeof v === "string" ? Date.parse(v) : NaN;
              if (v instanceof Date || typeof v === "string") {
                if (isNaN(t)) throw new TypeError("returned an invalid date: " + String(v).slice(0, 40));
              } else throw wrong(v);
              out[i] = t; break;
            }
            case "bool": if (typeof v !== "boolean") throw wrong(v); out[i] = v ? 1 : 0; break;
            case "string": if (typeof v !== "string") throw wrong(v); out[i] = v; break;
            case "json": { const s = JSON.stringify(v); if (s === undefined) throw wrong(v); out[i] = s; break; }
          }
          ok[i] = 1;
        }
      } catch (e) {
        let text;
        try { text = String(e); } catch (_) { text = "an exception"; }
        errors.push([i, text.length > 400 ? text.slice(0, 400) + "..." : text]);
        i++;
      }
    }
    if (numeric || rtype === "bool") {
      return JSON.stringify([new Uint8Array(out.buffer).toBase64(), ok.toBase64(), errors]);
    }
    return JSON.stringify([out, null, errors]);
  };
})
"""


def _driver(arity: int) -> str:
    close = " ".join(f"const c{j} = cols[{j}];" for j in range(arity))
    call = "f(" + ", ".join(f"c{j}[i]" for j in range(arity)) + ")"
    return _DRIVER.replace("CLOSE_OVER", close).replace("CALL", call)


_POSITION = re.compile(r"<input>:(\d+):(\d+)")


class CompileFailure(Exception):
    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(message)
        self.message, self.line, self.col = message, line, col


class LimitHit(Exception):
    """quickjs stopped the code: ``limit`` is ``cpu_time`` (interrupted) or ``memory`` (out of memory)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class Function:
    """A compiled JavaScript UDF in its own context."""

    def __init__(self, code: str, name: str, types: list[str], rtype: str, limits: dict[str, Any]) -> None:
        ctx = quickjs.Context()
        ctx.set_memory_limit(int(limits["js_memory_bytes"]))
        ctx.set_max_stack_size(int(limits["js_stack_bytes"]))
        ctx.set_time_limit(float(limits["cpu_seconds"]))
        ctx.eval(_HARDEN)
        try:
            ctx.eval(code)
        except quickjs.JSException as exc:
            limit = _limit_of(str(exc))
            if limit:
                raise LimitHit(limit, first_line(str(exc))) from None
            line, col = _position(str(exc))
            raise CompileFailure(first_line(str(exc)), line, col) from None
        kind = ctx.eval(f"typeof globalThis[{orjson.dumps(name).decode()}]")
        if kind != "function":
            raise CompileFailure(f"the code must define a function named '{name}'", 1, 1)
        self._ctx = ctx
        self._run = ctx.eval(_driver(len(types)))(ctx.get(name), ctx.parse_json(orjson.dumps(types).decode()), rtype)
        self.rtype = rtype

    def set_time_limit(self, seconds: float) -> None:
        self._ctx.set_time_limit(seconds)

    def call(self, columns: list[dict[str, Any]], n: int) -> tuple[dict[str, Any], list[bytes], list[list[Any]]]:
        """Run over ``columns`` (``{"k": "f64" | "bool", "d": base64, "m": base64 | None}`` or ``{"k": "list",
        "v": [...]}``): the result column (``f64`` for numbers, ms for timestamps; ``bool``; ``list``), its buffers,
        and ``[row, message]`` errors."""
        payload = orjson.dumps({"cols": columns, "n": n}).decode()
        try:
            out = self._run(payload)
        except quickjs.JSException as exc:
            limit = _limit_of(str(exc))
            if limit:
                raise LimitHit(limit, first_line(str(exc))) from None
            # The code broke the driver (it replaced a built-in the driver uses): every row fails with that error.
            return self._failed(n, f"the UDF broke its batch: {first_line(str(exc))[:400]}")
        try:
            return self._answer(out, n)
        except (ValueError, TypeError, binascii.Error):  # the code replaced JSON.stringify or the like
            return self._failed(n, "the UDF broke its batch: the driver's answer is not readable")

    def _answer(self, out: Any, n: int) -> tuple[dict[str, Any], list[bytes], list[list[Any]]]:
        """The driver's answer, checked: user code runs in the same context and may have forged it."""
        values, ok, errors = orjson.loads(out)
        if not isinstance(errors, list) or not all(
            isinstance(e, list) and len(e) == 2 and type(e[0]) is int and 0 <= e[0] < n and isinstance(e[1], str)
            for e in errors
        ):
            raise ValueError("bad errors")
        if ok is None:
            if self.rtype not in ("string", "json") or not isinstance(values, list) or len(values) != n:
                raise ValueError("bad values")
            if not all(v is None or type(v) is str for v in values):
                raise ValueError("bad values")
            return {"kind": "list", "n": n}, [orjson.dumps(values)], errors
        if self.rtype in ("string", "json"):
            raise ValueError("bad values")
        valid = base64.b64decode(ok, validate=True)
        data = base64.b64decode(values, validate=True)
        kind, size = ("bool", 1) if self.rtype == "bool" else ("f64", 8)
        if len(valid) != n or len(data) != n * size:
            raise ValueError("bad lengths")
        masked = valid.count(0) > 0
        return {"kind": kind, "n": n, "mask": masked}, [data, *([valid] if masked else [])], errors

    def _failed(self, n: int, message: str) -> tuple[dict[str, Any], list[bytes], list[list[Any]]]:
        """Every row null and failing with ``message``."""
        errors: list[list[Any]] = [[i, message] for i in range(n)]
        if self.rtype in ("string", "json"):
            return {"kind": "list", "n": n}, [orjson.dumps([None] * n)], errors
        kind, size = ("bool", 1) if self.rtype == "bool" else ("f64", 8)
        return {"kind": kind, "n": n, "mask": True}, [bytes(n * size), bytes(n)], errors


def _limit_of(text: str) -> str | None:
    if "interrupted" in text:
        return "cpu_time"
    if "out of memory" in text:
        return "memory"
    return None


def _position(text: str) -> tuple[int, int]:
    m = _POSITION.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else (1, 1)


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "error"
