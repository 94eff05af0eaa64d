"""The translation driver: precheck, parse, translate with the rules, and check that the output fits the engine."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence

from engine.expr.core import MAX_DEPTH as ENGINE_MAX_DEPTH
from engine.expr.core import MAX_LENGTH as ENGINE_MAX_LENGTH
from sandbox.sql._common import error
from sandbox.sql.parse import parse
from sandbox.sql.precheck import precheck
from sandbox.sql.rules import RULES
from sandbox.sql.translator import Translator, bind


def to_expression(code: str, parameters: Sequence[str] | Mapping[str, str]) -> str:
    """Translate SQL expression ``code`` over ``parameters`` to engine expression text; raises UdfCompileError.

    ``parameters`` are the names, or the names with their declared types (as a UDF registering knows them): only
    then can a ``+`` of strings be refused, which SQL does not join as the engine's ``+`` would.

    >>> to_expression("price * (1 - discount_rate)", ["price", "discount_rate"])
    '(price * (1 - discount_rate))'
    >>> to_expression("s + 'x'", {"s": "string"})
    Traceback (most recent call last):
    engine.errors.UdfCompileError: code: '+' adds numbers, not string values; '||' joins strings (line 1, col 3)
    """
    tokens = precheck(code)
    tree = parse(code, tokens)
    bindings = bind(parameters) if isinstance(parameters, Mapping) else None
    text = Translator(code, tuple(parameters), tuple(tokens), RULES, bindings).sql(tree)
    _check_output(code, text)
    return text


def _check_output(code: str, text: str) -> None:
    """The translation must fit the engine's limits, which a CASE with many WHENs or repeated operands can pass."""
    if len(text) > ENGINE_MAX_LENGTH:
        raise error(code, None, f"the translated expression is longer than {ENGINE_MAX_LENGTH} characters")
    too_deep = (
        f"the translated expression is nested more than {ENGINE_MAX_DEPTH} levels deep (a CASE counts one per WHEN)"
    )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        if "nested" not in str(exc):
            raise  # a bug in the translation, not a fault of the code
        raise error(code, None, too_deep) from None
    except (RecursionError, MemoryError):
        raise error(code, None, too_deep) from None
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > ENGINE_MAX_DEPTH:
            raise error(code, None, too_deep)
        stack.extend((c, depth + isinstance(c, ast.expr)) for c in ast.iter_child_nodes(node))
