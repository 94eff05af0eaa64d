"""Functions: ABS, SQRT, EXP, LN, FLOOR, CEIL / CEILING, LOWER, UPPER, LENGTH / CHAR_LENGTH (one argument each),
COALESCE (and IFNULL), NULLIF, LEAST, GREATEST, ROUND, LOG / LOG10, TRIM, SUBSTRING / SUBSTR, REPLACE, CONCAT.

Where the engine's function takes constants (ROUND's decimals, SUBSTRING's positions, REPLACE's texts, TRIM's
characters), SQL's argument must be a constant too; the SQL semantics kept are in ``sandbox.sql``'s docstring."""

from __future__ import annotations

from sqlglot import exp

from sandbox.sql._common import call
from sandbox.sql.rules.comparison import compare
from sandbox.sql.rules.literals import int_constant, string_constant
from sandbox.sql.translator import Translator

UNARY: dict[type[exp.Expr], str] = {
    exp.Abs: "abs",
    exp.Sqrt: "sqrt",
    exp.Exp: "exp",
    exp.Ln: "log",
    exp.Lower: "lower",
    exp.Upper: "upper",
    exp.Length: "len",
    exp.Floor: "floor",
    exp.Ceil: "ceil",
}


def unary_sql(node: exp.Func, tx: Translator) -> str:
    tx.only(node, "this")
    return call(UNARY[type(node)], tx.sql(tx.child(node, "this")))


def coalesce_sql(node: exp.Coalesce, tx: Translator) -> str:
    tx.only(node, "this", "expressions", "is_nvl", "is_null")
    args = [tx.child(node, "this"), *(node.args.get("expressions") or [])]
    return call("coalesce", *(tx.sql(a) for a in args))


def nullif_sql(node: exp.Nullif, tx: Translator) -> str:
    """NULL where ``a = b`` is TRUE, else ``a`` (also where the comparison is NULL)."""
    tx.only(node, "this", "expression")
    a, b = tx.child(node, "this"), tx.child(node, "expression")
    equal = compare(node, a, "==", b, tx)
    return f"(None if coalesce({equal}, False) else {tx.sql(a)})"


def extreme_sql(node: exp.Least | exp.Greatest, tx: Translator) -> str:
    """LEAST / GREATEST skip NULLs (DuckDB, Postgres), like the engine's min / max."""
    tx.only(node, "this", "expressions", "ignore_nulls")
    if not node.args.get("ignore_nulls"):
        raise tx.refuse(node, f"{tx.name(node)}: this form is not allowed")
    args = [tx.sql(a) for a in [tx.child(node, "this"), *(node.args.get("expressions") or [])]]
    if len(args) == 1:
        return f"({args[0]})"
    return call("min" if type(node) is exp.Least else "max", *args)


def round_sql(node: exp.Round, tx: Translator) -> str:
    tx.only(node, "this", "decimals")
    x = tx.sql(tx.child(node, "this"))
    decimals = node.args.get("decimals")
    places = 0 if decimals is None else int_constant(decimals)
    if places is None:
        raise tx.refuse(decimals, f"{tx.name(node)}: the number of decimals must be a constant integer")
    return call("round", x, str(places))


def log_sql(node: exp.Log, tx: Translator) -> str:
    """``LOG(x)`` is base 10 (DuckDB, Postgres, SQLite); ``LOG(b, x)`` is base ``b``; LOG10(x) parses as LOG(10, x)."""
    tx.only(node, "this", "expression")
    if node.args.get("expression") is None:
        return call("log10", tx.sql(tx.child(node, "this")))
    base, x = tx.child(node, "this"), tx.sql(tx.child(node, "expression"))
    if int_constant(base) == 10:
        return call("log10", x)
    return call("log", x, tx.sql(base))


def trim_sql(node: exp.Trim, tx: Translator) -> str:
    """TRIM strips spaces only, as in SQL (the engine's ``strip(s)`` strips all white space)."""
    tx.only(node, "this", "expression", "position")
    position = node.args.get("position")
    if position is not None and str(position).upper() != "BOTH":
        raise tx.refuse(node, f"{tx.name(node)}: only TRIM of both ends is allowed")
    characters = node.args.get("expression")
    text = " " if characters is None else string_constant(characters)
    if text is None:
        raise tx.refuse(characters, f"{tx.name(node)}: the characters to strip must be a constant string")
    return call("strip", tx.sql(tx.child(node, "this")), repr(text))


def substring_sql(node: exp.Substring, tx: Translator) -> str:
    """SQL counts from 1; the engine's ``substr`` from 0, with constant positions."""
    tx.only(node, "this", "start", "length")
    name = tx.name(node)
    start_node, length_node = node.args.get("start"), node.args.get("length")
    start = int_constant(start_node)
    if start_node is None or start is None or start < 1:
        raise tx.refuse(start_node or node, f"{name}: the start must be a constant integer >= 1")
    s = tx.sql(tx.child(node, "this"))
    if length_node is None:
        return call("substr", s, str(start - 1))
    length = int_constant(length_node)
    if length is None or length < 0:
        raise tx.refuse(length_node, f"{name}: the length must be a constant integer >= 0")
    return call("substr", s, str(start - 1), str(length))


def replace_sql(node: exp.Replace, tx: Translator) -> str:
    tx.only(node, "this", "expression", "replacement")
    name = tx.name(node)
    old_node, new_node = node.args.get("expression"), node.args.get("replacement")
    if new_node is None:
        raise tx.refuse(node, f"{name} takes 3 arguments")
    old, new = string_constant(old_node), string_constant(new_node)
    if not old or new is None:
        message = f"{name}: the searched and the new text must be constant strings, the first not empty"
        raise tx.refuse(new_node if old else old_node, message)
    return call("replace", tx.sql(tx.child(node, "this")), repr(old), repr(new))


def concat_sql(node: exp.Concat, tx: Translator) -> str:
    """CONCAT skips NULLs, as in DuckDB and Postgres: each argument that may be NULL counts as ''."""
    tx.only(node, "expressions", "safe", "coalesce")
    parts = []
    for arg in node.args.get("expressions") or []:
        if type(arg) is exp.Null:
            continue
        text = tx.sql(arg)
        parts.append(text if string_constant(arg) is not None else call("coalesce", text, "''"))
    return call("concat", *parts) if parts else "''"
