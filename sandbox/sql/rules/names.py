"""Names: parameter names, unqualified. An unquoted identifier matches the parameter of that name ignoring case,
as SQL folds it; a quoted one (``"Price"``) must match exactly."""

from __future__ import annotations

import keyword

from sqlglot import exp

from sandbox.sql._common import DIALECT
from sandbox.sql.translator import Translator


def column_sql(node: exp.Column, tx: Translator) -> str:
    if any(node.args.get(key) for key in ("table", "db", "catalog")):
        raise tx.refuse(node, f"qualified names are not allowed: {node.sql(dialect=DIALECT)}")
    tx.only(node, "this")
    identifier = node.this
    if isinstance(identifier, exp.Star):
        raise tx.refuse(node, "'*' is not allowed")
    if not isinstance(identifier, exp.Identifier) or not isinstance(identifier.this, str):
        raise tx.refuse(node, "this name is not allowed")
    return _parameter(identifier, tx)


def _parameter(identifier: exp.Identifier, tx: Translator) -> str:
    """The parameter an identifier names: unquoted ones ignoring case, as SQL folds them; quoted ones exactly."""
    text, quoted = identifier.this, bool(identifier.args.get("quoted"))
    shown = f'"{text}"' if quoted else f"'{text}'"
    if quoted:
        matches = [p for p in tx.parameters if p == text]
    else:
        matches = [p for p in tx.parameters if p.lower() == text.lower()]
    if len(matches) > 1:
        raise tx.refuse(identifier, f"name {shown} is ambiguous: it matches {', '.join(matches)} (quote it)")
    if not matches:
        listed = ", ".join(tx.parameters) if tx.parameters else "none"
        hint = ""
        if quoted and any(p.lower() == text.lower() for p in tx.parameters):
            hint = " (a quoted name matches its case exactly)"
        raise tx.refuse(identifier, f"unknown name {shown}{hint}: the parameters are {listed}")
    name = matches[0]
    if keyword.iskeyword(name) or not name.isidentifier():
        raise tx.refuse(
            identifier, f"parameter '{name}' cannot be used: it is a reserved word of the engine's language"
        )
    return name
