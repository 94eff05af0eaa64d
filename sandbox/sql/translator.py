"""The ``Translator`` every rule receives: it turns a node into engine text through the rule registry it is given,
tells the engine type of translated text when the parameters' types are known, and builds the errors that point at a
node.

The rules are handed in rather than imported, so that a rule module can use the translator without importing the
registry that imports it (no import cycle)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc
from sqlglot import exp
from sqlglot.tokens import Token, TokenType

from engine.errors import InvalidRequest, UdfCompileError
from engine.expr.compiler import compile_expression
from engine.expr.core import Compiled
from engine.expr.udfs import NO_COLUMNS
from sandbox.sql._common import bounds, error, start_of, written_name
from sandbox.sql.refusals import refusal, refusal_start

Rule = Callable[[Any, "Translator"], str]
"""A rule: one allowed node kind, translated to engine expression text (its children through ``Translator.sql``)."""


@dataclass(frozen=True)
class Translator:
    code: str
    parameters: tuple[str, ...]
    tokens: tuple[Token, ...]
    rules: Mapping[type[exp.Expr], Rule]
    bindings: Mapping[str, Compiled] | None = None
    """The parameters bound to their declared types (``bind``), when they are known."""

    def sql(self, node: exp.Expr) -> str:
        """``node`` as engine expression text; refuses a node kind not on the allow-list."""
        rule = self.rules.get(type(node))
        if rule is None:
            raise self.not_allowed(node)
        return rule(node, self)

    def not_allowed(self, node: exp.Expr) -> UdfCompileError:
        """The error for a node kind that is not on the allow-list, naming it."""
        offset = refusal_start(node, self.tokens)
        return error(self.code, start_of(node) if offset is None else offset, refusal(node, self.code))

    def refuse(self, node: exp.Expr | None, message: str) -> UdfCompileError:
        return error(self.code, None if node is None else start_of(node), message)

    def type_of(self, text: str) -> str | None:
        """The engine type of translated ``text``; None when the parameters' types are not known, or when it does
        not compile (the whole translation is then refused by the engine's own check, with its message)."""
        if self.bindings is None:
            return None
        try:
            return compile_expression(text, NO_COLUMNS, field="code", bindings=self.bindings).type
        except InvalidRequest:
            return None

    def refuse_operator(self, node: exp.Binary, kind: TokenType, message: str) -> UdfCompileError:
        """An error about the operator of ``node``, a ``kind`` token (sqlglot keeps no position for operators)."""
        at = self._operator_start(node, kind)
        return error(self.code, start_of(node) if at is None else at, message)

    def _operator_start(self, node: exp.Binary, kind: TokenType) -> int | None:
        """The first ``kind`` token after the left operand's end; when sqlglot recorded none in it (NULL, TRUE),
        the last one before the right operand that follows neither a ``kind`` nor a ``(`` (so not a unary ``+``)."""
        left, right = bounds(self.child(node, "this")), bounds(self.child(node, "expression"))
        if left is not None:
            return next((t.start for t in self.tokens if t.token_type == kind and t.start > left[1]), None)
        if right is None:
            return None
        before = [t for t in self.tokens if t.start < right[0]]
        binary = [
            t.start
            for previous, t in itertools.pairwise(before)
            if t.token_type == kind and previous.token_type not in (kind, TokenType.L_PAREN)
        ]
        return binary[-1] if binary else None

    def refuse_null(self, node: exp.Expr, message: str) -> UdfCompileError:
        """An error about a NULL in ``node``: sqlglot keeps no position for NULL, so point at the last NULL token
        before the first position it kept in ``node``, if any."""
        start = start_of(node)
        before = [t.start for t in self.tokens if t.token_type == TokenType.NULL and (start is None or t.start < start)]
        return error(self.code, max(before, default=start), message)

    def child(self, node: exp.Expr, key: str) -> exp.Expr:
        value = node.args.get(key)
        if not isinstance(value, exp.Expr):
            raise self.refuse(node, f"{self.name(node)}: an argument is missing")
        return value

    def only(self, node: exp.Expr, *keys: str) -> None:
        """Refuse arguments and options of ``node`` other than ``keys`` (flags that are off are not there)."""
        for key, value in node.args.items():
            if key not in keys and _given(value):
                at = value if isinstance(value, exp.Expr) else node
                raise self.refuse(at, f"{self.name(node)}: this argument or option is not allowed ({key})")

    def name(self, node: exp.Expr) -> str:
        """A function's name as written (``CHAR_LENGTH``), else sqlglot's name for the node."""
        return written_name(node, self.code)


def bind(types: Mapping[str, str]) -> dict[str, Compiled]:
    """Each parameter bound to a value of its declared type, as the engine binds them to compile an inline UDF."""
    return {name: Compiled(pc.field(name), type_, frozenset({name})) for name, type_ in types.items()}


def _given(value: Any) -> bool:
    """Whether a node's argument or option is there: sqlglot leaves None, False or [] for those not given."""
    return not (value is None or value is False or (isinstance(value, list) and not value))
