"""Calling user-defined functions: how calls compile and run.

A UDF belongs to a table and lives in its schema (``TableSchema.udfs``), so it travels with the schema to every
shard and a change to it is a schema change (a write planned before it is refused with ``schema_changed``).

The engine never runs UDF code. It asks the UDF's language (an ``engine.registry.UdfLanguage`` that a plugin
registers: the built-in ``python``, ``javascript`` and ``sql`` are in ``plugins.udf_languages``), found in the
process's registry, to *check* a definition when it is registered and to *run* it over whole Arrow columns. A check may find that the function is a single expression built from
arithmetic, comparisons and conditionals: it then hands back that expression (``Udf.inline``) and calls compile into
the same vectorised kernels as a computed column's expression, with no sandbox round trip. SQL UDFs are always
inlined: SQL is translated, never run.

In an expression (a computed column of type ``udf`` or ``expression``), ``name(arg, ...)`` compiles to:

- the inline expression with each parameter bound to its argument (converted to the parameter's type), or
- a *step* (``engine.expr.core``) whose kernel (``UdfKernel``) hands the argument columns to the language (the
  sandbox's languages send them to worker processes in batches); failing rows become failing cells (``on_error``), a limit that was hit fails the whole computation.

``deterministic`` UDFs are called once per distinct argument tuple within a computation.
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import FieldError, SchemaMismatch, UdfRuntimeError
from engine.expr.compiler import compile_expression
from engine.expr.core import ArgumentError, Compiled, Function, StepCall, StepResult, convert
from engine.expr.evaluate import evaluate
from engine.model.coerce import column_array
from engine.model.schema import Column, TableSchema
from engine.model.types import is_textual
from engine.model.udfs import Parameter, Udf
from engine.registry import UdfLanguage, current


# -- the language ------------------------------------------------------------------------------------------------
def language(udf: Udf) -> UdfLanguage:
    """The language ``udf`` is written in, from this process's registry; PluginError if none provides it."""
    return current().language(udf.language)


NO_COLUMNS = TableSchema("udf", ())


# -- calling from expressions ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1024)
def functions(udfs: tuple[Udf, ...]) -> Mapping[str, Function]:
    """The callables ``compile_expression`` takes for a table's UDFs."""
    return {u.name: functools.partial(_call, u) for u in udfs}


def _call(udf: Udf, *args: Compiled) -> Compiled | StepCall:
    want = len(udf.parameters)
    if len(args) != want:
        raise TypeError(f"takes {want} argument{'s' if want != 1 else ''}, got {len(args)}")
    bound = tuple(_argument(i, a, p) for i, (a, p) in enumerate(zip(args, udf.parameters, strict=True)))
    if udf.inline is not None:
        names = {p.name: a for p, a in zip(udf.parameters, bound, strict=True)}
        result = compile_expression(udf.inline, NO_COLUMNS, field="code", bindings=names)
        return convert(result, udf.return_type)
    if not bound:  # a step needs an argument to know how many rows there are
        bound = (Compiled(pc.scalar(0), "int", frozenset()),)
    return StepCall(UdfKernel(udf), udf.return_type, bound)


def _argument(i: int, arg: Compiled, p: Parameter) -> Compiled:
    if arg.type == p.type or arg.type == "null" or (arg.type, p.type) == ("int", "float"):
        return convert(arg, p.type)
    if p.type == "string" and is_textual(arg.type):
        return convert(arg, "string")
    raise ArgumentError(i + 1, f"({p.name}) must be {p.type}, got {arg.type}")


@dataclass(frozen=True)
class UdfKernel:
    """A step kernel: the UDF over whole columns, through its language in this process (deterministic: memoised)."""

    udf: Udf

    def __call__(self, arrays: list[pa.Array]) -> StepResult:
        rows = len(arrays[0])
        args = arrays[: len(self.udf.parameters)]
        if self.udf.deterministic and rows > 1:
            return _memoised(self.udf, args, rows)
        return language(self.udf).run(self.udf, args, rows)


