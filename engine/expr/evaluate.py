"""Evaluate compiled expressions over Arrow tables, with per-cell errors.

``evaluate`` runs an expression's steps (functions Arrow has no kernel for, such as ``json_get``) and then its main
Arrow expression over every row. The first pass is unguarded; only if it fails does it switch to the guarded
expression, which says why each failing cell failed (zero divisors, ``sqrt`` of a negative, text that is not a
number); what remains (overflow) is found by evaluating halves of the rows until each failing row is alone. With
``on_error="null"`` failing cells are null and counted; with ``"abort"`` the first one raises ``CellError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds

from engine.errors import CellError
from engine.expr.core import Compiled, Step, StepResult, arrow_of, first_reason
from engine.model.types import OnError


@dataclass(frozen=True)
class Evaluated:
    """An expression's values over a table's rows: ``errors`` cells failed (null in ``values``), the first at
    ``first_error`` (``"row 3: division by zero"``)."""

    values: pa.ChunkedArray | pa.Array
    errors: int = 0
    first_error: str | None = None


# How Arrow kernels (ArrowInvalid is a ValueError) and step kernels say that a cell cannot be computed.
_FAILURES = (ValueError, ArithmeticError)
_Outcome = tuple[list[Any], Any]  # values per expression, and why cells failed (None: none did)


def evaluate(compiled: Compiled, table: pa.Table, on_error: OnError = "null") -> Evaluated:
    """``compiled`` over every row of ``table``, cast to its type's Arrow type; failing cells per ``on_error``.

    >>> from engine.expr.compiler import compile_expression
    >>> from engine.model.schema import build_schema
    >>> schema = build_schema("t", {"a": "int", "b": "int"}, None)
    >>> result = evaluate(compile_expression("a // b", schema), pa.table({"a": [7, 1, 2], "b": [2, 0, 1]}))
    >>> (result.values.to_pylist(), result.errors, result.first_error)
    ([3, None, 2], 1, 'row 1: division by zero')
    """
    if on_error not in ("null", "abort"):
        raise ValueError(f"on_error must be 'null' or 'abort', not {on_error!r}")
    missing = compiled.columns.difference(table.column_names)
    if missing:  # the caller's mistake, not bad data: say so rather than fail every cell
        raise ValueError(f"the table has no column {sorted(missing)[0]!r}")
    clean = True  # no step failed a cell
    for step in compiled.steps:
        table, failed = _run_step(step, table, clean)
        clean = clean and not failed
    target = arrow_of(compiled.type)
    [values], reasons = _compute(table, [compiled], clean)
    if values.type != target:
        values = values.cast(target)
    errors = 0 if reasons is None else len(reasons) - reasons.null_count
    if errors == 0:
        return Evaluated(values)
    failed = pc.is_valid(reasons)
    row = pc.index(failed, True).as_py()
    reason = reasons[row].as_py()
    if on_error == "abort":
        raise CellError(row, reason)
    return Evaluated(pc.if_else(failed, pa.scalar(None, target), values), errors, f"row {row}: {reason}")


def _run_step(step: Step, table: pa.Table, clean: bool) -> tuple[pa.Table, bool]:
    """``table`` with the step's values and reasons as two more columns, and whether any of its cells failed."""
    target = arrow_of(step.type)
    args, arg_reasons = _compute(table, step.args, clean)
    arrays = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in args]

    def run(start: int, length: int) -> _Outcome:
        out = step.kernel([a.slice(start, length) for a in arrays])
        values, errors = (out.values, out.errors) if isinstance(out, StepResult) else (out, None)
        if len(values) != length:
            raise RuntimeError(f"{step.function}(): the kernel gave {len(values)} values for {length} rows")
        return [values.cast(target)], None if errors is None else errors.cast(pa.string())

    [values], reasons = _bisect(run, table.num_rows, [target])
    if arg_reasons is not None:
        reasons = arg_reasons if reasons is None else pc.coalesce(arg_reasons, reasons)
    failed = reasons is not None and reasons.null_count < len(reasons)
    if failed:
        values = pc.if_else(pc.is_valid(reasons), pa.scalar(None, target), values)
    else:
        reasons = pa.nulls(len(values), pa.string())
    return table.append_column(step.column, values).append_column(step.errors, reasons), failed


def _compute(table: pa.Table, parts: Sequence[Compiled], clean: bool) -> _Outcome:
    """The parts' values over ``table``, and why cells failed: one pass of ``main`` when none fails."""
    if clean:
        try:
            return _project(table, [p.main for p in parts]), None
        except _FAILURES:
            pass
    reasons = [p.guard.reason for p in parts if p.guard is not None]
    exprs = [p.safe for p in parts] + ([first_reason(reasons)] if reasons else [])

    def run(start: int, length: int) -> _Outcome:
        out = _project(table.slice(start, length), exprs)
        return out[: len(parts)], out[len(parts)] if reasons else None

    return _bisect(run, table.num_rows, [arrow_of(p.type) for p in parts])


def _project(table: pa.Table, exprs: Sequence[pc.Expression]) -> list[pa.ChunkedArray]:
    return pds.dataset(table).to_table(columns={f"_{i}": e for i, e in enumerate(exprs)}).columns


def _bisect(run: Callable[[int, int], _Outcome], rows: int, types: Sequence[pa.DataType]) -> _Outcome:
    """``run`` over all rows, or where it raises, over halves until each failing row is alone: its values are null
    and its reason is the exception's message. Fast while failures are rare; each costs about log2(rows) runs."""
    try:
        return run(0, rows)
    except _FAILURES:
        run(0, 0)  # raises again when no row is to blame: the computation itself is wrong
    pieces: list[tuple[int, _Outcome]] = []
    pending = [(rows // 2, rows - rows // 2), (0, rows // 2)]  # popped left half first: pieces stay in order
    while pending:
        start, length = pending.pop()
        try:
            pieces.append((length, run(start, length)))
        except _FAILURES as exc:
            if length == 1:
                pieces.append((1, ([pa.nulls(1, t) for t in types], pa.array([str(exc)], pa.string()))))
                continue
            half = length // 2
            pending += [(start + half, length - half), (start, half)]
    values = [
        pa.chunked_array([chunk for _, (v, _) in pieces for chunk in _chunks(v[i].cast(t))], t)
        for i, t in enumerate(types)
    ]
    if all(r is None for _, (_, r) in pieces):
        return values, None
    reasons = [pa.nulls(n, pa.string()) if r is None else r for n, (_, r) in pieces]
    return values, pa.chunked_array([chunk for r in reasons for chunk in _chunks(r)], pa.string())


def _chunks(values: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    return values.chunks if isinstance(values, pa.ChunkedArray) else [values]
