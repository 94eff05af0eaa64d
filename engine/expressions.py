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

Functions. Calls go through one registry, ``FUNCTIONS`` (the built-ins are in ``engine.functions``), and the extra
``functions`` a caller passes to ``compile_expression`` (a table's UDFs), which are looked up first. A function takes
the compiled arguments and returns a ``Compiled`` (built with ``apply`` or ``guarded``), or raises ``ArgumentError`` /
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

Evaluation. ``evaluate(compiled, table, on_error)`` runs the steps, then the expression: one vectorised pass when no
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from engine.coerce import INT_MAX, INT_MIN, coerce_value
from engine.errors import InvalidRequest, InvalidValue, SchemaMismatch
from engine.schema import Column, TableSchema
from engine.types import arrow_type, is_textual

MAX_LENGTH = 10_000
MAX_DEPTH = 64
# Chained comparisons, ``//`` and the guards repeat their operands in the Arrow tree, which Arrow evaluates without
# sharing; the cap keeps nested repetition from growing the evaluation cost exponentially.
MAX_NODES = 10_000

OnError = Literal["null", "abort"]


class InvalidExpression(InvalidRequest):
    """An expression that cannot be compiled; ``line`` and ``col`` are 1-based."""

    code = "invalid_expression"

    def __init__(self, message: str, *, expression: str, line: int, col: int, field: str = "expr") -> None:
        super().__init__(
            f"{field}: {message} (line {line}, col {col})", expression=expression, line=line, col=col, field=field
        )
        self.expression, self.line, self.col, self.field = expression, line, col, field


class CellError(InvalidValue):
    """A cell whose value cannot be computed, with ``on_error="abort"``; ``row`` is 0-based in the evaluated table."""

    code = "cell_error"

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(f"row {row}: {reason}", row=row, reason=reason)
        self.row, self.reason = row, reason


class ArgumentError(TypeError):
    """Raised by a function for its argument ``index`` (1-based); the InvalidExpression points at that argument."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"argument {index} {message}")
        self.index = index


@dataclass(frozen=True)
class StepResult:
    """A kernel's values and the cells that failed: ``errors`` holds a reason where a cell failed, null elsewhere."""

    values: pa.Array
    errors: pa.Array


Kernel = Callable[[list[pa.Array]], "pa.Array | StepResult"]


@dataclass(frozen=True, eq=False)
class Guard:
    """How cells fail: ``safe`` computes the expression with failing cells null instead of raising for the batch;
    ``reason`` (a string expression) says why a cell fails, null where it does not. The sizes count their nodes."""

    safe: pc.Expression
    reason: pc.Expression
    safe_size: int
    reason_size: int


@dataclass(frozen=True, eq=False)
class Step:
    """A pre-computation: ``column = kernel([values of args])``, and why cells failed in the ``errors`` column.

    ``where`` is the call's (expression, line, col, field), for the error ``Compiled.expr`` raises.
    """

    column: str
    function: str
    kernel: Kernel
    args: tuple[Compiled, ...]
    type: str
    where: tuple[str, int, int, str]

    @property
    def errors(self) -> str:
        return f"{self.column}_error"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Step):
            return NotImplemented
        return self._key() == other._key()

    def _key(self) -> tuple[Any, ...]:
        return (self.column, self.function, self.type, self.args, self.kernel)

    def __hash__(self) -> int:
        return hash((self.column, self.function, self.type))


@dataclass(frozen=True)
class StepCall:
    """What a function returns for work done by ``kernel`` over whole columns rather than by an Arrow expression."""

    kernel: Kernel
    type: str
    args: tuple[Compiled, ...]


