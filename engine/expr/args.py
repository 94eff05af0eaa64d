"""Checking a function's arguments: the engine's API for the authors of expression functions (plugins).

A function takes the compiled arguments (``engine.expr.core.Compiled``: an Arrow expression, its type, the columns
it reads) and returns a ``Compiled`` built with ``apply`` / ``guarded`` from ``engine.expr.core``, or a ``StepCall``
for work done over whole columns. It checks its arguments when the expression is compiled, with the helpers here:
they raise ``ArgumentError`` for argument ``i`` (0-based here, counted from 1 in the message, as users do) or
``TypeError`` for the call, which the compiler turns into an InvalidExpression pointing at that argument or call.

A third-party function, ``clamp(x, lo, hi)`` with constant bounds, registered by a plugin's entry point::

    from collections.abc import Mapping

    import pyarrow.compute as pc

    from engine.expr import args
    from engine.expr.core import Compiled, Function, apply
    from engine.registry import hookimpl


    def clamp(*arguments: Compiled) -> Compiled:
        args.count(arguments, 3, 3)
        x = args.number(arguments, 0)
        lo, hi = (args.constant(arguments, i, args.NUMBERS, "number") for i in (1, 2))
        if lo > hi:
            raise args.ArgumentError(2, f"must not exceed the upper bound {hi}")

        def kernel(e: pc.Expression) -> pc.Expression:  # a null x stays null: no skip_nulls
            return pc.min_element_wise(pc.max_element_wise(e, lo, skip_nulls=False), hi, skip_nulls=False)

        return apply(kernel, x.type, x)


    @hookimpl
    def tessera_functions() -> Mapping[str, Function]:
        return {"clamp": clamp}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pds

from engine.expr.core import ArgumentError, Compiled, convert, unify
from engine.model.types import MEDIA_TYPES

__all__ = [
    "NUMBERS",
    "TEMPORAL",
    "TEXT",
    "ArgumentError",
    "as_float",
    "constant",
    "count",
    "is_constant",
    "number",
    "same_type",
    "text",
]

NUMBERS = frozenset({"int", "float"})
TEXT = frozenset({"string", "json", *MEDIA_TYPES})  # what string functions take: json and media values are text
TEMPORAL = frozenset({"timestamp", "date"})
_ONE_ROW = pa.table({"_": [0]})


def count(args: Sequence[Compiled], low: int, high: int | None) -> None:
    """Between ``low`` and ``high`` arguments (None: no upper bound); TypeError otherwise."""
    n = len(args)
    if low <= n and (high is None or n <= high):
        return
    if high is None:
        wanted = f"at least {low} arguments"
    elif low == high:
        wanted = f"{low} argument{'s' if low != 1 else ''}"
    else:
        wanted = f"{low} {'or' if high == low + 1 else 'to'} {high} arguments"
    raise TypeError(f"takes {wanted} ({n} given)")


def number(args: Sequence[Compiled], i: int) -> Compiled:
    """Argument ``i``, which must be an int or a float."""
    if args[i].type not in NUMBERS:
        raise ArgumentError(i + 1, f"must be a number, got {args[i].type}")
    return args[i]


def as_float(args: Sequence[Compiled], i: int) -> Compiled:
    """Argument ``i``, a number, as a float (an int converts as ``float()`` does)."""
    return convert(number(args, i), "float")


def text(args: Sequence[Compiled], i: int) -> Compiled:
    """Argument ``i``, which must be text (a string, json or media value), typed as a string."""
    if args[i].type not in TEXT:
        raise ArgumentError(i + 1, f"must be a string, got {args[i].type}")
    return replace(args[i], type="string")


def is_constant(c: Compiled) -> bool:
    """Whether ``c`` reads no column (``2``, ``-1``, ``'a' + 'b'``), so it has one value for every row."""
    return not c.columns and not c.steps


def constant(args: Sequence[Compiled], i: int, kinds: frozenset[str], what: str) -> Any:
    """The value of argument ``i``, which must be a constant of one of the types ``kinds`` (``what`` names them in
    the error) and not null."""
    c = args[i]
    if c.type not in kinds or not is_constant(c):
        kind = "a column" if not is_constant(c) else c.type
        raise ArgumentError(i + 1, f"must be a constant {what}, got {kind}")
    try:
        value = pds.dataset(_ONE_ROW).to_table(columns={"v": c.expr})["v"][0].as_py()
    except (ValueError, ArithmeticError) as exc:
        raise ArgumentError(i + 1, f"cannot be computed: {exc}") from None
    if value is None:
        raise ArgumentError(i + 1, f"must be a constant {what}, got None")
    return value


def same_type(args: Sequence[Compiled], allowed: frozenset[str], what: str) -> str:
    """The type all arguments take (int and float mix as float; null mixes with anything); each must be one of
    ``allowed`` (``what`` names them in the error)."""
    type_ = "null"
    for i, a in enumerate(args):
        if a.type not in allowed and a.type != "null":
            raise ArgumentError(i + 1, f"must be {what}, got {a.type}")
        common = unify(type_, a.type)
        if common is None:
            raise ArgumentError(i + 1, f"has type {a.type}, which does not mix with {type_}")
        type_ = common
    return type_
