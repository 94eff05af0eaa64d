"""Arithmetic: ``+ - *``, unary minus, ``/``, ``%`` and ``^`` / ``**`` (POWER's operators).

``/`` is true division, always a float, like DuckDB. Division and remainder by zero give NULL, as in DuckDB and
SQLite, where the engine would fail the whole cell. ``%`` keeps SQL's remainder, which takes the dividend's sign.
``+`` adds numbers only: the engine's ``+`` also joins strings, which SQL's never does."""

from __future__ import annotations

from typing import Any

from sqlglot import exp
from sqlglot.tokens import TokenType

from sandbox.sql._common import call
from sandbox.sql.rules.literals import FLOAT
from sandbox.sql.translator import Translator

ARITHMETIC: dict[type[exp.Expr], str] = {exp.Sub: "-", exp.Mul: "*"}
_ADDABLE = frozenset({"int", "float", "null"})  # null: the engine's own check refuses it, with its message


def neg_sql(node: exp.Neg, tx: Translator) -> str:
    tx.only(node, "this")
    return f"(-{tx.sql(tx.child(node, 'this'))})"


def arithmetic_sql(node: exp.Binary, tx: Translator) -> str:
    a, b = _operands(node, tx)
    return f"({a} {ARITHMETIC[type(node)]} {b})"


def add_sql(node: exp.Add, tx: Translator) -> str:
    """SQL's ``+`` adds numbers, where the engine's also joins strings: an operand that is not a number is refused
    (when the parameters' types are known), as DuckDB refuses it; SQLite would read ``'ab' + 'c'`` as 0."""
    a, b = _operands(node, tx)
    for operand in (a, b):
        type_ = tx.type_of(operand)
        if type_ is not None and type_ not in _ADDABLE:
            message = f"'+' adds numbers, not {type_} values; '||' joins strings"
            raise tx.refuse_operator(node, TokenType.PLUS, message)
    return f"({a} + {b})"


def _operands(node: exp.Binary, tx: Translator) -> tuple[str, str]:
    tx.only(node, "this", "expression")
    return tx.sql(tx.child(node, "this")), tx.sql(tx.child(node, "expression"))


def div_sql(node: exp.Div, tx: Translator) -> str:
    """True division, a float, like DuckDB; NULL for a zero divisor."""
    tx.only(node, "this", "expression")
    return f"({tx.sql(tx.child(node, 'this'))} / {_divisor(tx.child(node, 'expression'), tx)})"


def mod_sql(node: exp.Mod, tx: Translator) -> str:
    """SQL's remainder has the dividend's sign; the engine's ``%`` floors: sign(a) * (|a| % |b|). NULL for b = 0."""
    tx.only(node, "this", "expression")
    a, b = tx.sql(tx.child(node, "this")), _divisor(tx.child(node, "expression"), tx)
    return f"((abs({a}) % abs({b})) * (-1 if ({a} < 0) else 1))"


def _divisor(node: exp.Expr, tx: Translator) -> str:
    """``b`` with zero made NULL, as DuckDB and SQLite give NULL for a division by zero where the engine fails the
    whole cell; a literal other than zero is left alone."""
    b = tx.sql(node)
    return b if _nonzero_number(node) else f"(None if ({b} == 0) else {b})"


def _nonzero_number(node: Any) -> bool:
    """Whether ``node`` is a number literal, maybe negated or in parentheses, other than zero."""
    while type(node) in (exp.Neg, exp.Paren):
        node = node.this
    if type(node) is not exp.Literal or node.is_string or not isinstance(node.this, str):
        return False
    return bool(FLOAT.fullmatch(node.this)) and float(node.this) != 0


def pow_sql(node: exp.Pow, tx: Translator) -> str:
    tx.only(node, "this", "expression")
    return call("pow", tx.sql(tx.child(node, "this")), tx.sql(tx.child(node, "expression")))
