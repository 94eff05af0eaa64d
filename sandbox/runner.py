"""``SandboxRunner``: Python and JavaScript UDFs checked and run in the sandbox's worker processes.

The ``python`` and ``javascript`` UDF languages (``plugins.udf_languages``) share one runner per registry, so one
pool of workers per process. ``check`` compiles a definition in a worker (its top level runs there, under the limits)
and looks for an inline form (``sandbox.inline``). ``run`` sends the argument columns in batches of
``Limits.batch_rows`` rows and builds the result column and the per-row errors from the answers. Arrow stays on this
side: numbers cross as raw buffers, text and JSON as JSON arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import SandboxUnavailable, UdfCompileError
from engine.expr.core import StepResult
from engine.model.types import TIMESTAMP, arrow_type
from engine.model.udfs import Udf
from sandbox.pool import Limits, Pool, WorkerDied


class SandboxRunner:
    """Python and JavaScript UDFs over one pool of workers (``limits``: the keyword arguments of ``Limits``)."""

    LANGUAGES = ("python", "javascript")

    def __init__(self, **limits: Any) -> None:
        self.limits = Limits(**limits)
        self.pool = Pool(self.limits)

    def check(self, udf: Udf) -> str | None:
        """Compile ``udf`` in a worker; its inline expression, or None; raises UdfCompileError (line, col)."""
        # Imported here: only the process registering UDFs needs it.
        from sandbox import inline

        names = [p.name for p in udf.parameters]
        if udf.language not in self.LANGUAGES:
            raise UdfCompileError(f"the sandbox runs Python and JavaScript, not {udf.language}", line=1, col=1)
        reply, _ = self._call(udf, {"op": "check", "udf": _describe(udf)})
        if not reply.get("ok"):
            raise UdfCompileError(
                str(reply.get("message", "cannot compile")),
                line=int(reply.get("line", 1)),
                col=int(reply.get("col", 1)),
                language=udf.language,
            )
        if udf.language == "python":
            return inline.python_inline(udf.code, udf.name, names)
        return inline.javascript_inline(udf.code, udf.name, names)

    def run(self, udf: Udf, arrays: Sequence[pa.Array], rows: int) -> StepResult:
        target = arrow_type(udf.return_type)
        if rows == 0:
            return StepResult(pa.array([], target), pa.array([], pa.string()))
        values: list[pa.Array] = []
        errors: list[pa.Array] = []
        step = self.limits.batch_rows
        for start in range(0, rows, step):
            length = min(step, rows - start)
            v, e = self._batch(udf, [a.slice(start, length) for a in arrays], length)
            values.append(v)
            errors.append(e)
        return StepResult(pa.concat_arrays(values), pa.concat_arrays(errors))

    def close(self) -> None:
        """Stop the idle workers; later calls start new ones."""
        self.pool.close()

    def _batch(self, udf: Udf, arrays: list[pa.Array], n: int) -> tuple[pa.Array, pa.Array]:
        columns, buffers = [], []
        javascript = udf.language == "javascript"
        for array, p in zip(arrays, udf.parameters, strict=True):
            desc, bufs = _encode(array, p.type, javascript)
            columns.append(desc)
            buffers += bufs
        header = {"op": "call", "udf": _describe(udf), "n": n, "columns": columns}

        def read(reply: dict[str, Any], out: list[Any]) -> tuple[pa.Array, pa.Array]:
            if not reply.get("ok"):  # the code no longer compiles in this worker: cannot happen for a checked UDF
                raise UdfCompileError(
                    str(reply.get("message")), line=int(reply.get("line", 1)), col=int(reply.get("col", 1))
                )
            try:
                values = _decode(reply["values"], out, n, udf.return_type, javascript)
                return values, _errors(reply.get("errors", []), n)
            except (KeyError, TypeError, IndexError, pa.ArrowException) as exc:
                raise ValueError(str(exc)) from None

        return self._call(udf, header, buffers, read)

    def _call(
        self,
        udf: Udf,
        header: dict[str, Any],
        buffers: list[Any] | None = None,
        read: Callable[[dict[str, Any], list[Any]], Any] | None = None,
    ) -> Any:
        try:
            return self.pool.call(udf.name, header, buffers or [], read)
        except WorkerDied as exc:  # the worker could not even start
            raise SandboxUnavailable(f"cannot start a sandbox worker: {exc}") from None


def _describe(udf: Udf) -> dict[str, Any]:
    return {
        "key": udf.key,
        "language": udf.language,
        "name": udf.name,
        "code": udf.code,
        "parameters": [p.name for p in udf.parameters],
        "types": [p.type for p in udf.parameters],
        "return_type": udf.return_type,
    }


# -- Arrow to the wire -----------------------------------------------------------------------------------------------
def _encode(array: pa.Array, type_: str, javascript: bool) -> tuple[dict[str, Any], list[Any]]:
    """One argument column. For JavaScript every number is a float64 (as it is there); timestamps are ms."""
    n = len(array)
    if type_ in ("float", "int", "timestamp", "bool"):
        kind = {"float": "f64", "int": "i64", "timestamp": "ts", "bool": "bool"}[type_]
        if type_ == "timestamp":
            array = array.cast(TIMESTAMP).cast(pa.int64())
        if javascript and kind in ("i64", "ts"):
            array = array.cast(pa.float64())
            if kind == "ts":
                array = pc.divide(array, 1000.0)
            kind = "f64"
        nulls = array.null_count > 0
        filled = pc.fill_null(array, False if kind == "bool" else 0) if nulls else array
        data = filled.to_numpy(zero_copy_only=False)
        if kind == "bool":
            data = data.astype(np.uint8)
        buffers: list[Any] = [np.ascontiguousarray(data).data]
        if nulls:
            buffers.append(array.is_valid().to_numpy(zero_copy_only=False).astype(np.uint8).data)
        return {"kind": kind, "n": n, "mask": nulls}, buffers
    values = array.to_pylist()
    if type_ == "json":  # JSON text, embedded as is
        values = [None if v is None else orjson.Fragment(v) for v in values]
    return {"kind": "list", "n": n}, [orjson.dumps(values)]


# -- the wire to Arrow -----------------------------------------------------------------------------------------------
_NUMPY = {"f64": np.float64, "i64": np.int64, "ts": np.int64}
_SAFE_INT = 2.0**53
_MAX_MS = 8.64e15  # the range of a JavaScript Date
_KINDS = {  # (return type, from JavaScript) -> the column kind that carries it
    **{(t, False): k for t, k in {"float": "f64", "int": "i64", "timestamp": "ts", "bool": "bool"}.items()},
    **{(t, True): k for t, k in {"float": "f64", "int": "f64", "timestamp": "f64", "bool": "bool"}.items()},
}


def _decode(desc: dict[str, Any], buffers: list[Any], n: int, type_: str, javascript: bool) -> pa.Array:
    kind = desc["kind"]
    if desc["n"] != n:
        raise ValueError(f"{desc['n']} values for {n} rows")
    target = arrow_type(type_)
    if kind == "list":
        if type_ not in ("string", "json"):
            raise ValueError(f"a list of values for a {type_} result")
        values = orjson.loads(buffers[0])
        if not isinstance(values, list) or len(values) != n or not all(v is None or type(v) is str for v in values):
            raise ValueError("a result list must hold n strings or nulls")
        return pa.array(values, pa.string())
    if kind != _KINDS.get((type_, javascript)):
        raise ValueError(f"a {kind} column for a {type_} result")
    mask = None
    if desc.get("mask"):
        mask = np.frombuffer(buffers[1], np.uint8, count=n) == 0
    if kind == "bool":
        data = np.frombuffer(buffers[0], np.uint8, count=n) != 0
        return pa.array(data, pa.bool_(), mask=mask)
    data = np.frombuffer(buffers[0], _NUMPY[kind], count=n)
    if javascript and type_ in ("int", "timestamp"):
        # The driver checked these, but it shares its context with the user's code: check again.
        data = data if mask is None else np.where(mask, 0.0, data)
        limit = _SAFE_INT if type_ == "int" else _MAX_MS
        if not (np.isfinite(data).all() and (np.abs(data) <= limit).all()):
            raise ValueError(f"an out-of-range {type_} from JavaScript")
        if type_ == "int":
            if not (data == np.trunc(data)).all():
                raise ValueError("a fractional int from JavaScript")
            return pa.array(data.astype(np.int64), pa.int64(), mask=mask)
        return pa.array(np.rint(data * 1000).astype(np.int64), pa.int64(), mask=mask).cast(target)  # ms
    if kind == "ts":
        return pa.array(data, pa.int64(), mask=mask).cast(target)
    return pa.array(data, target, mask=mask)


def _errors(errors: Any, n: int) -> pa.Array:
    if not errors:
        return pa.nulls(n, pa.string())
    reasons: list[str | None] = [None] * n
    for row, message in errors:
        if type(row) is not int or not 0 <= row < n:
            raise ValueError(f"an error for row {row!r} of {n}")
        reasons[row] = str(message)[:1000]
    return pa.array(reasons, pa.string())
