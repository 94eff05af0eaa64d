"""What a compiled expression is (``Compiled``, its ``Step``s and ``Guard``), and the helpers the compiler and
the function library build them with (``apply``, ``guarded``, ``convert``, ``arithmetic`` ...).

See ``engine.expr.compiler`` for the language's semantics.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InvalidExpression
from engine.model.types import arrow_type, is_textual

MAX_LENGTH = 10_000
MAX_DEPTH = 64
# Chained comparisons, ``//`` and the guards repeat their operands in the Arrow tree, which Arrow evaluates without
# sharing; the cap keeps nested repetition from growing the evaluation cost exponentially.
MAX_NODES = 10_000


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
    return Compiled(kernel(*(a.main for a in args)), type_, columns_of(args), size, steps_of(args), guard)


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
        reasons.append(pc.if_else(counted, pc.scalar(check.reason), NO_REASON))
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
    return NO_REASON if c.guard is None else c.guard.reason


NO_REASON = pc.scalar(pa.scalar(None, pa.string()))


def arrow_of(type_: str) -> pa.DataType:
    return pa.null() if type_ == "null" else arrow_type(type_)


def _null(type_: str) -> pc.Expression:
    return pc.scalar(pa.scalar(None, arrow_of(type_)))


def first_reason(reasons: Sequence[pc.Expression]) -> pc.Expression:
    return reasons[0] if len(reasons) == 1 else pc.coalesce(*reasons)


def columns_of(args: Sequence[Compiled]) -> frozenset[str]:
    return frozenset[str]().union(*(a.columns for a in args))


def steps_of(args: Sequence[Compiled]) -> tuple[Step, ...]:
    """The arguments' steps, each once, every one after the steps it reads."""
    seen: dict[str, Step] = {}
    for a in args:
        for step in a.steps:
            seen.setdefault(step.column, step)
    return tuple(seen.values())


ARITHMETIC: dict[type[ast.operator], tuple[str, Callable[..., pc.Expression]]] = {
    ast.Add: ("+", pc.add_checked),
    ast.Sub: ("-", pc.subtract_checked),
    ast.Mult: ("*", pc.multiply_checked),
    ast.Pow: ("**", pc.power_checked),
    ast.Div: ("/", pc.divide_checked),
    ast.FloorDiv: ("//", pc.divide_checked),
    ast.Mod: ("%", pc.modulo_checked),
}
SYMBOLS = {ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&"}


def arithmetic(op: type[ast.operator], a: Compiled, b: Compiled, *, natural_power: bool = False) -> Compiled:
    """``a op b`` for ``op`` in ``+ - * / // % **`` (``ast.Add`` ...); raises TypeError for operands it does not take.

    ``natural_power``: ``b`` is a non-negative int literal, so int ``**`` stays int.
    """
    symbol, kernel = ARITHMETIC[op]
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
