"""Compile Python-syntax expressions over a table's columns to vectorised Arrow computations, and evaluate them.

Used for ``set`` values such as ``{"balance": {"expr": "balance - 10"}}`` and for computed columns. The text is parsed
with ``ast`` and walked with an allow-list: one small function per node kind, registered in ``_HANDLERS``. The result
is a ``Compiled``: a ``pyarrow.compute.Expression`` built from fields, scalars and compute kernels, so nothing runs per
row in Python.

Semantics follow Python where that is cheap, with Arrow's null propagation and Kleene ``and`` / ``or``:

- ``+ - * **`` on ints use the ``_checked`` kernels: overflow raises ``pyarrow.ArrowInvalid`` when ``Compiled.expr``
  is evaluated, and so does division by zero, also on floats; ``evaluate`` turns both into cell errors.
- ``/`` is always float. ``//`` and ``%`` floor like Python. ``a // b`` is ``(a - a % b) / b``: exact for ints, but
  raising overflow when ``a`` is within ``|b|`` of the int64 limits; for floats it matches Python below about 2**52
  and may differ by one above. Float ``**`` gives NaN or inf where Python would raise or return a complex number.
- ``x == None`` / ``x != None`` test for null; ``x in [...]`` treats a null ``x`` like Python's ``None``: it is in the
  list only if the list holds ``None``.

Functions. A call is looked up in the extra ``functions`` a caller passes to ``compile_expression`` (a table's UDFs)
first, then in the functions of the process's plugin registry (``engine.registry.current()``: the built-ins are
plugins in ``plugins/functions/``, and any installed package may add its own), merged once per registry, so the lookup
is a dict lookup. A function (``engine.expr.args`` has the helpers to write one) takes the compiled arguments and returns a ``Compiled`` (built with ``apply`` or ``guarded``), or raises ``ArgumentError`` /
``TypeError``, which become an ``InvalidExpression`` at the argument or the call. Work an Arrow expression cannot do
is a *step*: the function returns a ``StepCall`` holding a kernel, a picklable callable compared by value that maps the
arguments' whole columns to a column (``list[pa.Array] -> pa.Array | StepResult``). Steps run before the main
expression, which reads each result as a hidden column (``__step0`` ...)::

    @dataclass(frozen=True)
    class Shout:
        def __call__(self, arrays: list[pa.Array]) -> pa.Array:
            return pc.utf8_upper(arrays[0])

    def shout(s: Compiled) -> StepCall:
        if s.type != "string":
            raise ArgumentError(1, f"must be a string, got {s.type}")
        return StepCall(Shout(), "string", (s,))

    compiled = compile_expression("shout(name) + '!'", schema, functions={"shout": shout})

Evaluation. ``engine.expr.evaluate.evaluate(compiled, table, on_error)`` runs the steps, then the expression: one vectorised pass when no
cell fails. A cell fails on division by zero, integer overflow, a bad conversion, invalid JSON text ...: it becomes
null and is counted (``on_error="null"``), or raises ``CellError`` (``"abort"``). Failures that can be foreseen (a
zero divisor, text that is not a number) are guarded: ``Compiled.guard`` computes the expression with those cells null
and a reason for each, still vectorised. The others (overflow) are found by evaluating halves of the rows until each
failing row is alone, which is fast while they are rare. A guarded failure counts only where Python evaluates the
operation: not in the branch of ``if`` that is not taken, nor right of an ``and`` / ``or`` already decided (Arrow
computes both sides, so an overflow on either side still fails the cell). Steps fail cells through their
``StepResult.errors``, or by raising ``ValueError`` / ``ArithmeticError`` for the rows that they cannot compute.

``Compiled.expr`` is the computation as one Arrow expression, as before; an expression with steps has none, and
``expr`` raises ``InvalidExpression`` instead of giving an expression that reads columns a table does not have.
"""

from __future__ import annotations

import ast
import functools
import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InvalidExpression, SchemaMismatch
from engine.expr.core import (
    ARITHMETIC,
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_NODES,
    NO_REASON,
    SYMBOLS,
    ArgumentError,
    Compiled,
    Function,
    Guard,
    Step,
    StepCall,
    apply,
    arithmetic,
    columns_of,
    convert,
    reason_of,
    steps_of,
    unify,
)
from engine.model.coerce import INT_MAX, INT_MIN, coerce_value
from engine.model.schema import Column, TableSchema
from engine.model.types import arrow_type
from engine.registry import current


