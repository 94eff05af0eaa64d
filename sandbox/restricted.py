"""Python UDFs under RestrictedPython: compile with its policy, run with its guards (inside a sandbox worker).

The code must define a function named like the UDF, taking the UDF's parameters. What it may use:

- RestrictedPython's policy, checked at compile time: no names or attributes starting with ``_`` (so no
  ``__class__`` / ``__subclasses__`` / ``__globals__``), none of the frame and code attributes (``gi_frame``,
  ``f_back``, ``tb_frame`` ...), no ``exec`` / ``eval``, no ``try/except*``, ``match`` or async code; a parameter
  cannot shadow a guard since guards start with ``_``.
- Its guards at run time: attribute reads through ``safer_getattr_raise`` (which also refuses ``str.format`` and
  ``string.Formatter``, the classic attribute walks), item and iteration guards, writes only to the UDF's own
  containers.
- Safe builtins only: no ``open``, ``getattr``, ``type``, ``vars``, ``globals``, ``eval``, ``compile``, ``input``.
- ``import`` of an allow-list of pure modules (``ALLOWED_MODULES``). A module is handed out as a read-only view of
  its public attributes without the modules it imports itself (``statistics.sys`` would otherwise reach ``os``).

Limits (CPU time, address space, wall clock) are the worker's, not this module's.
"""

from __future__ import annotations

import ast
import datetime
import json
import math
import operator
import re
import statistics
import types
from collections.abc import Callable
from typing import Any

from RestrictedPython import compile_restricted_exec, limited_builtins, safe_builtins, utility_builtins
from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr_raise,
)
from RestrictedPython.PrintCollector import PrintCollector
from RestrictedPython.transformer import RestrictingNodeTransformer

FILENAME = "<udf>"
# Pure modules only; ``operator`` is not one (``attrgetter('__class__')`` would walk past the guards).
ALLOWED_MODULES: dict[str, types.ModuleType] = {m.__name__: m for m in (math, statistics, datetime, re, json)}
_ALLOWED_TEXT = ", ".join(sorted(ALLOWED_MODULES))


class CompileFailure(Exception):
    """The code does not compile or breaks the policy; ``line`` / ``col`` are 1-based."""

    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(message)
        self.message, self.line, self.col = message, line, col


def _module_view(module: types.ModuleType) -> types.SimpleNamespace:
    """The module's public API (``__all__`` where it has one), without modules."""
    names = getattr(module, "__all__", None) or [k for k in vars(module) if not k.startswith("_")]
    public = {k: getattr(module, k) for k in names if not isinstance(getattr(module, k), types.ModuleType)}
    return types.SimpleNamespace(**public)


_VIEWS = {name: _module_view(m) for name, m in ALLOWED_MODULES.items()}


def _import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    if level != 0 or name not in _VIEWS:
        raise ImportError(f"import of '{name}' is not allowed; allowed modules: {_ALLOWED_TEXT}")
    return _VIEWS[name]


def _inplace(op: str, x: Any, y: Any) -> Any:
    return _INPLACE[op](x, y)


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
}


def _builtins() -> dict[str, Any]:
    allowed = {**safe_builtins, **limited_builtins}
    for name in ("set", "frozenset"):
        allowed[name] = utility_builtins[name]
    allowed.update(
        {
            "__import__": _import,
            "dict": dict,
            "enumerate": enumerate,
            "zip": zip,
            "map": map,
            "filter": filter,
            "sum": sum,
            "min": min,
            "max": max,
            "any": any,
            "all": all,
            "sorted": sorted,
            "reversed": reversed,
            "list": list,
            "tuple": tuple,
        }
    )
    return allowed


def _globals() -> dict[str, Any]:
    return {
        "__builtins__": _builtins(),
        "__name__": "udf",
        "__metaclass__": type,
        "_getattr_": safer_getattr_raise,
        "_getitem_": default_guarded_getitem,
        "_getiter_": default_guarded_getiter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": full_write_guard,
        "_inplacevar_": _inplace,
        "_print_": PrintCollector,
    }


def compile_function(code: str, name: str, parameters: list[str]) -> Callable[..., Any]:
    """Compile ``code``, run its top level, and return its function ``name``; raises CompileFailure."""
    try:
        tree = ast.parse(code, FILENAME)
    except SyntaxError as exc:
        raise CompileFailure(f"syntax error: {exc.msg}", exc.lineno or 1, exc.offset or 1) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise CompileFailure(f"cannot parse the code: {type(exc).__name__}", 1, 1) from None
    problems: list[tuple[int, int, str]] = []

    class Policy(RestrictingNodeTransformer):
        def error(self, node: ast.AST, info: str) -> None:
            problems.append((getattr(node, "lineno", 1) or 1, (getattr(node, "col_offset", 0) or 0) + 1, info))
            super().error(node, info)

    result = compile_restricted_exec(tree, FILENAME, policy=Policy)
    if result.errors or result.code is None:
        line, col, info = problems[0] if problems else (1, 1, "; ".join(result.errors) or "cannot compile")
        raise CompileFailure(info, line, col)
    namespace = _globals()
    try:
        exec(result.code, namespace)
    except MemoryError:
        raise
    except BaseException as exc:  # the top level raised: a compile-time problem for the user
        raise CompileFailure(f"the code raised {describe(exc, with_line=False)}", line_of(exc) or 1, 1) from None
    function = namespace.get(name)
    if not isinstance(function, types.FunctionType):
        raise CompileFailure(f"the code must define a function named '{name}'", 1, 1)
    code_obj = function.__code__
    declared = list(code_obj.co_varnames[: code_obj.co_argcount])
    if declared != parameters or code_obj.co_posonlyargcount or code_obj.co_kwonlyargcount:
        line = code_obj.co_firstlineno
        want = ", ".join(parameters)
        raise CompileFailure(
            f"'{name}' must take exactly the parameters ({want}), got ({', '.join(declared)})", line, 1
        )
    return function


def line_of(exc: BaseException) -> int | None:
    """The line of the UDF's code where ``exc`` was raised (its innermost frame in the UDF)."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def describe(exc: BaseException, with_line: bool = True) -> str:
    """``ZeroDivisionError: division by zero (line 3)``: the exception and where in the UDF's code it was raised."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    line = line_of(exc) if with_line else None
    text = text if len(text) <= 400 else text[:400] + "..."
    return f"{text} (line {line})" if line else text