@dataclass(frozen=True, eq=False)
class Compiled:
    """A compiled expression, its inferred column type and the columns it reads, its steps' included.

    ``main`` is the Arrow expression over the table's columns and the steps' hidden columns; ``size`` counts the
    nodes of its tree. ``steps`` run first, in order. ``guard`` is how cells fail, or None when only overflow can
    fail them. ``MAX_NODES`` caps ``size`` and the guard's trees.
    """

    main: pc.Expression
    type: str
    columns: frozenset[str]
    size: int = 1
    steps: tuple[Step, ...] = ()
    guard: Guard | None = None

    @property
    def expr(self) -> pc.Expression:
        """The computation as one Arrow expression; raises InvalidExpression when it needs steps (use ``evaluate``)."""
        if self.steps:
            step = self.steps[0]
            text, line, col, field = step.where
            message = f"{step.function}() cannot be used here: it runs as a separate step"
            raise InvalidExpression(message, expression=text, line=line, col=col, field=field)
        return self.main

    @property
    def safe(self) -> pc.Expression:
        """``main`` with the cells that would fail null."""
        return self.main if self.guard is None else self.guard.safe

    @property
    def safe_size(self) -> int:
        return self.size if self.guard is None else self.guard.safe_size

    @property
    def reason_size(self) -> int:
        return 0 if self.guard is None else self.guard.reason_size

    def __eq__(self, other: object) -> bool:
        # Arrow's == on expressions builds an ``equal`` expression; equals() compares the trees.
        if not isinstance(other, Compiled):
            return NotImplemented
        mine, theirs = (self.type, self.columns, self.steps), (other.type, other.columns, other.steps)
        return mine == theirs and bool(self.main.equals(other.main)) and _same_guard(self.guard, other.guard)

    def __hash__(self) -> int:
        return hash((self.type, self.columns))


def _same_guard(a: Guard | None, b: Guard | None) -> bool:
    if a is None or b is None:
        return a is b
    return bool(a.safe.equals(b.safe)) and bool(a.reason.equals(b.reason))


Function = Callable[..., "Compiled | StepCall"]  # takes Compiled arguments; raises ArgumentError or TypeError
FUNCTIONS: dict[str, Function] = {}  # the built-ins, registered by engine.functions (imported at the end)


def compile_expression(
    text: str,
    schema: TableSchema,
    *,
    field: str = "expr",
    functions: Mapping[str, Function] | None = None,
    bindings: Mapping[str, Compiled] | None = None,
) -> Compiled:
    """Compile ``text`` against ``schema``; raises InvalidExpression or ColumnNotFound.

    ``functions`` adds callable names to ``FUNCTIONS`` (a table's UDFs), looked up first. ``bindings`` gives names
    a compiled value instead of a column (an inlined UDF's parameters bound to its arguments).

    >>> from engine.schema import build_schema
    >>> c = compile_expression("balance - 10", build_schema("t", {"balance": "int"}, None))
    >>> (c.type, sorted(c.columns))
    ('int', ['balance'])
    """
    cx = _Context(text[:MAX_LENGTH], schema, field, functions or {}, itertools.count(), bindings or {})
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
        return self.functions.get(name) or FUNCTIONS.get(name)

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
        return Compiled(pc.field(step.column), call.type, _columns(call.args), 1, (*_steps(call.args), step), guard)

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


# Building blocks, for the handlers and for functions: every Arrow node is made by apply or guarded, so the sizes
# stay exact, and steps and guards carry over.


def apply(kernel: Callable[..., pc.Expression], type_: str, *args: Compiled, repeats: int = 1) -> Compiled:
    """``kernel`` over the arguments' expressions, of type ``type_``; a cell fails where an argument's cell fails.

    ``repeats`` is how many times ``kernel`` uses each argument, for the sizes.
    """
    size = 1 + repeats * sum(a.size for a in args)
    guarded_args = [a for a in args if a.guard is not None]
    guard = None
    if guarded_args:
        safe_size = 1 + repeats * sum(a.safe_size for a in args)
        reason_size = len(guarded_args) - 1 + sum(a.reason_size for a in guarded_args)
        reason = first_reason([reason_of(a) for a in guarded_args])
        guard = Guard(kernel(*(a.safe for a in args)), reason, safe_size, reason_size)
    return Compiled(kernel(*(a.main for a in args)), type_, _columns(args), size, _steps(args), guard)