def compile_expression(
    text: str,
    schema: TableSchema,
    *,
    field: str = "expr",
    functions: Mapping[str, Function] | None = None,
    bindings: Mapping[str, Compiled] | None = None,
) -> Compiled:
    """Compile ``text`` against ``schema``; raises InvalidExpression or ColumnNotFound.

    ``functions`` adds callable names (a table's UDFs), looked up before the registry's. ``bindings`` gives names
    a compiled value instead of a column (an inlined UDF's parameters bound to its arguments).

    >>> from engine.model.schema import build_schema
    >>> c = compile_expression("balance - 10", build_schema("t", {"balance": "int"}, None))
    >>> (c.type, sorted(c.columns))
    ('int', ['balance'])
    """
    library = current().functions()
    cx = _Context(text[:MAX_LENGTH], schema, field, functions or {}, library, itertools.count(), bindings or {})
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
    functions: Mapping[str, Function]
    library: Mapping[str, Function]  # the registry's
    steps: Iterator[int]  # numbers the steps' hidden columns
    bindings: Mapping[str, Compiled]

    def compile(self, node: ast.expr) -> Compiled:
        handler = _HANDLERS.get(type(node))
        if handler is None:
            raise self.error(node, _FORBIDDEN.get(type(node), f"{type(node).__name__} expressions are not allowed"))
        result = handler(node, self)
        if max(result.size, result.safe_size + result.reason_size) > MAX_NODES:
            raise self.error(node, f"expression expands to more than {MAX_NODES} operations")
        return result

    def function(self, name: str) -> Function | None:
        return self.functions.get(name) or self.library.get(name)

    def step(self, name: str, node: ast.Call, call: StepCall) -> Compiled:
        """The call's result as a hidden column, computed by a new step."""
        if not call.args:
            raise self.error(node, f"{name}(): a step needs at least one argument")
        step = Step(
            f"__step{next(self.steps)}",
            name,
            call.kernel,
            call.args,
            call.type,
            (self.text, *self.position(node), self.field),
        )
        guard = Guard(pc.field(step.column), pc.field(step.errors), 1, 1)
        return Compiled(pc.field(step.column), call.type, columns_of(call.args), 1, (*steps_of(call.args), step), guard)

    def error(self, node: ast.expr, message: str) -> InvalidExpression:
        return self.at(message, *self.position(node))

    def position(self, node: ast.expr) -> tuple[int, int]:
        # ast columns are UTF-8 byte offsets; users count characters.
        line = _lines(self.text)[node.lineno - 1]
        return node.lineno, len(line.encode()[: node.col_offset].decode(errors="replace")) + 1

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
    bound = cx.bindings.get(node.id)
    if bound is not None:
        return bound
    column = cx.schema.column(node.id, cx.field)
    return Compiled(pc.field(column.name), column.type, frozenset({column.name}))


def _binop(node: ast.BinOp, cx: _Context) -> Compiled:
    a, b = cx.compile(node.left), cx.compile(node.right)
    op = type(node.op)
    if op not in ARITHMETIC:
        raise cx.error(node, f"operator '{SYMBOLS.get(op, op.__name__)}' is not allowed")
    natural_power = isinstance(node.right, ast.Constant) and type(node.right.value) is int and node.right.value >= 0
    try:
        return arithmetic(op, a, b, natural_power=natural_power)
    except TypeError as exc:
        raise cx.error(node, str(exc)) from None


def _unaryop(node: ast.UnaryOp, cx: _Context) -> Compiled:
    literal = _literal(node)
    if literal is not None:
        return _constant(literal, cx)
    c = cx.compile(node.operand)
    if isinstance(node.op, ast.Not):
        return apply(pc.invert, "bool", _condition(c, node, "operator 'not'", cx))
    if isinstance(node.op, ast.Invert):
        raise cx.error(node, "operator '~' is not allowed")
    symbol = "-" if isinstance(node.op, ast.USub) else "+"
    if c.type not in ("int", "float"):
        raise cx.error(node, f"operator '{symbol}' does not apply to {c.type}")
    return apply(pc.negate_checked, c.type, c) if symbol == "-" else c


