"""Literals: numbers keep their text (ints stay ints, ``1.5`` stays float, leading zeros of ints are dropped),
strings are written with ``repr()``, TRUE / FALSE and NULL are the engine's. Also the constants other rules need
(an integer, a string, any literal), read off the tree."""

from __future__ import annotations

import re
from typing import Any

from sqlglot import exp

from sandbox.sql.translator import Translator

INT = re.compile(r"[0-9]+")
FLOAT = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def literal_sql(node: exp.Literal, tx: Translator) -> str:
    tx.only(node, "this", "is_string")
    value = node.this
    if not isinstance(value, str):
        raise tx.refuse(node, "this literal is not allowed")
    if node.is_string:
        return repr(value)
    if INT.fullmatch(value):
        return str(int(value))
    if FLOAT.fullmatch(value):
        return value
    raise tx.refuse(node, f"number literal {value!r} is not allowed")


def boolean_sql(node: exp.Boolean, tx: Translator) -> str:
    return "True" if node.this is True else "False"


def null_sql(node: exp.Null, tx: Translator) -> str:
    return "None"


def is_literal(node: Any) -> bool:
    """Whether ``node`` is a literal: a number (maybe negated), a string, TRUE, FALSE or NULL."""
    if type(node) is exp.Neg:
        return type(node.this) is exp.Literal and not node.this.is_string
    return type(node) in (exp.Literal, exp.Boolean, exp.Null)


def int_constant(node: Any) -> int | None:
    """The value of an integer literal, negative or not; None for anything else."""
    sign = 1
    if type(node) is exp.Neg:
        node, sign = node.this, -1
    if type(node) is exp.Literal and not node.is_string and isinstance(node.this, str) and INT.fullmatch(node.this):
        return sign * int(node.this)
    return None


def string_constant(node: Any) -> str | None:
    """The text of a string literal; None for anything else."""
    return node.this if type(node) is exp.Literal and node.is_string and isinstance(node.this, str) else None
