"""Why a node is not on the allow-list, and where in the code to point: the message of every refusal that no rule
gives, since the allow-list itself is just the rule registry (``sandbox.sql.rules.RULES``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlglot import exp
from sqlglot.tokens import Token, TokenType

from sandbox.sql._common import written_name

_STATEMENTS: tuple[type[exp.Expr], ...] = (
    exp.DDL,
    exp.DML,
    exp.Command,
    exp.Drop,
    exp.Pragma,
    exp.Attach,
    exp.Detach,
    exp.Install,
    exp.Set,
    exp.Describe,
    exp.Show,
    exp.Use,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Alter,
    exp.Kill,
    exp.Export,
    exp.LoadData,
    exp.Analyze,
    exp.Grant,
    exp.Revoke,
    exp.Refresh,
    exp.Cache,
    exp.Uncache,
    exp.Summarize,
)
_NOT_ALLOWED: tuple[tuple[type[exp.Expr] | tuple[type[exp.Expr], ...], str], ...] = (
    ((exp.Query, exp.Subquery, exp.SubqueryPredicate), "subqueries are not allowed"),
    (exp.Window, "window functions (OVER) are not allowed"),
    (exp.Filter, "aggregate FILTER clauses are not allowed"),
    ((exp.Placeholder, exp.Parameter, exp.SessionParameter), "placeholders and parameters are not allowed"),
    (exp.Star, "'*' is not allowed"),
    (exp.Table, "tables are not allowed"),
    (exp.Alias, "aliases are not allowed"),
    (exp.TryCast, "TRY_CAST is not allowed: use CAST"),
    (exp.IntDiv, "integer division '//' is not allowed: use '/', which divides exactly"),
    ((exp.NullSafeEQ, exp.NullSafeNEQ), "IS [NOT] DISTINCT FROM is not allowed: use IS NULL and ="),
    (exp.ILike, "ILIKE is not allowed: compare LOWER(x) with LIKE"),
    (exp.Escape, "LIKE ... ESCAPE is not allowed"),
    (exp.Bracket, "subscripts are not allowed"),
    (exp.Dot, "qualified names are not allowed"),
    (exp.Array, "lists are not allowed"),
    (exp.Struct, "structs are not allowed"),
    (exp.Lambda, "lambdas are not allowed"),
    (exp.Interval, "intervals are not allowed"),
    (exp.Tuple, "row values are not allowed"),
    (exp.Collate, "COLLATE is not allowed"),
)
_QUERY_WORDS = frozenset({TokenType.SELECT, TokenType.WITH, TokenType.FROM, TokenType.VALUES})


def refusal(node: exp.Expr, code: str) -> str:
    """Why ``node`` is not on the allow-list, naming it."""
    if isinstance(node, _STATEMENTS):
        return f"statements are not allowed: {_first_word(node, code)}"
    if isinstance(node, exp.AggFunc):
        return f"aggregate function {written_name(node, code)} is not allowed: a UDF computes one value per row"
    for kinds, message in _NOT_ALLOWED:
        if isinstance(node, kinds):
            return message
    if isinstance(node, exp.Func):
        return f"unknown function {written_name(node, code)}"
    if node.parent is None and not isinstance(node, exp.Condition):
        return f"statements are not allowed: {_first_word(node, code)}"
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", type(node).__name__).lower()
    return f"{words} is not allowed"


def refusal_start(node: exp.Expr, tokens: Sequence[Token]) -> int | None:
    """Where to point for a refused node whose keywords sqlglot keeps no position of: the statement's first token,
    a query's first SELECT / WITH / FROM / VALUES; None to look in the node."""
    if isinstance(node, exp.Query | exp.Subquery | exp.SubqueryPredicate):
        return next((t.start for t in tokens if t.token_type in _QUERY_WORDS), None)
    if isinstance(node, _STATEMENTS) or (node.parent is None and not isinstance(node, exp.Condition)):
        return tokens[0].start
    return None


def _first_word(node: exp.Expr, code: str) -> str:
    if type(node) is exp.Command and isinstance(node.this, str):
        return node.this.upper()
    match = re.match(r"\s*([A-Za-z_]+)", code)
    return match.group(1).upper() if match else type(node).__name__.upper()