def _condition(c: Compiled, node: ast.expr, what: str, cx: _Context) -> Compiled:
    if c.type not in ("bool", "null"):
        raise cx.error(node, f"{what} needs a bool, got {c.type}")
    return convert(c, "bool")


def _boolop(node: ast.BoolOp, cx: _Context) -> Compiled:
    word, kernel = ("and", pc.and_kleene) if isinstance(node.op, ast.And) else ("or", pc.or_kleene)
    return _fold(kernel, [_condition(cx.compile(v), v, f"operator '{word}'", cx) for v in node.values])


def _fold(kernel: Callable[..., pc.Expression], values: list[Compiled]) -> Compiled:
    # From the right, ``a and (b and c)``: the same value, and whether ``c`` runs depends on ``b``'s value alone.
    return functools.reduce(lambda rest, x: _logical(kernel, x, rest), reversed(values))


def _logical(kernel: Callable[..., pc.Expression], a: Compiled, b: Compiled) -> Compiled:
    """``a and b`` / ``a or b``: ``b``'s failures count only where ``a`` does not decide, as Python skips ``b``."""
    result = apply(kernel, "bool", a, b)
    if b.guard is None:
        return result
    decides = pc.coalesce(a.safe if kernel is pc.or_kleene else pc.invert(a.safe), pc.scalar(False))
    later = pc.if_else(decides, NO_REASON, b.guard.reason)
    reason = later if a.guard is None else pc.coalesce(a.guard.reason, later)
    assert result.guard is not None
    reason_size = a.reason_size + a.safe_size + b.reason_size + 4
    return replace(result, guard=Guard(result.guard.safe, reason, result.guard.safe_size, reason_size))


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
        return apply(pc.is_null if symbol == "==" else pc.is_valid, "bool", other)
    a, b = _coerce_literal(a, a_node, b.type, cx), _coerce_literal(b, b_node, a.type, cx)
    type_ = unify(a.type, b.type)
    if type_ is None or type_ == "json":
        raise cx.error(node, f"operator '{symbol}' does not apply to {a.type} and {b.type}")
    return apply(kernel, "bool", convert(a, type_), convert(b, type_))


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
    found = apply(lambda x: pc.is_in(x, value_set=value_set), "bool", left)
    return apply(pc.invert, "bool", found) if negate else found


def _ifexp(node: ast.IfExp, cx: _Context) -> Compiled:
    condition = _condition(cx.compile(node.test), node.test, "the condition of 'if'", cx)
    a, b = cx.compile(node.body), cx.compile(node.orelse)
    type_ = unify(a.type, b.type)
    if type_ is None:
        raise cx.error(node, f"the branches of 'if' have incompatible types {a.type} and {b.type}")
    return _choose(condition, convert(a, type_), convert(b, type_))


def _choose(condition: Compiled, a: Compiled, b: Compiled) -> Compiled:
    """``a if condition else b``: only the branch taken fails a cell (a null condition takes neither)."""
    result = apply(pc.if_else, a.type, condition, a, b)
    if result.guard is None or (a.guard is None and b.guard is None):
        return result
    taken = pc.if_else(condition.safe, reason_of(a), reason_of(b))
    reason = taken if condition.guard is None else pc.coalesce(condition.guard.reason, taken)
    reason_size = condition.reason_size + condition.safe_size + a.reason_size + b.reason_size + 3
    return replace(result, guard=Guard(result.guard.safe, reason, result.guard.safe_size, reason_size))


def _call(node: ast.Call, cx: _Context) -> Compiled:
    name = node.func.id if isinstance(node.func, ast.Name) else None
    function = cx.function(name) if name else None
    if name is None or function is None:
        unknown = f" ('{name}' is not a known function)" if name else ""
        raise cx.error(node, f"function calls are not allowed{unknown}")
    if node.keywords:
        raise cx.error(node, f"keyword arguments are not allowed in '{name}()'")
    args = [cx.compile(a) for a in node.args]
    try:
        result = function(*args)
    except ArgumentError as exc:
        at = node.args[exc.index - 1] if 0 < exc.index <= len(node.args) else node
        raise cx.error(at, f"{name}(): {exc}") from None
    except TypeError as exc:
        raise cx.error(node, f"{name}(): {exc}") from None
    return cx.step(name, node, result) if isinstance(result, StepCall) else result


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