def _memoised(udf: Udf, args: list[pa.Array], rows: int) -> StepResult:
    """The UDF once per distinct argument tuple, spread back over the rows."""
    if not args:
        once = language(udf).run(udf, [], 1)
        index = pa.array(np.zeros(rows, np.int64))
        return StepResult(once.values.take(index), once.errors.take(index))
    if len(args) == 1:
        distinct = pc.unique(args[0])
        if len(distinct) == rows:
            return language(udf).run(udf, args, rows)
        index = pc.index_in(args[0], value_set=distinct, skip_nulls=False)
        unique_args = [distinct]
    else:
        names = [f"a{i}" for i in range(len(args))]
        frame = pl.from_arrow(pa.table(dict(zip(names, args, strict=True))))
        assert isinstance(frame, pl.DataFrame)
        distinct_frame = frame.unique(maintain_order=True)
        if distinct_frame.height == rows:
            return language(udf).run(udf, args, rows)
        numbered = distinct_frame.with_row_index("_u")
        joined = frame.join(numbered, on=names, how="left", nulls_equal=True, maintain_order="left")
        index = joined["_u"].to_arrow()
        unique_args = [distinct_frame[n].to_arrow() for n in names]
        unique_args = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in unique_args]
    once = language(udf).run(udf, unique_args, len(unique_args[0]))
    return StepResult(once.values.take(index), once.errors.take(index))


# -- executing one call ------------------------------------------------------------------------------------------
def arguments(udf: Udf, values: Mapping[str, Any]) -> list[pa.Array]:
    """The named arguments of an execute call as one-row arrays; SchemaMismatch (422) lists every bad one."""
    errors: list[FieldError] = []
    if not isinstance(values, Mapping):
        raise SchemaMismatch([FieldError(("body",), "the arguments must be an object of name: value", "type_error")])
    names = {p.name for p in udf.parameters}
    for extra in sorted(set(values) - names):
        errors.append(FieldError(("body", extra), f"'{udf.name}' has no parameter '{extra}'", "extra_forbidden"))
    arrays: list[pa.Array] = []
    for p in udf.parameters:
        if p.name not in values:
            errors.append(FieldError(("body", p.name), f"parameter '{p.name}' ({p.type}) is missing", "missing"))
            continue
        arrays.append(column_array(Column(p.name, p.type), [values[p.name]], functools.partial(_at, p.name), errors))
    if errors:
        raise SchemaMismatch(errors)
    return arrays


@functools.lru_cache(maxsize=256)
def _inline_call(udf: Udf) -> Compiled:
    """``name(param, ...)`` compiled over a table of the parameters: what execute evaluates for an inlined UDF."""
    call = "{}({})".format(udf.name, ", ".join(p.name for p in udf.parameters))
    schema = TableSchema("udf", tuple(Column(p.name, p.type) for p in udf.parameters))
    return compile_expression(call, schema, field="code", functions=functions((udf,)))


def _at(name: str, _row: int) -> tuple[str, ...]:
    return ("body", name)


def execute(udf: Udf, values: Mapping[str, Any]) -> Any:
    """Call ``udf`` once with named arguments; returns the result as a JSON value. Raises UdfRuntimeError."""
    arrays = arguments(udf, values)
    if udf.inline is not None:
        table = pa.table({p.name: a for p, a in zip(udf.parameters, arrays, strict=True)}) if arrays else None
        outcome = evaluate(_inline_call(udf), table if table is not None else pa.table({"_": [0]}))
        reason = outcome.first_error.partition(": ")[2] if outcome.errors and outcome.first_error else None
        value = outcome.values[0]
    else:
        result = language(udf).run(udf, arrays, 1)
        reason, value = result.errors[0].as_py(), result.values[0]
    if reason is not None:
        raise UdfRuntimeError(f"UDF '{udf.name}' failed: {reason}", udf=udf.name, reason=reason)
    return json_value(value.as_py(), udf.return_type)


def json_value(value: Any, type_: str) -> Any:
    if value is None:
        return None
    if type_ == "json":
        return orjson.loads(value)
    if type_ == "timestamp":
        return value.isoformat().replace("+00:00", "Z")
    if type_ == "float" and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    return value


def calls(expression: str, names: set[str]) -> set[str]:
    """The UDFs among ``names`` that ``expression`` calls."""
    try:
        tree = ast.parse(expression, mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return set()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
            found.add(node.func.id)
    return found
