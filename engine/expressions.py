"""Compile Python-syntax expressions over a table's columns to vectorised Arrow expressions.

Used for ``set`` values such as ``{"balance": {"expr": "balance - 10"}}``. The text is parsed with ``ast`` and walked
with an allow-list: one small function per node kind, registered in ``_HANDLERS``. The result is a single
``pyarrow.compute.Expression`` built from fields, scalars and compute kernels, so nothing runs per row in Python.

Semantics follow Python where that is cheap, with Arrow's null propagation and Kleene ``and`` / ``or``:

- ``+ - * **`` on ints use the ``_checked`` kernels: overflow raises ``pyarrow.ArrowInvalid`` at evaluation, which
  the caller turns into an error. So does division by zero, also on floats.
- ``/`` is always float. ``//`` and ``%`` floor like Python. ``a // b`` is ``(a - a % b) / b``: exact for ints, but
  raising overflow when ``a`` is within ``|b|`` of the int64 limits; for floats it matches Python below about 2**52
  and may differ by one above. Float ``**`` gives NaN or inf where Python would raise or return a complex number.
- ``x == None`` / ``x != None`` test for null; ``x in [...]`` treats a null ``x`` like Python's ``None``: it is in the
  list only if the list holds ``None``.
"""

from __future__ import annotations

import ast
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.coerce import INT_MAX, INT_MIN, coerce_value
from engine.errors import InvalidRequest, SchemaMismatch
from engine.schema import Column, TableSchema
from engine.types import arrow_type, is_textual

MAX_LENGTH = 10_000
MAX_DEPTH = 64
# Chained comparisons and ``//`` repeat their operands in the Arrow tree, which Arrow evaluates without sharing;
# the cap keeps nested repetition from growing the evaluation cost exponentially.
MAX_NODES = 10_000


class InvalidExpression(InvalidRequest):
    """An expression that cannot be compiled; ``line`` and ``col`` are 1-based."""

    code = "invalid_expression"

    def __init__(self, message: str, *, expression: str, line: int, col: int, field: str = "expr") -> None:
        super().__init__(
            f"{field}: {message} (line {line}, col {col})", expression=expression, line=line, col=col, field=field
        )
        self.expression, self.line, self.col, self.field = expression, line, col, field


@dataclass(frozen=True, eq=False)
class Compiled:
    """A compiled expression, its inferred column type and the columns it reads.

    ``size`` counts the nodes of the Arrow expression tree (see ``MAX_NODES``).
    """

    expr: pc.Expression
    type: str
    columns: frozenset[str]
    size: int = 1

    def __eq__(self, other: object) -> bool:
        # Arrow's == on expressions builds an ``equal`` expression; equals() compares the trees.
        if not isinstance(other, Compiled):
            return NotImplemented
        return (self.type, self.columns) == (other.type, other.columns) and bool(self.expr.equals(other.expr))

    def __hash__(self) -> int:
        return hash((self.type, self.columns))


Function = Callable[..., Compiled]  # takes Compiled arguments; raises TypeError naming a wrong argument type
FUNCTIONS: dict[str, Function] = {}  # the names callable from expressions; computed columns will add to it


def compile_expression(text: str, schema: TableSchema, *, field: str = "expr") -> Compiled:
    """Compile ``text`` against ``schema``; raises InvalidExpression or ColumnNotFound.

    >>> from engine.schema import build_schema
    >>> c = compile_expression("balance - 10", build_schema("t", {"balance": "int"}, None))
    >>> (c.type, sorted(c.columns))
    ('int', ['balance'])
    """
    cx = _Context(text[:MAX_LENGTH], schema, field)
    if len(text) > MAX_LENGTH:
        raise cx.at(f"expression is longer than {MAX_LENGTH} characters", *_position(text, MAX_LENGTH))
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        lines = _lines(text)
        line = min(exc.lineno or 1, len(lines))  # an error at the end has offset 0: point just past the line
        raise cx.at(f"syntax error: {exc.msg}", line, exc.offset or len(lines[line - 1]) + 1) from None
    except (RecursionError, MemoryError):  # CPython's parser gives up on deep nesting before we can measure it
        raise cx.at(f"expression is nested more than {MAX_DEPTH} levels deep", 1, 1) from None
    _check_depth(tree.body, cx)
    return cx.compile(tree.body)


