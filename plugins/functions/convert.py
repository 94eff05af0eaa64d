"""Conversions: ``int(x)`` truncates floats toward zero and reads text of digits with an optional sign; ``float(x)``
reads text such as ``1.5``, ``-2e3``, ``nan``, ``inf``; spaces around the number are allowed, ``_`` separators are
not, and text that is not a number fails the cell. ``str(x)`` writes bools as ``True`` / ``False``, timestamps as
``2024-01-02 03:04:05+00:00`` and dates as ``2024-01-02`` like Python, and floats in Arrow's shortest form that reads
back exactly (``1.0`` as ``1``, ``1e15`` as ``1e+15``).
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from engine.expr import args
from engine.expr.args import TEXT, ArgumentError
from engine.expr.core import Check, Compiled, Function, apply, guarded
from engine.registry import hookimpl

_NOT_INT = "cannot convert to int: NaN, infinite or beyond 64 bits"


def to_int(x: Compiled) -> Compiled:
    """A float with no fraction as an int; NaN, inf and floats beyond 64 bits fail the cell (``round`` uses it)."""

    def outside(e: pc.Expression) -> pc.Expression:  # NaN compares false: outside too
        return pc.invert(pc.and_kleene(pc.greater_equal(e, -(2.0**63)), pc.less(e, 2.0**63)))

    return guarded(lambda e: e.cast(pa.int64()), "int", [x], [Check(0, outside, _NOT_INT)])


# Text that cannot be a number, whatever Arrow's parser makes of the rest (digits beyond 64 bits, a lone '.').
_INT_TEXT = r"^-?[0-9]+$"
_FLOAT_TEXT = r"(?i)^[+-]?(inf|infinity|nan|[0-9]*\.?[0-9]*(e[+-]?[0-9]+)?)$"


def _parse(s: Compiled, type_: str) -> Compiled:
    # Python allows spaces around the number, and a '+', which Arrow refuses for ints.
    def clean(e: pc.Expression) -> pc.Expression:
        e = pc.utf8_trim_whitespace(e)
        return pc.replace_substring_regex(e, r"^\+([0-9])", r"\1") if type_ == "int" else e

    if type_ == "int":
        target, pattern, reason = pa.int64(), _INT_TEXT, "invalid literal for int()"
    else:
        target, pattern, reason = pa.float64(), _FLOAT_TEXT, "could not convert string to float"
    garbage = Check(0, lambda e: pc.invert(pc.match_substring_regex(e, pattern)), reason)
    return guarded(lambda e: e.cast(target), type_, [apply(clean, "string", s)], [garbage])


def _int(*a: Compiled) -> Compiled:
    args.count(a, 1, 1)
    x = a[0]
    if x.type == "int":
        return x
    if x.type == "float":
        return to_int(apply(pc.trunc, "float", x))
    if x.type == "bool":
        return apply(lambda e: e.cast(pa.int64()), "int", x)
    if x.type in TEXT:
        return _parse(args.text(a, 0), "int")
    raise ArgumentError(1, f"must be a number, bool or string, got {x.type}")


def _float(*a: Compiled) -> Compiled:
    args.count(a, 1, 1)
    x = a[0]
    if x.type == "float":
        return x
    if x.type in ("int", "bool"):
        return apply(lambda e: e.cast(pa.float64()), "float", x)
    if x.type in TEXT:
        return _parse(args.text(a, 0), "float")
    raise ArgumentError(1, f"must be a number, bool or string, got {x.type}")


def _str(*a: Compiled) -> Compiled:
    args.count(a, 1, 1)
    x = a[0]
    if x.type in TEXT:
        return args.text(a, 0)
    if x.type == "bool":
        return apply(lambda e: pc.if_else(e, "True", "False"), "string", x)
    if x.type == "timestamp":
        return apply(_timestamp_text, "string", x)
    if x.type in ("int", "float", "date"):
        return apply(lambda e: e.cast(pa.string()), "string", x)
    raise ArgumentError(1, f"cannot be converted to a string, got {x.type}")


def _timestamp_text(e: pc.Expression) -> pc.Expression:
    # %S carries the microseconds; Python leaves them out when they are zero.
    text = pc.replace_substring_regex(pc.strftime(e, format="%Y-%m-%d %H:%M:%S", locale="C"), r"\.000000$", "")
    return pc.binary_join_element_wise(text, "+00:00", "")


@hookimpl
def tessera_functions() -> Mapping[str, Function]:
    return {"int": _int, "float": _float, "str": _str}