@dataclass(frozen=True)
class Check:
    """A call fails the cells where ``bad(argument)`` holds for its argument ``index`` (0-based) and the other
    arguments are not null: that argument is made null there, so the kernel does not raise, and ``reason`` is
    reported. The kernel must raise in those cells: ``evaluate`` looks at the guard only once the plain expression
    has raised. Arrow evaluates every use of an argument, so ``bad`` uses it at most twice.

    For example ``Check(0, lambda e: pc.less_equal(e, 0.0), "log() of a number <= 0")`` guards ``pc.ln_checked``.
    """

    index: int
    bad: Callable[[pc.Expression], pc.Expression]
    reason: str


def guarded(
    kernel: Callable[..., pc.Expression],
    type_: str,
    args: Sequence[Compiled],
    checks: Sequence[Check],
    *,
    repeats: int = 1,
    unchecked: Callable[..., pc.Expression] | None = None,
) -> Compiled:
    """``apply(kernel, type_, *args)``, where the cells that ``checks`` foresee fail without raising for the batch.

    ``unchecked`` is a variant of ``kernel`` that does not raise in those cells (``pc.sqrt`` for ``pc.sqrt_checked``):
    with it the arguments need not be made null, which saves evaluating them again.
    """
    plain = apply(kernel, type_, *args, repeats=repeats)
    values, sizes = [a.safe for a in args], [a.safe_size for a in args]
    reasons = [a.guard.reason for a in args if a.guard is not None]
    reason_size = sum(a.reason_size for a in args)
    for check in checks:
        i = check.index
        bad = check.bad(values[i])
        others = [pc.is_valid(v) for j, v in enumerate(values) if j != i]  # a kernel does not raise for nulls
        counted = functools.reduce(pc.and_kleene, others, bad)
        reasons.append(pc.if_else(counted, pc.scalar(check.reason), _NO_REASON))
        bad_size = 3 + 2 * sizes[i]  # allowing two uses of the argument, as a range check makes
        reason_size += 2 + bad_size + sum(2 + n for j, n in enumerate(sizes) if j != i)
        if unchecked is None:
            values[i] = pc.if_else(bad, _null(args[i].type), values[i])
            sizes[i] += 2 + bad_size
    if not reasons:
        return plain
    safe_size = 1 + repeats * sum(sizes)
    safe = kernel(*values) if unchecked is None else unchecked(*values)
    guard = Guard(safe, first_reason(reasons), safe_size, reason_size + len(reasons) - 1)
    return replace(plain, guard=guard)


def convert(c: Compiled, type_: str) -> Compiled:
    """``c`` as ``type_``: int to float (rounding like ``float()``), a null to any type, text relabelled."""
    if c.type == type_ or (is_textual(c.type) and type_ == "string"):
        return replace(c, type=type_)
    target = arrow_of(type_)
    return apply(lambda e: e.cast(target, safe=False), type_, c)


def unify(a: str, b: str) -> str | None:
    """The type both sides can take, or None."""
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    if {a, b} == {"int", "float"}:
        return "float"
    return "string" if is_textual(a) and is_textual(b) else None


def reason_of(c: Compiled) -> pc.Expression:
    """Why ``c``'s cells fail: a string expression, null where they do not."""
    return _NO_REASON if c.guard is None else c.guard.reason


_NO_REASON = pc.scalar(pa.scalar(None, pa.string()))


def arrow_of(type_: str) -> pa.DataType:
    return pa.null() if type_ == "null" else arrow_type(type_)


def _null(type_: str) -> pc.Expression:
    return pc.scalar(pa.scalar(None, arrow_of(type_)))