@dataclass(frozen=True)
class _Context:
    text: str
    schema: TableSchema
    field: str

    def compile(self, node: ast.expr) -> Compiled:
        handler = _HANDLERS.get(type(node))
        if handler is None:
            raise self.error(node, _FORBIDDEN.get(type(node), f"{type(node).__name__} expressions are not allowed"))
        result = handler(node, self)
        if result.size > MAX_NODES:
            raise self.error(node, f"expression expands to more than {MAX_NODES} operations")
        return result

    def error(self, node: ast.expr, message: str) -> InvalidExpression:
        # ast columns are UTF-8 byte offsets; users count characters.
        line = _lines(self.text)[node.lineno - 1]
        return self.at(message, node.lineno, len(line.encode()[: node.col_offset].decode(errors="replace")) + 1)

    def at(self, message: str, line: int, col: int) -> InvalidExpression:
        return InvalidExpression(message, expression=self.text, line=line, col=col, field=self.field)


def _lines(text: str) -> list[str]:
    return re.split(r"\r\n|\r|\n", text)


def _position(text: str, index: int) -> tuple[int, int]:
    lines = _lines(text[:index])
    return len(lines), len(lines[-1]) + 1


_FORBIDDEN: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access is not allowed",
    ast.Subscript: "subscripts are not allowed",
    ast.Lambda: "lambdas are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.Starred: "starred expressions are not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Await: "await is not allowed",
    **dict.fromkeys((ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp), "comprehensions are not allowed"),
    **dict.fromkeys((ast.List, ast.Tuple, ast.Set), "lists, tuples and sets are only allowed on the right of 'in'"),
    **dict.fromkeys((ast.Yield, ast.YieldFrom), "yield is not allowed"),
}


def _check_depth(root: ast.expr, cx: _Context) -> None:
    stack: list[tuple[ast.AST, int]] = [(root, 1)]
    while stack:  # iterative: the point is to refuse trees too deep for the recursive compiler
        node, depth = stack.pop()
        if depth > MAX_DEPTH and isinstance(node, ast.expr):
            raise cx.error(node, f"expression is nested more than {MAX_DEPTH} levels deep")
        # Operators, contexts and keywords are not levels of their own.
        stack.extend((c, depth + isinstance(c, ast.expr)) for c in ast.iter_child_nodes(node))


# Building blocks: every Arrow node is made by _apply or _to, so ``size`` stays exact.


def _apply(kernel: Callable[..., pc.Expression], type_: str, *args: Compiled) -> Compiled:
    columns = frozenset[str]().union(*(a.columns for a in args))
    return Compiled(kernel(*(a.expr for a in args)), type_, columns, 1 + sum(a.size for a in args))


def _to(c: Compiled, type_: str) -> Compiled:
    """``c`` as ``type_``: int to float (rounding like ``float()``), a null to any type, text relabelled."""
    if c.type == type_ or (is_textual(c.type) and type_ == "string"):
        return replace(c, type=type_)
    return Compiled(c.expr.cast(arrow_type(type_), safe=False), type_, c.columns, c.size + 1)


def _unify(a: str, b: str) -> str | None:
    """The type both sides can take, or None."""
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    if {a, b} == {"int", "float"}:
        return "float"
    return "string" if is_textual(a) and is_textual(b) else None


