"""The built-in functions of expressions, in ``FUNCTIONS``, where the compiler looks names up.

Each checks its argument count and types when the expression is compiled (a wrong call is an ``InvalidExpression``
naming the function and the argument, at that argument), infers its result type, and computes with Arrow kernels,
or polars where Arrow has none (``json_get``): nothing runs per row in Python. Semantics follow Python where that is
cheap; a null argument gives null unless said otherwise. A *failing* cell is null, counted by ``evaluate``.

Numbers (``x`` int or float):

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

Text (``s`` a string, json or media value):

- ``lower upper strip len``: ``len`` counts characters; ``strip(s, chars)`` strips those characters.
- ``replace(s, old, new)``, ``contains(s, sub)``, ``startswith(s, prefix)``, ``endswith(s, suffix)``: the other
  arguments are constant strings (``old`` not empty).
- ``concat(a, b, ...)`` joins strings. Other types are a compile error (convert them with ``str(x)``); a null
  argument makes the result null, as with ``+`` (``coalesce(x, '')`` skips it).
- ``substr(s, start)`` is ``s[start:]`` and ``substr(s, start, length)`` is ``s[start:][:length]``: 0-based, a
  negative ``start`` counts from the end; ``start`` and ``length`` are constant ints, ``length >= 0``.

Dates (``t`` a timestamp or a date, in UTC; a date is its midnight): ``year month day hour minute second weekday``
give ints; ``weekday`` counts from Monday = 0, like ``datetime.weekday()``.

Conversions: ``int(x)`` truncates floats toward zero and reads text of digits with an optional sign; ``float(x)``
reads text such as ``1.5``, ``-2e3``, ``nan``, ``inf``; spaces around the number are allowed, ``_`` separators are
not, and text that is not a number fails the cell. ``str(x)`` writes bools as ``True`` / ``False``, timestamps as
``2024-01-02 03:04:05+00:00`` and dates as ``2024-01-02`` like Python, and floats in Arrow's shortest form that reads
back exactly (``1.0`` as ``1``, ``1e15`` as ``1e+15``).

JSON: ``json_get(doc, path)`` is the value at ``path`` in the JSON text ``doc`` (``"a.b[0]"``: keys joined by dots,
``[n]`` 0-based indexes into arrays; keys hold any character but ``. [ ] ' \\``), as a string: strings unquoted,
numbers and booleans as JSON writes them, objects and arrays as compact JSON text, so ``json_get`` applies again. It
is null where the value is null or absent (no such key, an index past the end, a key into a value that is not an
object), as in SQL/JSON's lax mode. A ``doc`` that is not JSON text fails the cell. ``path`` may be computed per row:
a constant one is checked when compiled, one that is not a path fails the cell.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds

from engine.expr.core import (
    ArgumentError,
    Check,
    Compiled,
    Function,
    Guard,
    StepCall,
    StepResult,
    apply,
    arithmetic,
    convert,
    guarded,
    reason_of,
    unify,
)
from engine.model.coerce import INT_MAX
from engine.model.types import MEDIA_TYPES, TIMESTAMP

NUMBERS = frozenset({"int", "float"})
TEXT = frozenset({"string", "json", *MEDIA_TYPES})
TEMPORAL = frozenset({"timestamp", "date"})
_NO_REASON = pc.scalar(pa.scalar(None, pa.string()))
_NO_TEXT = pa.scalar(None, pa.string())


# Checking arguments. Indexes are 0-based here; ArgumentError counts from 1, as users do.


def _count(args: Sequence[Compiled], low: int, high: int | None) -> None:
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


def _number(args: Sequence[Compiled], i: int) -> Compiled:
    if args[i].type not in NUMBERS:
        raise ArgumentError(i + 1, f"must be a number, got {args[i].type}")
    return args[i]


def _text(args: Sequence[Compiled], i: int) -> Compiled:
    if args[i].type not in TEXT:
        raise ArgumentError(i + 1, f"must be a string, got {args[i].type}")
    return replace(args[i], type="string")


def _is_constant(c: Compiled) -> bool:
    return not c.columns and not c.steps


_ONE_ROW = pa.table({"_": [0]})


def _constant(args: Sequence[Compiled], i: int, kinds: frozenset[str], what: str) -> Any:
    """The value of an argument that reads no column (``2``, ``-1``, ``'a' + 'b'``)."""
    c = args[i]
    if c.type not in kinds or not _is_constant(c):
        kind = "a column" if not _is_constant(c) else c.type
        raise ArgumentError(i + 1, f"must be a constant {what}, got {kind}")
    try:
        value = pds.dataset(_ONE_ROW).to_table(columns={"v": c.expr})["v"][0].as_py()
    except (ValueError, ArithmeticError) as exc:
        raise ArgumentError(i + 1, f"cannot be computed: {exc}") from None
    if value is None:
        raise ArgumentError(i + 1, f"must be a constant {what}, got None")
    return value


def _same_type(args: Sequence[Compiled], allowed: frozenset[str], what: str) -> str:
    """The type all arguments take (int and float mix as float; null mixes with anything)."""
    type_ = "null"
    for i, a in enumerate(args):
        if a.type not in allowed and a.type != "null":
            raise ArgumentError(i + 1, f"must be {what}, got {a.type}")
        common = unify(type_, a.type)
        if common is None:
            raise ArgumentError(i + 1, f"has type {a.type}, which does not mix with {type_}")
        type_ = common
    return type_


# Numbers.


def _abs(*args: Compiled) -> Compiled:
    _count(args, 1, 1)
    x = _number(args, 0)
    return apply(pc.abs_checked, x.type, x)


def _pow(*args: Compiled) -> Compiled:
    _count(args, 2, 2)
    x, y = _number(args, 0), _number(args, 1)
    natural = y.type == "int" and _is_constant(y) and _constant(args, 1, NUMBERS, "number") >= 0
    return arithmetic(ast.Pow, x, y, natural_power=natural)


def _float(args: Sequence[Compiled], i: int) -> Compiled:
    return convert(_number(args, i), "float")


def _sqrt(*args: Compiled) -> Compiled:
    _count(args, 1, 1)
    negative = Check(0, lambda e: pc.less(e, 0.0), "sqrt() of a negative number")
    return guarded(pc.sqrt_checked, "float", [_float(args, 0)], [negative], unchecked=pc.sqrt)


def _exp(*args: Compiled) -> Compiled:
    _count(args, 1, 1)
    return apply(pc.exp, "float", _float(args, 0))


def _logarithm(kernel: Callable[..., pc.Expression], name: str, x: Compiled) -> Compiled:
    not_positive = Check(0, lambda e: pc.less_equal(e, 0.0), f"{name}() of a number <= 0")
    return guarded(kernel, "float", [x], [not_positive], unchecked=_UNCHECKED[kernel])


_UNCHECKED = {pc.ln_checked: pc.ln, pc.log10_checked: pc.log10}


def _log(*args: Compiled) -> Compiled:
    _count(args, 1, 2)
    value = _logarithm(pc.ln_checked, "log", _float(args, 0))
    if len(args) == 1:
        return value
    base = _logarithm(pc.ln_checked, "log", _float(args, 1))
    zero = Check(1, lambda b: pc.equal(b, 0.0), "division by zero")  # base 1
    return guarded(pc.divide_checked, "float", [value, base], [zero], unchecked=pc.divide)


def _log10(*args: Compiled) -> Compiled:
    _count(args, 1, 1)
    return _logarithm(pc.log10_checked, "log10", _float(args, 0))


_NOT_INT = "cannot convert to int: NaN, infinite or beyond 64 bits"


def _to_int(x: Compiled) -> Compiled:
    """A float with no fraction as an int."""

    def outside(e: pc.Expression) -> pc.Expression:  # NaN compares false: outside too
        return pc.invert(pc.and_kleene(pc.greater_equal(e, -(2.0**63)), pc.less(e, 2.0**63)))

    return guarded(lambda e: e.cast(pa.int64()), "int", [x], [Check(0, outside, _NOT_INT)])


def _round(*args: Compiled) -> Compiled:
    _count(args, 1, 2)
    x = _number(args, 0)
    if len(args) == 1:
        return x if x.type == "int" else _to_int(apply(lambda e: pc.round(e, 0, "half_to_even"), "float", x))
    n = _constant(args, 1, frozenset({"int"}), "int")
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


def _rounding(kernel: Callable[..., pc.Expression]) -> Callable[..., Compiled]:
    def function(*args: Compiled) -> Compiled:
        _count(args, 1, 1)
        x = _number(args, 0)
        return x if x.type == "int" else _to_int(apply(kernel, "float", x))

    return function


def _extreme(kernel: Callable[..., pc.Expression]) -> Callable[..., Compiled]:
    def function(*args: Compiled) -> Compiled:
        _count(args, 2, None)
        type_ = _same_type(args, NUMBERS | TEXT - {"json"} | TEMPORAL, "a number, string, date or timestamp")
        if type_ == "null":
            return args[0]
        values = [convert(a, type_) for a in args]
        if type_ == "timestamp":  # Arrow has no kernel for zoned timestamps: compare their microseconds
            return apply(
                lambda *es: kernel(*(e.cast(pa.int64()) for e in es), skip_nulls=True).cast(TIMESTAMP),
                type_,
                *values,
            )
        return apply(lambda *es: kernel(*es, skip_nulls=True), type_, *values)

    return function


def _coalesce(*args: Compiled) -> Compiled:
    _count(args, 1, None)
    type_ = _same_type(args, frozenset({"int", "float", "bool", "timestamp", "date", *TEXT}), "a value")
    values = [convert(a, type_) for a in args]
    result = apply(pc.coalesce, type_, *values)
    if result.guard is None:
        return result
    # An argument's failure counts only where every argument before it is null.
    reason = reason_of(values[-1])
    for v in reversed(values[:-1]):
        later = pc.if_else(pc.is_null(v.safe), reason, _NO_REASON)
        reason = later if v.guard is None else pc.coalesce(v.guard.reason, later)
    reason_size = sum(v.reason_size + v.safe_size + 3 for v in values)
    return replace(result, guard=Guard(result.safe, reason, result.safe_size, reason_size))


# Text.


def _unary_text(kernel: Callable[..., pc.Expression], type_: str = "string") -> Callable[..., Compiled]:
    def function(*args: Compiled) -> Compiled:
        _count(args, 1, 1)
        return apply(kernel, type_, _text(args, 0))

    return function


def _strip(*args: Compiled) -> Compiled:
    _count(args, 1, 2)
    s = _text(args, 0)
    if len(args) == 1:
        return apply(pc.utf8_trim_whitespace, "string", s)
    chars = _constant(args, 1, TEXT, "string")
    return apply(lambda e: pc.utf8_trim(e, characters=chars), "string", s)


def _concat(*args: Compiled) -> Compiled:
    _count(args, 1, None)
    for i, a in enumerate(args):
        if a.type not in TEXT:
            raise ArgumentError(i + 1, f"must be a string, got {a.type} (convert it with str())")
    return apply(
        lambda *es: pc.binary_join_element_wise(*es, ""), "string", *(_text(args, i) for i in range(len(args)))
    )


def _substr(*args: Compiled) -> Compiled:
    _count(args, 2, 3)
    s = _text(args, 0)
    start = _constant(args, 1, frozenset({"int"}), "int")
    if len(args) == 2:
        return apply(lambda e: pc.utf8_slice_codeunits(e, start, INT_MAX), "string", s)
    length = _constant(args, 2, frozenset({"int"}), "int")
    if length < 0:
        raise ArgumentError(3, f"must not be negative, got {length}")
    if start >= 0:
        return apply(lambda e: pc.utf8_slice_codeunits(e, start, min(start + length, INT_MAX)), "string", s)
    # s[start:start + length] would count the end from the string's length; s[start:][:length] does not.
    tail = apply(lambda e: pc.utf8_slice_codeunits(e, start, INT_MAX), "string", s)
    return apply(lambda e: pc.utf8_slice_codeunits(e, 0, length), "string", tail)


def _replace(*args: Compiled) -> Compiled:
    _count(args, 3, 3)
    s = _text(args, 0)
    old, new = _constant(args, 1, TEXT, "string"), _constant(args, 2, TEXT, "string")
    if not old:
        raise ArgumentError(2, "must not be empty")
    return apply(lambda e: pc.replace_substring(e, pattern=old, replacement=new), "string", s)


def _matching(kernel: Callable[..., pc.Expression]) -> Callable[..., Compiled]:
    def function(*args: Compiled) -> Compiled:
        _count(args, 2, 2)
        s = _text(args, 0)
        pattern = _constant(args, 1, TEXT, "string")
        return apply(lambda e: kernel(e, pattern=pattern), "bool", s)

    return function


# Dates.


def _part(kernel: Callable[..., pc.Expression], time_of_day: bool = False) -> Callable[..., Compiled]:
    def function(*args: Compiled) -> Compiled:
        _count(args, 1, 1)
        t = args[0]
        if t.type not in TEMPORAL:
            raise ArgumentError(1, f"must be a timestamp or date, got {t.type}")
        if t.type == "date" and time_of_day:  # Arrow reads no time of day from a date: make it midnight
            t = convert(t, "timestamp")
        return apply(kernel, "int", t)

    return function


# Conversions.

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


def _int(*args: Compiled) -> Compiled:
    _count(args, 1, 1)
    x = args[0]
    if x.type == "int":
        return x
    if x.type == "float":
        return _to_int(apply(pc.trunc, "float", x))
    if x.type == "bool":
        return apply(lambda e: e.cast(pa.int64()), "int", x)
    if x.type in TEXT:
        return _parse(_text(args, 0), "int")
    raise ArgumentError(1, f"must be a number, bool or string, got {x.type}")


def _float_of(*args: Compiled) -> Compiled:
    _count(args, 1, 1)
    x = args[0]
    if x.type == "float":
        return x
    if x.type in ("int", "bool"):
        return apply(lambda e: e.cast(pa.float64()), "float", x)
    if x.type in TEXT:
        return _parse(_text(args, 0), "float")
    raise ArgumentError(1, f"must be a number, bool or string, got {x.type}")


def _str(*args: Compiled) -> Compiled:
    _count(args, 1, 1)
    x = args[0]
    if x.type in TEXT:
        return _text(args, 0)
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


# JSON.

_KEY = r"[^.\[\]'\\]+"
_PATH = rf"(?:{_KEY}|\[[0-9]+\])(?:\.{_KEY}|\[[0-9]+\])*"


def _json_path(path: str) -> str:
    """``a.b[0]`` as polars' JSONPath, ``$['a']['b'][0]``: brackets, so keys may hold spaces and dashes."""
    return "$" + re.sub(rf"(?:^|\.)({_KEY})", r"['\1']", path)


