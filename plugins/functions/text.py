"""Text (``s`` a string, json or media value).

- ``lower upper strip len``: ``len`` counts characters; ``strip(s, chars)`` strips those characters.
- ``replace(s, old, new)``, ``contains(s, sub)``, ``startswith(s, prefix)``, ``endswith(s, suffix)``: the other
  arguments are constant strings (``old`` not empty).
- ``concat(a, b, ...)`` joins strings. Other types are a compile error (convert them with ``str(x)``); a null
  argument makes the result null, as with ``+`` (``coalesce(x, '')`` skips it).
- ``substr(s, start)`` is ``s[start:]`` and ``substr(s, start, length)`` is ``s[start:][:length]``: 0-based, a
  negative ``start`` counts from the end; ``start`` and ``length`` are constant ints, ``length >= 0``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from engine.expr import args
from engine.expr.args import TEXT, ArgumentError
from engine.expr.core import Compiled, Function, apply
from engine.model.coerce import INT_MAX
from engine.registry import hookimpl


def _unary(kernel: Callable[..., pc.Expression], type_: str = "string") -> Function:
    def function(*a: Compiled) -> Compiled:
        args.count(a, 1, 1)
        return apply(kernel, type_, args.text(a, 0))

    return function


def _strip(*a: Compiled) -> Compiled:
    args.count(a, 1, 2)
    s = args.text(a, 0)
    if len(a) == 1:
        return apply(pc.utf8_trim_whitespace, "string", s)
    chars = args.constant(a, 1, TEXT, "string")
    return apply(lambda e: pc.utf8_trim(e, characters=chars), "string", s)


def _concat(*a: Compiled) -> Compiled:
    args.count(a, 1, None)
    for i, v in enumerate(a):
        if v.type not in TEXT:
            raise ArgumentError(i + 1, f"must be a string, got {v.type} (convert it with str())")
    return apply(lambda *es: pc.binary_join_element_wise(*es, ""), "string", *(args.text(a, i) for i in range(len(a))))


def _substr(*a: Compiled) -> Compiled:
    args.count(a, 2, 3)
    s = args.text(a, 0)
    start = args.constant(a, 1, frozenset({"int"}), "int")
    if len(a) == 2:
        return apply(lambda e: pc.utf8_slice_codeunits(e, start, INT_MAX), "string", s)
    length = args.constant(a, 2, frozenset({"int"}), "int")
    if length < 0:
        raise ArgumentError(3, f"must not be negative, got {length}")
    if start >= 0:
        return apply(lambda e: pc.utf8_slice_codeunits(e, start, min(start + length, INT_MAX)), "string", s)
    # s[start:start + length] would count the end from the string's length; s[start:][:length] does not.
    tail = apply(lambda e: pc.utf8_slice_codeunits(e, start, INT_MAX), "string", s)
    return apply(lambda e: pc.utf8_slice_codeunits(e, 0, length), "string", tail)


def _replace(*a: Compiled) -> Compiled:
    args.count(a, 3, 3)
    s = args.text(a, 0)
    old, new = args.constant(a, 1, TEXT, "string"), args.constant(a, 2, TEXT, "string")
    if not old:
        raise ArgumentError(2, "must not be empty")
    return apply(lambda e: pc.replace_substring(e, pattern=old, replacement=new), "string", s)


def _matching(kernel: Callable[..., pc.Expression]) -> Function:
    def function(*a: Compiled) -> Compiled:
        args.count(a, 2, 2)
        s = args.text(a, 0)
        pattern = args.constant(a, 1, TEXT, "string")
        return apply(lambda e: kernel(e, pattern=pattern), "bool", s)

    return function


@hookimpl
def tessera_functions() -> Mapping[str, Function]:
    return {
        "lower": _unary(pc.utf8_lower),
        "upper": _unary(pc.utf8_upper),
        "strip": _strip,
        "len": _unary(lambda e: pc.utf8_length(e).cast(pa.int64()), "int"),
        "concat": _concat,
        "substr": _substr,
        "replace": _replace,
        "contains": _matching(pc.match_substring),
        "startswith": _matching(pc.starts_with),
        "endswith": _matching(pc.ends_with),
    }