def _literal(node: ast.expr) -> ast.Constant | None:
    """A constant, folding a sign into a number (``-1`` parses as a unary minus on ``1``)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _literal(node.operand)
        if inner is not None and isinstance(inner.value, int | float) and not isinstance(inner.value, bool):
            value = -inner.value if isinstance(node.op, ast.USub) else inner.value
            return ast.copy_location(ast.Constant(value), node)
    return node if isinstance(node, ast.Constant) else None


# One handler per allowed node kind.


def _constant(node: ast.Constant, cx: _Context) -> Compiled:
    v = node.value
    type_ = _LITERALS.get(type(v))
    if type_ is None:
        raise cx.error(node, f"{type(v).__name__} literals are not allowed")
    if type(v) is int and not INT_MIN <= v <= INT_MAX:
        raise cx.error(node, f"integer literal {v} is out of the 64-bit range")
    if type(v) is float and not math.isfinite(v):
        raise cx.error(node, "float literal is not finite")
    return Compiled(pc.scalar(pa.scalar(v, None if v is None else arrow_type(type_))), type_, frozenset())


_LITERALS: dict[type, str] = {bool: "bool", int: "int", float: "float", str: "string", type(None): "null"}


def _name(node: ast.Name, cx: _Context) -> Compiled:
    column = cx.schema.column(node.id, cx.field)
    return Compiled(pc.field(column.name), column.type, frozenset({column.name}))


_ARITHMETIC: dict[type[ast.operator], tuple[str, Callable[..., pc.Expression]]] = {
    ast.Add: ("+", pc.add_checked),
    ast.Sub: ("-", pc.subtract_checked),
    ast.Mult: ("*", pc.multiply_checked),
    ast.Pow: ("**", pc.power_checked),
    ast.Div: ("/", pc.divide_checked),
    ast.FloorDiv: ("//", pc.divide_checked),
    ast.Mod: ("%", pc.modulo_checked),
}
_SYMBOLS = {ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&"}


def _binop(node: ast.BinOp, cx: _Context) -> Compiled:
    a, b = cx.compile(node.left), cx.compile(node.right)
    op = type(node.op)
    if op not in _ARITHMETIC:
        raise cx.error(node, f"operator '{_SYMBOLS.get(op, op.__name__)}' is not allowed")
    symbol, kernel = _ARITHMETIC[op]
    if op is ast.Add and is_textual(a.type) and is_textual(b.type):
        return _apply(lambda x, y: pc.binary_join_element_wise(x, y, ""), "string", a, b)
    if a.type not in ("int", "float") or b.type not in ("int", "float"):
        raise cx.error(node, f"operator '{symbol}' does not apply to {a.type} and {b.type}")
    natural_power = isinstance(node.right, ast.Constant) and type(node.right.value) is int and node.right.value >= 0
    if op is ast.Div or (op is ast.Pow and not natural_power):
        type_ = "float"
    else:
        type_ = _unify(a.type, b.type) or "float"
    a, b = _to(a, type_), _to(b, type_)
    if op is ast.FloorDiv:
        return _floor_divide(a, b)
    if op is ast.Mod and type_ == "int":
        kernel = pc.modulo  # exact and Python-like; the checked kernel calls INT_MIN % -1 an overflow
    return _apply(kernel, type_, a, b)


def _floor_divide(a: Compiled, b: Compiled) -> Compiled:
    """Python's ``a // b``: ``(a - a % b) / b``, where the division is exact; floats round off its error."""
    modulo = pc.modulo if a.type == "int" else pc.modulo_checked
    quotient = _apply(
        pc.divide_checked, a.type, _apply(pc.subtract_checked, a.type, a, _apply(modulo, a.type, a, b)), b
    )
    return quotient if a.type == "int" else _apply(pc.round, "float", quotient)


def _unaryop(node: ast.UnaryOp, cx: _Context) -> Compiled:
    literal = _literal(node)
    if literal is not None:
        return _constant(literal, cx)
    c = cx.compile(node.operand)
    if isinstance(node.op, ast.Not):
        return _apply(pc.invert, "bool", _condition(c, node, "operator 'not'", cx))
    if isinstance(node.op, ast.Invert):
        raise cx.error(node, "operator '~' is not allowed")
    symbol = "-" if isinstance(node.op, ast.USub) else "+"
    if c.type not in ("int", "float"):
        raise cx.error(node, f"operator '{symbol}' does not apply to {c.type}")
    return _apply(pc.negate_checked, c.type, c) if symbol == "-" else c


def _condition(c: Compiled, node: ast.expr, what: str, cx: _Context) -> Compiled:
    if c.type not in ("bool", "null"):
        raise cx.error(node, f"{what} needs a bool, got {c.type}")
    return _to(c, "bool")


def _boolop(node: ast.BoolOp, cx: _Context) -> Compiled:
    word, kernel = ("and", pc.and_kleene) if isinstance(node.op, ast.And) else ("or", pc.or_kleene)
    return _fold(kernel, [_condition(cx.compile(v), v, f"operator '{word}'", cx) for v in node.values])


def _fold(kernel: Callable[..., pc.Expression], values: list[Compiled]) -> Compiled:
    return functools.reduce(lambda x, y: _apply(kernel, "bool", x, y), values)


_COMPARISONS: dict[type[ast.cmpop], tuple[str, Callable[..., pc.Expression]]] = {
    ast.Eq: ("==", pc.equal),
    ast.NotEq: ("!=", pc.not_equal),
    ast.Lt: ("<", pc.less),
    ast.LtE: ("<=", pc.less_equal),
    ast.Gt: (">", pc.greater),
    ast.GtE: (">=", pc.greater_equal),
}


def _compare(node: ast.Compare, cx: _Context) -> Compiled:
    """``a < b < c`` is ``a < b and b < c``; each pair is compiled on its own."""
    left_node, left = node.left, cx.compile(node.left)
    pairs = []
    for i, (op, right_node) in enumerate(zip(node.ops, node.comparators, strict=True)):
        if isinstance(op, ast.In | ast.NotIn):
            if i < len(node.ops) - 1:
                raise cx.error(right_node, _FORBIDDEN.get(type(right_node), "'in' must end a chain of comparisons"))
            pairs.append(_membership(left, isinstance(op, ast.NotIn), right_node, node, cx))
            continue
        if isinstance(op, ast.Is | ast.IsNot):
            raise cx.error(node, "'is' comparisons are not allowed; use == None or != None")
        right = cx.compile(right_node)
        pairs.append(_comparison(left, left_node, op, right, right_node, node, cx))
        left_node, left = right_node, right
    return _fold(pc.and_kleene, pairs)


