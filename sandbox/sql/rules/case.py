"""``CASE WHEN ... THEN ... [ELSE ...] END`` and ``CASE x WHEN v THEN ... END``, as nested ``a if c else b``.

A branch whose condition is NULL is not taken (``coalesce(cond, False)``); CASE without ELSE gives NULL."""

from __future__ import annotations

from sqlglot import exp

from sandbox.sql.rules.comparison import compare
from sandbox.sql.translator import Translator


def case_sql(node: exp.Case, tx: Translator) -> str:
    """CASE as nested ``a if c else b``; a NULL condition does not take its branch, as in SQL."""
    tx.only(node, "this", "ifs", "default")
    subject = tx.child(node, "this") if node.args.get("this") is not None else None
    default = node.args.get("default")
    result = "None" if default is None else tx.sql(tx.child(node, "default"))
    for branch in reversed(node.args.get("ifs") or []):
        if type(branch) is not exp.If:
            raise tx.refuse(node, "this CASE form is not allowed")
        tx.only(branch, "this", "true")
        when = tx.child(branch, "this")
        if subject is None:
            condition = tx.sql(when)
        else:
            message = "CASE x WHEN NULL never matches in SQL: write CASE WHEN x IS NULL"
            condition = compare(subject, subject, "==", when, tx, message)
        result = f"({tx.sql(tx.child(branch, 'true'))} if coalesce({condition}, False) else {result})"
    return result
