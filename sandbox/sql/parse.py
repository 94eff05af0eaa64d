"""Parsing the checked tokens with sqlglot, and measuring the tree it gives.

The parser runs on a thread of its own, so that its recursion (about 25 frames per level) has the whole recursion
limit whatever the caller's depth; whatever it raises becomes a syntax error. The tree is measured again after
parsing, without recursion, as the token count of brackets cannot see every level."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlglot import exp
from sqlglot.errors import ParseError
from sqlglot.tokens import Token

from sandbox.sql._common import MAX_DEPTH, SQLGLOT_DIALECT, clean, error, start_of

_T = TypeVar("_T")


def parse(code: str, tokens: list[Token]) -> exp.Expr:
    """The one expression ``tokens`` hold, without comments and no deeper than MAX_DEPTH; raises UdfCompileError."""
    tree = _parse(code, tokens)
    _check_tree(code, tree)
    return tree


def _parse(code: str, tokens: list[Token]) -> exp.Expr:
    try:
        trees = _on_fresh_stack(lambda: SQLGLOT_DIALECT.parser().parse(tokens, code))
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        offset = _token_start(tokens, first.get("line"), first.get("col"))
        raise error(code, offset, f"syntax error: {clean(str(first.get('description') or exc))}") from None
    except RecursionError:
        raise error(code, None, f"the expression is nested more than {MAX_DEPTH} levels deep") from None
    except Exception as exc:  # the parser is not built for untrusted input: anything it raises is a syntax error
        raise error(code, None, f"syntax error: {clean(str(exc))}") from None
    if len(trees) != 1 or trees[0] is None:
        raise error(code, None, "only one expression is allowed")
    return trees[0]


def _on_fresh_stack(function: Callable[[], _T]) -> _T:
    """``function()`` on a new thread, which starts with an empty stack; its exception is raised here."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, function()))
        except BaseException as exc:  # handed to the calling thread
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="sql-udf-parser", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _token_start(tokens: list[Token], line: Any, col: Any) -> int | None:
    """The offset of the token sqlglot's error points at (its line and the column of its last character)."""
    for token in tokens:
        if token.line == line and token.col == col:
            return token.start
    return None


def _check_tree(code: str, tree: exp.Expr) -> None:
    """No comments, and no deeper than MAX_DEPTH; identifiers and types are part of their parent's level."""
    stack: list[tuple[exp.Expr, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if node.comments:
            raise error(code, start_of(node), "comments are not allowed")
        if depth > MAX_DEPTH:
            raise error(code, start_of(node), f"the expression is nested more than {MAX_DEPTH} levels deep")
        for child in node.iter_expressions():
            stack.append((child, depth + (not isinstance(child, exp.Identifier | exp.DataType))))