def _comparison(
    a: Compiled, a_node: ast.expr, op: ast.cmpop, b: Compiled, b_node: ast.expr, node: ast.Compare, cx: _Context
) -> Compiled:
    symbol, kernel = _COMPARISONS[type(op)]
    if "null" in (a.type, b.type):
        if symbol not in ("==", "!="):
            raise cx.error(node, f"operator '{symbol}' does not apply to {a.type} and {b.type}")
        if a.type == b.type:
            return _constant(ast.copy_location(ast.Constant(symbol == "=="), node), cx)
        other = b if a.type == "null" else a
        return _apply(pc.is_null if symbol == "==" else pc.is_valid, "bool", other)
    a, b = _coerce_literal(a, a_node, b.type, cx), _coerce_literal(b, b_node, a.type, cx)
    type_ = _unify(a.type, b.type)
    if type_ is None or type_ == "json":
        raise cx.error(node, f"operator '{symbol}' does not apply to {a.type} and {b.type}")
    return _apply(kernel, "bool", _to(a, type_), _to(b, type_))


def _coerce_literal(c: Compiled, node: ast.expr, other: str, cx: _Context) -> Compiled:
    """A string literal compared with a timestamp or date column is read as one (``at > "2024-01-01"``)."""
    if other not in ("timestamp", "date") or not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return c
    try:
        return Compiled(pc.scalar(coerce_value(Column("value", other), node.value, (cx.field,))), other, frozenset())
    except SchemaMismatch as exc:
        raise cx.error(node, exc.errors[0].msg) from None


def _membership(left: Compiled, negate: bool, right: ast.expr, node: ast.Compare, cx: _Context) -> Compiled:
    symbol = "not in" if negate else "in"
    if not isinstance(right, ast.List | ast.Tuple | ast.Set):
        raise cx.error(right, f"the right side of '{symbol}' must be a list, tuple or set of literals")
    if left.type in ("json", "null"):
        raise cx.error(node, f"operator '{symbol}' does not apply to {left.type}")
    values: list[Any] = []
    column = Column("value", left.type)
    for elt in right.elts:
        literal = _literal(elt)
        if literal is None:
            raise cx.error(elt, _FORBIDDEN.get(type(elt), f"the right side of '{symbol}' may hold only literals"))
        try:
            values.append(None if literal.value is None else coerce_value(column, literal.value, ()).as_py())
        except SchemaMismatch as exc:
            raise cx.error(elt, f"'{symbol}' value does not fit {left.type}: {exc.errors[0].msg}") from None
    value_set = pa.array(values, arrow_type(left.type))
    found = _apply(lambda x: pc.is_in(x, value_set=value_set), "bool", left)
    return _apply(pc.invert, "bool", found) if negate else found


def _ifexp(node: ast.IfExp, cx: _Context) -> Compiled:
    condition = _condition(cx.compile(node.test), node.test, "the condition of 'if'", cx)
    a, b = cx.compile(node.body), cx.compile(node.orelse)
    type_ = _unify(a.type, b.type)
    if type_ is None:
        raise cx.error(node, f"the branches of 'if' have incompatible types {a.type} and {b.type}")
    return _apply(pc.if_else, type_, condition, _to(a, type_), _to(b, type_))


def _call(node: ast.Call, cx: _Context) -> Compiled:
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name is None or name not in FUNCTIONS:
        unknown = f" ('{name}' is not a known function)" if name else ""
        raise cx.error(node, f"function calls are not allowed{unknown}")
    if node.keywords:
        raise cx.error(node, f"keyword arguments are not allowed in '{name}()'")
    args = [cx.compile(a) for a in node.args]
    try:
        return FUNCTIONS[name](*args)
    except TypeError as exc:
        raise cx.error(node, f"{name}(): {exc}") from None


_HANDLERS: dict[type[ast.AST], Callable[[Any, _Context], Compiled]] = {
    ast.Constant: _constant,
    ast.Name: _name,
    ast.BinOp: _binop,
    ast.UnaryOp: _unaryop,
    ast.BoolOp: _boolop,
    ast.Compare: _compare,
    ast.IfExp: _ifexp,
    ast.Call: _call,
}

__all__ = ["FUNCTIONS", "MAX_DEPTH", "MAX_LENGTH", "MAX_NODES", "Compiled", "InvalidExpression", "compile_expression"]
