"""Parentheses: the output is parenthesised throughout, so SQL's own parentheses add nothing."""

from __future__ import annotations

from sqlglot import exp

from sandbox.sql.translator import Translator


def paren_sql(node: exp.Paren, tx: Translator) -> str:
    """Every translation is already an atom, a call or parenthesised: ``(a + b)`` stays ``(a + b)``."""
    tx.only(node, "this")
    return tx.sql(tx.child(node, "this"))