def first_reason(reasons: Sequence[pc.Expression]) -> pc.Expression:
    return reasons[0] if len(reasons) == 1 else pc.coalesce(*reasons)


def _columns(args: Sequence[Compiled]) -> frozenset[str]:
    return frozenset[str]().union(*(a.columns for a in args))


def _steps(args: Sequence[Compiled]) -> tuple[Step, ...]:
    """The arguments' steps, each once, every one after the steps it reads."""
    seen: dict[str, Step] = {}
    for a in args:
        for step in a.steps:
            seen.setdefault(step.column, step)
    return tuple(seen.values())


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
    natural_power = isinstance(node.right, ast.Constant) and type(node.right.value) is int and node.right.value >= 0
    try:
        return arithmetic(op, a, b, natural_power=natural_power)
    except TypeError as exc:
        raise cx.error(node, str(exc)) from None


def arithmetic(op: type[ast.operator], a: Compiled, b: Compiled, *, natural_power: bool = False) -> Compiled:
    """``a op b`` for ``op`` in ``+ - * / // % **`` (``ast.Add`` ...); raises TypeError for operands it does not take.

    ``natural_power``: ``b`` is a non-negative int literal, so int ``**`` stays int.
    """
    symbol, kernel = _ARITHMETIC[op]
    if op is ast.Add and is_textual(a.type) and is_textual(b.type):
        return apply(lambda x, y: pc.binary_join_element_wise(x, y, ""), "string", a, b)
    if a.type not in ("int", "float") or b.type not in ("int", "float"):
        raise TypeError(f"operator '{symbol}' does not apply to {a.type} and {b.type}")
    if op is ast.Div or (op is ast.Pow and not natural_power):
        type_ = "float"
    else:
        type_ = unify(a.type, b.type) or "float"
    a, b = convert(a, type_), convert(b, type_)
    if op is ast.FloorDiv:
        return _divide(_floor_divide(type_), a, b, repeats=2)
    if op is ast.Mod and type_ == "int":
        kernel = pc.modulo  # exact and Python-like; the checked kernel calls INT_MIN % -1 an overflow
    if op in (ast.Div, ast.Mod):
        return _divide(kernel, a, b)
    return apply(kernel, type_, a, b)


def _divide(kernel: Callable[..., pc.Expression], a: Compiled, b: Compiled, repeats: int = 1) -> Compiled:
    """``a / b``, ``a % b`` ...: a zero divisor fails the cell, as in Python (Arrow raises for the whole batch)."""
    zero = pc.scalar(pa.scalar(0, arrow_type(b.type)))
    check = Check(1, lambda y: pc.equal(y, zero), "division by zero")
    return guarded(kernel, a.type, [a, b], [check], repeats=repeats)


def _floor_divide(type_: str) -> Callable[[pc.Expression, pc.Expression], pc.Expression]:
    """Python's ``a // b``: ``(a - a % b) / b``, where the division is exact; floats round off its error."""
    modulo = pc.modulo if type_ == "int" else pc.modulo_checked

    def kernel(a: pc.Expression, b: pc.Expression) -> pc.Expression:
        quotient = pc.divide_checked(pc.subtract_checked(a, modulo(a, b)), b)
        return quotient if type_ == "int" else pc.round(quotient)

    return kernel


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
    later = pc.if_else(decides, _NO_REASON, b.guard.reason)
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


__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_NODES",
    "ArgumentError",
    "CellError",
    "Check",
    "Compiled",
    "Function",
    "Guard",
    "InvalidExpression",
    "Kernel",
    "OnError",
    "Step",
    "StepCall",
    "StepResult",
    "apply",
    "arithmetic",
    "compile_expression",
    "convert",
    "guarded",
    "reason_of",
    "unify",
]

# The built-in functions register themselves in FUNCTIONS; imported last, as they build on the names above.
import engine.functions  # noqa: E402, F401
