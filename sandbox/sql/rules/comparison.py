"""Comparisons: ``= <> != < <= > >=``, ``[NOT] BETWEEN``, ``[NOT] IN (literal, ...)`` and ``IS [NOT] NULL``.

An operand that is NULL whatever the row is refused: SQL gives NULL, while the engine's ``== None`` tests for null.
``x IN (...)`` is NULL for a NULL ``x``, and NULL rather than FALSE when the list holds a NULL and ``x`` is not in
it; both are spelled out, as the engine's ``in`` never gives null."""

from __future__ import annotations

from sqlglot import exp

from sandbox.sql.rules.literals import is_literal
from sandbox.sql.translator import Translator

COMPARISONS: dict[type[exp.Expr], str] = {
    exp.EQ: "==",
    exp.NEQ: "!=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
NULL_COMPARISON = "comparison with NULL is always NULL in SQL: use IS NULL or IS NOT NULL"


def comparison_sql(node: exp.Binary, tx: Translator) -> str:
    tx.only(node, "this", "expression")
    return compare(node, tx.child(node, "this"), COMPARISONS[type(node)], tx.child(node, "expression"), tx)


def compare(at: exp.Expr, a: exp.Expr, symbol: str, b: exp.Expr, tx: Translator, message: str = "") -> str:
    """``a symbol b``, refusing an operand that is NULL whatever the row: SQL gives NULL, the engine a null test."""
    if always_null(a) or always_null(b):
        raise tx.refuse_null(at, message or NULL_COMPARISON)
    return f"({tx.sql(a)} {symbol} {tx.sql(b)})"


def always_null(node: exp.Expr) -> bool:
    """Whether ``node`` is NULL for every row, so that it translates to the engine's null type."""
    kind = type(node)
    if kind is exp.Null:
        return True
    if kind is exp.Paren:
        return isinstance(node.this, exp.Expr) and always_null(node.this)
    if kind is exp.Case:
        ifs = node.args.get("ifs") or []
        values = [i.args.get("true") for i in ifs if isinstance(i, exp.Expr)] + [node.args.get("default")]
        return all(v is None or (isinstance(v, exp.Expr) and always_null(v)) for v in values)
    if kind in (exp.Coalesce, exp.Least, exp.Greatest):
        return all(always_null(a) for a in [node.this, *(node.args.get("expressions") or [])] if a is not None)
    if kind is exp.Nullif:
        return isinstance(node.this, exp.Expr) and always_null(node.this)
    return False


def between_sql(node: exp.Between, tx: Translator) -> str:
    if node.args.get("symmetric"):
        raise tx.refuse(node, "BETWEEN SYMMETRIC is not allowed")
    tx.only(node, "this", "low", "high")
    low, x, high = (tx.child(node, key) for key in ("low", "this", "high"))
    if any(always_null(n) for n in (low, x, high)):
        raise tx.refuse_null(node, NULL_COMPARISON)
    return f"({tx.sql(low)} <= {tx.sql(x)} <= {tx.sql(high)})"


def is_sql(node: exp.Is, tx: Translator, negate: bool = False) -> str:
    tx.only(node, "this", "expression", "negate")
    if type(node.expression) is not exp.Null:
        raise tx.refuse(node, "only IS NULL and IS NOT NULL are allowed")
    negate = negate != bool(node.args.get("negate"))
    return f"({tx.sql(tx.child(node, 'this'))} {'!=' if negate else '=='} None)"


def in_sql(node: exp.In, tx: Translator, negate: bool = False) -> str:
    """``x [NOT] IN (v, ...)`` with SQL's NULLs: NULL for a NULL ``x``, and NULL rather than FALSE when the list
    holds a NULL and ``x`` is not in it. The engine's ``in`` gives a bool for a null ``x``."""
    query = node.args.get("query")
    if isinstance(query, exp.Expr):
        raise tx.not_allowed(query)
    tx.only(node, "this", "expressions")
    values = node.args.get("expressions") or []
    if not values:
        raise tx.refuse(node, "IN needs at least one value")
    for value in values:
        if not is_literal(value):
            raise tx.refuse(value, "IN lists may hold only literals (numbers, strings, TRUE, FALSE, NULL)")
    if always_null(tx.child(node, "this")):
        raise tx.refuse_null(node, NULL_COMPARISON)
    x = tx.sql(tx.child(node, "this"))
    known = [tx.sql(v) for v in values if type(v) is not exp.Null]
    listed = f"[{', '.join(known)}]"
    if len(known) < len(values):  # a NULL in the list: found, or unknown
        return f"({not negate} if ({x} in {listed}) else None)"
    return f"(None if ({x} == None) else ({x} {'not in' if negate else 'in'} {listed}))"
