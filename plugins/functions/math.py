"""Numbers (``x`` int or float), and the comparisons and null handling that take any ordered value.

- ``abs(x)``; ``pow(x, y)`` is ``x ** y``. ``sqrt exp log log10`` give floats, like ``math``: ``sqrt`` of a negative
  number and ``log`` of a number <= 0 fail the cell; ``log(x, base)`` is ``log(x) / log(base)``; ``exp`` beyond the
  float range gives inf, as ``**`` does.
- ``round(x)``, ``floor(x)``, ``ceil(x)`` give ints, like Python: halves round to even; NaN, inf and floats beyond 64
  bits fail the cell. ``round(x, n)`` (``n`` a constant) keeps ``x``'s type. For floats Arrow rounds ``x * 10**n``,
  so a float whose decimal form is inexact (2.675) may round unlike Python's exact method, and ``n < 0`` may be off
  in the last digit.
- ``min(a, b, ...)`` / ``max(a, b, ...)`` of two or more numbers, strings, dates or timestamps: element-wise, skipping
  nulls like SQL's LEAST / GREATEST (null only when all are); NaN is skipped too.
- ``coalesce(a, b, ...)``: the first argument that is not null. As in SQL, later arguments are not evaluated for that
  cell: their failures do not count.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import replace

import pyarrow as pa
import pyarrow.compute as pc

from engine.expr import args
from engine.expr.args import NUMBERS, TEMPORAL, TEXT
from engine.expr.core import (
    NO_REASON,
    Check,
    Compiled,
    Function,
    Guard,
    apply,
    arithmetic,
    convert,
    guarded,
    reason_of,
)
from engine.model.coerce import INT_MAX
from engine.model.types import TIMESTAMP
from engine.registry import hookimpl
from plugins.functions.convert import to_int


def _abs(*a: Compiled) -> Compiled:
    args.count(a, 1, 1)
    x = args.number(a, 0)
    return apply(pc.abs_checked, x.type, x)


def _pow(*a: Compiled) -> Compiled:
    args.count(a, 2, 2)
    x, y = args.number(a, 0), args.number(a, 1)
    natural = y.type == "int" and args.is_constant(y) and args.constant(a, 1, NUMBERS, "number") >= 0
    return arithmetic(ast.Pow, x, y, natural_power=natural)


def _sqrt(*a: Compiled) -> Compiled:
    args.count(a, 1, 1)
    negative = Check(0, lambda e: pc.less(e, 0.0), "sqrt() of a negative number")
    return guarded(pc.sqrt_checked, "float", [args.as_float(a, 0)], [negative], unchecked=pc.sqrt)


def _exp(*a: Compiled) -> Compiled:
    args.count(a, 1, 1)
    return apply(pc.exp, "float", args.as_float(a, 0))


def _logarithm(kernel: Callable[..., pc.Expression], name: str, x: Compiled) -> Compiled:
    not_positive = Check(0, lambda e: pc.less_equal(e, 0.0), f"{name}() of a number <= 0")
    return guarded(kernel, "float", [x], [not_positive], unchecked=_UNCHECKED[kernel])


_UNCHECKED = {pc.ln_checked: pc.ln, pc.log10_checked: pc.log10}


def _log(*a: Compiled) -> Compiled:
    args.count(a, 1, 2)
    value = _logarithm(pc.ln_checked, "log", args.as_float(a, 0))
    if len(a) == 1:
        return value
    base = _logarithm(pc.ln_checked, "log", args.as_float(a, 1))
    zero = Check(1, lambda b: pc.equal(b, 0.0), "division by zero")  # base 1
    return guarded(pc.divide_checked, "float", [value, base], [zero], unchecked=pc.divide)


def _log10(*a: Compiled) -> Compiled:
    args.count(a, 1, 1)
    return _logarithm(pc.log10_checked, "log10", args.as_float(a, 0))


def _round(*a: Compiled) -> Compiled:
    args.count(a, 1, 2)
    x = args.number(a, 0)
    if len(a) == 1:
        return x if x.type == "int" else to_int(apply(lambda e: pc.round(e, 0, "half_to_even"), "float", x))
    n = args.constant(a, 1, frozenset({"int"}), "int")
    return _round_int(x, n) if x.type == "int" else _round_float(x, n)


def _round_float(x: Compiled, n: int) -> Compiled:
    if n > 308:  # finer than any float's digits: Python returns x
        return x
    if n < -308:  # coarser than any finite float: Python gives zero
        return apply(lambda e: pc.if_else(pc.is_finite(e), pc.multiply(e, 0.0), e), "float", x, repeats=3)
    if n <= 0:
        return apply(lambda e: pc.round(e, n, "half_to_even"), "float", x)
    # Where x * 10**n reaches 2**52 it has no fraction and x is already rounded; Arrow's round would overflow there.
    limit = 2.0**52 / 10.0**n

    def kernel(e: pc.Expression) -> pc.Expression:
        small = pc.less(pc.abs(e), limit)
        return pc.if_else(small, pc.round(pc.if_else(small, e, 0.0), n, "half_to_even"), e)

    return apply(kernel, "float", x, repeats=4)


def _round_int(x: Compiled, n: int) -> Compiled:
    if n >= 0:
        return x
    if n >= -18:
        return apply(lambda e: pc.round(e, n, "half_to_even"), "int", x)
    if n < -19:  # every int64 rounds to 0
        return apply(lambda e: pc.multiply(e, 0), "int", x)
    # Beyond 5e18, Python gives ±10**19, which is beyond 64 bits: 2 * INT_MAX raises the overflow there.
    big = Check(0, lambda e: pc.or_kleene(pc.greater(e, 5 * 10**18), pc.less(e, -5 * 10**18)), "integer overflow")
    return guarded(lambda e: pc.multiply_checked(pc.if_else(big.bad(e), INT_MAX, 0), 2), "int", [x], [big])


def _rounding(kernel: Callable[..., pc.Expression]) -> Function:
    def function(*a: Compiled) -> Compiled:
        args.count(a, 1, 1)
        x = args.number(a, 0)
        return x if x.type == "int" else to_int(apply(kernel, "float", x))

    return function


def _extreme(kernel: Callable[..., pc.Expression]) -> Function:
    def function(*a: Compiled) -> Compiled:
        args.count(a, 2, None)
        type_ = args.same_type(a, NUMBERS | TEXT - {"json"} | TEMPORAL, "a number, string, date or timestamp")
        if type_ == "null":
            return a[0]
        values = [convert(v, type_) for v in a]
        if type_ == "timestamp":  # Arrow has no kernel for zoned timestamps: compare their microseconds
            return apply(
                lambda *es: kernel(*(e.cast(pa.int64()) for e in es), skip_nulls=True).cast(TIMESTAMP),
                type_,
                *values,
            )
        return apply(lambda *es: kernel(*es, skip_nulls=True), type_, *values)

    return function


def _coalesce(*a: Compiled) -> Compiled:
    args.count(a, 1, None)
    type_ = args.same_type(a, frozenset({"int", "float", "bool", "timestamp", "date", *TEXT}), "a value")
    values = [convert(v, type_) for v in a]
    result = apply(pc.coalesce, type_, *values)
    if result.guard is None:
        return result
    # An argument's failure counts only where every argument before it is null.
    reason = reason_of(values[-1])
    for v in reversed(values[:-1]):
        later = pc.if_else(pc.is_null(v.safe), reason, NO_REASON)
        reason = later if v.guard is None else pc.coalesce(v.guard.reason, later)
    reason_size = sum(v.reason_size + v.safe_size + 3 for v in values)
    return replace(result, guard=Guard(result.safe, reason, result.safe_size, reason_size))


@hookimpl
def tessera_functions() -> Mapping[str, Function]:
    return {
        "abs": _abs,
        "round": _round,
        "floor": _rounding(pc.floor),
        "ceil": _rounding(pc.ceil),
        "sqrt": _sqrt,
        "exp": _exp,
        "log": _log,
        "log10": _log10,
        "pow": _pow,
        "min": _extreme(pc.min_element_wise),
        "max": _extreme(pc.max_element_wise),
        "coalesce": _coalesce,
    }
