"""Logic: ``AND``, ``OR`` (three-valued, as the engine's are) and ``NOT``, which gives NULL for NULL.

``NOT x IS NULL`` and ``NOT x IN (...)`` are the negated forms of those tests, not ``not`` of their translation,
so that IN keeps SQL's NULLs."""

from __future__ import annotations

from sqlglot import exp

from sandbox.sql.rules.comparison import in_sql, is_sql
from sandbox.sql.translator import Translator


def not_sql(node: exp.Not, tx: Translator) -> str:
    tx.only(node, "this")
    inner = tx.child(node, "this")
    if type(inner) is exp.Is:
        return is_sql(inner, tx, negate=True)
    if type(inner) is exp.In:
        return in_sql(inner, tx, negate=True)
    return f"(not {tx.sql(inner)})"


def logical_sql(node: exp.Binary, tx: Translator) -> str:
    tx.only(node, "this", "expression")
    word = "and" if type(node) is exp.And else "or"
    return f"({tx.sql(tx.child(node, 'this'))} {word} {tx.sql(tx.child(node, 'expression'))})"
