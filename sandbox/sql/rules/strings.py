"""String operators: ``a || b`` and ``[NOT] LIKE`` with the patterns ``'abc'``, ``'abc%'``, ``'%abc'`` and
``'%abc%'`` (no ``_``, no ``%`` inside, no backslash, no ESCAPE), each an engine string function."""

from __future__ import annotations

from sqlglot import exp

from sandbox.sql._common import call
from sandbox.sql.translator import Translator

_LIKE_FUNCTIONS = {
    (False, False): "==",
    (False, True): "startswith",
    (True, False): "endswith",
    (True, True): "contains",
}


def dpipe_sql(node: exp.DPipe, tx: Translator) -> str:
    """``a || b``: NULL when either is, as in DuckDB and Postgres (CONCAT skips NULLs instead)."""
    tx.only(node, "this", "expression", "safe")
    return call("concat", tx.sql(tx.child(node, "this")), tx.sql(tx.child(node, "expression")))


def like_sql(node: exp.Like, tx: Translator) -> str:
    tx.only(node, "this", "expression", "negate")
    pattern = node.expression
    if type(pattern) is not exp.Literal or not pattern.is_string:
        raise tx.refuse(node, "LIKE needs a constant string pattern")
    form = _like_form(pattern.this)
    if form is None:
        raise tx.refuse(
            pattern, "this LIKE pattern is not allowed: only 'abc', 'abc%', '%abc' and '%abc%' (no '_' or '\\')"
        )
    function, text = form
    s = tx.sql(tx.child(node, "this"))
    test = f"({s} == {text!r})" if function == "==" else call(function, s, repr(text))
    return f"(not {test})" if node.args.get("negate") else test


def _like_form(pattern: str) -> tuple[str, str] | None:
    """A LIKE pattern as the engine function that tests it and its text: 'abc%' is ('startswith', 'abc')."""
    leading = pattern.startswith("%")
    rest = pattern[1:] if leading else pattern
    trailing = rest.endswith("%")
    text = rest[:-1] if trailing else rest
    if any(c in text for c in "%_\\"):
        return None
    return _LIKE_FUNCTIONS[leading, trailing], text