def _json_get(*args: Compiled) -> StepCall:
    _count(args, 2, 2)
    doc = _text(args, 0)
    path = _text(args, 1)
    if not _is_constant(path):
        return StepCall(JsonGet(None), "string", (doc, path))
    text = _constant(args, 1, TEXT, "string")
    if not re.fullmatch(_PATH, text):
        raise ArgumentError(2, f"is not a JSON path like 'a.b[0]': {text!r}")
    return StepCall(JsonGet(_json_path(text)), "string", (doc,))


@dataclass(frozen=True)
class JsonGet:
    """The kernel of ``json_get``: the value at ``path`` (polars' JSONPath) in each JSON text; without ``path``, the
    second array holds each row's path as the user wrote it."""

    path: str | None

    def __call__(self, arrays: list[pa.Array]) -> StepResult:
        docs = arrays[0]
        try:
            if self.path is None:
                values, errors = self._per_row(docs, arrays[1])
            else:
                values, errors = _series(docs).str.json_path_match(self.path), pa.nulls(len(docs), pa.string())
            return StepResult(values.to_arrow().cast(pa.string()), self._invalid(docs, values, errors))
        except pl.exceptions.PolarsError as exc:  # a failure of the batch: evaluate() looks for the rows
            raise ValueError(f"json_get(): {exc}") from exc

    @staticmethod
    def _per_row(docs: pa.Array, paths: pa.Array) -> tuple[pl.Series, pa.Array]:
        valid = pc.match_substring_regex(paths, f"^{_PATH}$")
        converted = pc.replace_substring_regex(pc.if_else(valid, paths, _NO_TEXT), rf"(^|\.)({_KEY})", r"['\2']")
        frame = pl.DataFrame({"doc": _series(docs), "path": _series(pc.binary_join_element_wise("$", converted, ""))})
        values = frame.select(pl.col("doc").str.json_path_match(pl.col("path"))).to_series()
        return values, pc.if_else(valid, _NO_TEXT, pa.scalar("json_get(): not a JSON path like 'a.b[0]'"))

    @staticmethod
    def _invalid(docs: pa.Array, values: pl.Series, errors: pa.Array) -> pa.Array:
        """``errors``, and where the doc is not JSON text; polars gives null for those too, so only null values are
        looked at again."""
        unsure = pc.indices_nonzero(
            pc.and_kleene(pc.is_null(values.to_arrow()), pc.and_kleene(pc.is_valid(docs), pc.is_null(errors)))
        )
        if len(unsure) == 0:
            return errors
        texts = _series(docs.take(unsure))
        parsed = (texts.str.json_path_match("$").is_not_null() | (texts.str.strip_chars() == "null")).to_numpy()
        bad = np.zeros(len(docs), bool)
        bad[unsure.to_numpy()[~parsed]] = True
        return pc.if_else(pa.array(bad), pa.scalar("json_get(): invalid JSON text"), errors)


def _series(values: pa.Array) -> pl.Series:
    series = pl.from_arrow(values)
    assert isinstance(series, pl.Series)
    return series


FUNCTIONS: dict[str, Function] = {
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
    "lower": _unary_text(pc.utf8_lower),
    "upper": _unary_text(pc.utf8_upper),
    "strip": _strip,
    "len": _unary_text(lambda e: pc.utf8_length(e).cast(pa.int64()), "int"),
    "concat": _concat,
    "substr": _substr,
    "replace": _replace,
    "contains": _matching(pc.match_substring),
    "startswith": _matching(pc.starts_with),
    "endswith": _matching(pc.ends_with),
    "year": _part(pc.year),
    "month": _part(pc.month),
    "day": _part(pc.day),
    "hour": _part(pc.hour, time_of_day=True),
    "minute": _part(pc.minute, time_of_day=True),
    "second": _part(pc.second, time_of_day=True),
    "weekday": _part(pc.day_of_week),
    "int": _int,
    "float": _float_of,
    "str": _str,
    "json_get": _json_get,
}
