"""What every part of the SQL translation shares: its limits, its dialect, and errors that point into the code.

A private module: the names here are the package's, not its callers' (``sandbox.sql`` re-exports the limits)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

from engine.errors import UdfCompileError

MAX_CODE = 4000
MAX_DEPTH = 32
DIALECT = "duckdb"
SQLGLOT_DIALECT = Dialect.get_or_raise(DIALECT)


def error(code: str, offset: int | None, message: str) -> UdfCompileError:
    """A compile error at character ``offset`` of ``code``, or at 1, 1 when there is no place to point at."""
    line, col = (1, 1) if offset is None else _position(code, offset)
    return UdfCompileError(message, line=line, col=col, language="sql")


def _position(code: str, offset: int) -> tuple[int, int]:
    """The 1-based line and column of character ``offset``, counting lines as the engine does."""
    lines = re.split(r"\r\n|\r|\n", code[:offset])
    return len(lines), len(lines[-1]) + 1


def start_of(node: exp.Expr) -> int | None:
    """Where ``node`` starts in the code: the leftmost position sqlglot recorded in it, else in its parents."""
    current: exp.Expr | None = node
    while current is not None:
        starts = [n.meta["start"] for n in _descendants(current) if isinstance(n.meta.get("start"), int)]
        if starts:
            return min(starts)
        current = current.parent
    return None


def bounds(node: exp.Expr) -> tuple[int, int] | None:
    """The leftmost start and the rightmost end sqlglot recorded in ``node``, None if none (NULL, TRUE, FALSE and
    the keywords and brackets around them have none)."""
    starts = [n.meta["start"] for n in _descendants(node) if isinstance(n.meta.get("start"), int)]
    ends = [n.meta["end"] for n in _descendants(node) if isinstance(n.meta.get("end"), int)]
    return (min(starts), max(ends)) if starts and ends else None


def _descendants(node: exp.Expr) -> Iterator[exp.Expr]:
    stack = [node]
    while stack:  # iterative: used on trees not yet known to be shallow
        current = stack.pop()
        yield current
        stack.extend(current.iter_expressions())


def clean(message: str) -> str:
    """sqlglot's message without its class paths and terminal colours."""
    message = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", message)
    return re.sub(r"\x1b\[[0-9;]*m", "", message).splitlines()[0] if message else "cannot read the code"


def written_name(node: exp.Expr, code: str) -> str:
    """A function's name as written (``CHAR_LENGTH``), else sqlglot's name for the node."""
    if type(node) is exp.Anonymous and isinstance(node.this, str):
        return node.this
    start, end = node.meta.get("start"), node.meta.get("end")
    if isinstance(start, int) and isinstance(end, int) and 0 <= start <= end < len(code):
        return code[start : end + 1]
    return node.sql_name() if isinstance(node, exp.Func) else type(node).__name__.upper()


def call(function: str, *args: str) -> str:
    """The engine expression text of a call: ``call("abs", "x")`` is ``abs(x)``."""
    return f"{function}({', '.join(args)})"
