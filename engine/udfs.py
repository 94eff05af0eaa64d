"""User-defined functions: their definitions, the runner interface the sandbox implements, and how calls compile.

A UDF belongs to a table and lives in its schema (``TableSchema.udfs``), so it travels with the schema to every
shard and a change to it is a schema change (a write planned before it is refused with ``schema_changed``).

The engine never runs UDF code. It asks a ``UdfRunner`` (implemented by ``sandbox.runner``, installed by the
composition root, or loaded lazily from ``Settings.udf_runner``) to *check* a definition when it is registered and
to *run* it over whole Arrow columns. A check may find that the function is a single expression built from
arithmetic, comparisons and conditionals: it then hands back that expression (``Udf.inline``) and calls compile into
the same vectorised kernels as a computed column's expression, with no sandbox round trip. SQL UDFs are always
inlined: SQL is translated, never run.

In an expression (a computed column of type ``udf`` or ``expression``), ``name(arg, ...)`` compiles to:

- the inline expression with each parameter bound to its argument (converted to the parameter's type), or
- a *step* (``engine.expressions``) whose kernel (``UdfKernel``) sends the argument columns to the runner in
  batches; failing rows become failing cells (``on_error``), a limit that was hit fails the whole computation.

``deterministic`` UDFs are called once per distinct argument tuple within a computation.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import math
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from engine.coerce import column_array
from engine.errors import Conflict, FieldError, InvalidRequest, NotFound, SchemaMismatch, ShardUnavailable
from engine.evaluation import evaluate
from engine.expressions import (
    FUNCTIONS,
    ArgumentError,
    Compiled,
    Function,
    StepCall,
    StepResult,
    compile_expression,
    convert,
)
from engine.schema import Column, TableSchema, check_name
from engine.types import is_textual

Language = Literal["python", "sql", "javascript"]
LANGUAGES: tuple[str, ...] = ("python", "sql", "javascript")
TYPES: tuple[str, ...] = ("int", "float", "string", "bool", "json", "timestamp")
MAX_CODE = 64 * 1024
MAX_PARAMETERS = 32


# -- errors --------------------------------------------------------------------------------------------------------
class UdfNotFound(NotFound):
    code = "udf_not_found"

    def __init__(self, table: str, name: str) -> None:
        super().__init__(f"UDF '{name}' not found in table '{table}'", table=table, udf=name)


class UdfExists(Conflict):
    code = "udf_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"UDF '{name}' already exists", udf=name)


class UdfInUse(Conflict):
    code = "udf_in_use"


class InvalidUdf(InvalidRequest):
    """A definition that cannot be registered (bad name, language, parameter or type)."""

    code = "invalid_udf"


class UdfCompileError(InvalidRequest):
    """The code does not compile or breaks a sandbox rule; ``line`` and ``col`` are 1-based, in ``code``."""

    code = "udf_compile_error"

    def __init__(self, message: str, *, line: int, col: int, language: str = "") -> None:
        where = f" (line {line}, col {col})"
        super().__init__(f"code: {message}{where}", field="code", line=line, col=col, language=language)
        self.line, self.col = line, col


class UdfRuntimeError(InvalidRequest):
    """The function raised (or returned a value of the wrong type) for the arguments of an execute call."""

    code = "udf_error"


class UdfLimitExceeded(InvalidRequest):
    """A call overran a sandbox limit (``limit``: ``cpu_time``, ``memory`` or ``wall_clock``); its worker was
    killed and replaced. Fails the whole computation, whatever ``on_error`` says: the rows are not to blame alone."""

    code = "udf_limit_exceeded"

    def __init__(self, udf: str, limit: str, detail: str) -> None:
        super().__init__(f"UDF '{udf}' stopped: {detail}", udf=udf, limit=limit)
        self.limit = limit


class SandboxUnavailable(ShardUnavailable):
    """No sandbox worker could be started (503, like a shard that cannot be reached)."""

    code = "sandbox_unavailable"


# -- definitions ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameter:
    name: str
    type: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type}


@dataclass(frozen=True)
class Udf:
    """A registered UDF as stored in the table's schema. ``inline`` is the expression it compiles to, if any."""

    id: str
    name: str
    language: str
    code: str
    parameters: tuple[Parameter, ...]
    return_type: str
    description: str | None
    deterministic: bool
    created_at: str
    updated_at: str
    inline: str | None = None

    @functools.cached_property
    def key(self) -> str:
        """What a worker caches the compiled function under: changes with anything compiling depends on."""
        parts = (
            self.language,
            self.name,
            self.code,
            self.return_type,
            *(f"{p.name}:{p.type}" for p in self.parameters),
        )
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "code": self.code,
            "parameters": [p.to_dict() for p in self.parameters],
            "return_type": self.return_type,
            "description": self.description,
            "deterministic": self.deterministic,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "inline": self.inline,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Udf:
        return cls(
            d["id"],
            d["name"],
            d["language"],
            d["code"],
            tuple(Parameter(p["name"], p["type"]) for p in d["parameters"]),
            d["return_type"],
            d.get("description"),
            d["deterministic"],
            d["created_at"],
            d["updated_at"],
            d.get("inline"),
        )


# -- the runner ----------------------------------------------------------------------------------------------------
class UdfRunner(Protocol):
    """Runs UDF code somewhere safe. Implemented by ``sandbox.runner.SandboxRunner``."""

    def check(self, udf: Udf) -> str | None:
        """Compile ``udf`` in the sandbox; return its inline expression (or None); raise UdfCompileError."""

    def run(self, udf: Udf, arrays: Sequence[pa.Array], rows: int) -> StepResult:
        """``udf`` over ``rows`` rows of ``arrays`` (one per parameter, of the parameters' Arrow types).

        Returns values of the return type's Arrow type, and a reason where a row failed (null elsewhere).
        Raises UdfLimitExceeded when a limit was hit.
        """


@dataclass
class _Installed:
    lock: threading.Lock = field(default_factory=threading.Lock)
    runner: UdfRunner | None = None
    spec: tuple[str, Mapping[str, Any]] | None = None


_INSTALLED = _Installed()


def install(runner: UdfRunner | None) -> None:
    """Use ``runner`` in this process (None forgets it)."""
    with _INSTALLED.lock:
        _INSTALLED.runner = runner


def configure(path: str, options: Mapping[str, Any]) -> None:
    """Load the runner ``module:Class`` with ``options`` when first needed (unless one is installed)."""
    with _INSTALLED.lock:
        _INSTALLED.spec = (path, dict(options))


def runner() -> UdfRunner:
    """The runner of this process; raises SandboxUnavailable if none is installed or configured."""
    with _INSTALLED.lock:
        if _INSTALLED.runner is None and _INSTALLED.spec is not None:
            path, options = _INSTALLED.spec
            module, _, name = path.partition(":")
            _INSTALLED.runner = getattr(importlib.import_module(module), name)(**options)
        if _INSTALLED.runner is None:
            raise SandboxUnavailable("no UDF sandbox is configured in this process")
        return _INSTALLED.runner


# -- registering -------------------------------------------------------------------------------------------------
def define(
    schema: TableSchema,
    name: Any,
    language: Any,
    code: Any,
    parameters: Any,
    return_type: Any,
    description: Any = None,
    deterministic: Any = False,
    *,
    now: str,
    previous: Udf | None = None,
) -> Udf:
    """Validate a definition (not its code: that is the runner's ``check``); raises InvalidUdf naming the field.

    ``previous`` is the UDF being replaced: it keeps its id and creation time.
    """
    check_name(name, "name")
    if previous is None:
        if schema.udf(name) is not None:
            raise UdfExists(name)
        if name in FUNCTIONS:
            raise InvalidUdf(f"name: '{name}' is a built-in function", field="name")
        if schema.has(name):
            raise InvalidUdf(f"name: '{name}' is a column of table '{schema.table}'", field="name")
    if language not in LANGUAGES:
        raise InvalidUdf(f"language must be one of {', '.join(LANGUAGES)}, not {language!r}", field="language")
    if not isinstance(code, str) or not code.strip():
        raise InvalidUdf("code must be a non-empty string", field="code")
    if len(code) > MAX_CODE:
        raise InvalidUdf(f"code is longer than {MAX_CODE} characters", field="code")
    if return_type not in TYPES:
        raise InvalidUdf(f"return_type must be one of {', '.join(TYPES)}, not {return_type!r}", field="return_type")
    if description is not None and not isinstance(description, str):
        raise InvalidUdf("description must be a string", field="description")
    if not isinstance(deterministic, bool):
        raise InvalidUdf("deterministic must be true or false", field="deterministic")
    return Udf(
        previous.id if previous else uuid.uuid4().hex,
        name,
        language,
        code,
        _parameters(parameters),
        return_type,
        description,
        deterministic,
        previous.created_at if previous else now,
        now,
    )


def _parameters(raw: Any) -> tuple[Parameter, ...]:
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise InvalidUdf("parameters must be a list of {name, type}", field="parameters")
    if len(raw) > MAX_PARAMETERS:
        raise InvalidUdf(f"a UDF takes at most {MAX_PARAMETERS} parameters", field="parameters")
    out: list[Parameter] = []
    for i, p in enumerate(raw):
        loc = f"parameters[{i}]"
        if not isinstance(p, dict) or set(p) - {"name", "type", "description"} or "name" not in p:
            raise InvalidUdf(f"{loc} must be {{name, type}}", field=loc)
        check_name(p["name"], f"{loc}.name")
        type_ = p.get("type")
        if type_ not in TYPES:
            raise InvalidUdf(f"{loc}.type must be one of {', '.join(TYPES)}, not {type_!r}", field=f"{loc}.type")
        if any(q.name.lower() == p["name"].lower() for q in out):
            raise InvalidUdf(f"{loc}: parameter '{p['name']}' is declared twice", field=loc)
        out.append(Parameter(p["name"], type_))
    return tuple(out)


def checked(udf: Udf, runner: UdfRunner) -> Udf:
    """``udf`` compiled by ``runner``, with its inline expression when one fits the declared types."""
    candidate = runner.check(udf)
    inline = None
    if candidate is not None:
        try:
            inline = _fits(udf, candidate)
        except (InvalidRequest, TypeError) as exc:
            if udf.language == "sql":  # SQL has no other way to run
                message = exc.message if isinstance(exc, InvalidRequest) else str(exc)
                raise UdfCompileError(message.removeprefix("code: "), line=1, col=1, language="sql") from None
    return replace(udf, inline=inline)


def _fits(udf: Udf, text: str) -> str:
    bindings = {p.name: Compiled(pc.field(p.name), p.type, frozenset({p.name})) for p in udf.parameters}
    result = compile_expression(text, _NO_COLUMNS, field="code", bindings=bindings)
    if result.type not in (udf.return_type, "null") and (result.type, udf.return_type) != ("int", "float"):
        raise TypeError(f"the expression gives {result.type}, but return_type is {udf.return_type}")
    return text


_NO_COLUMNS = TableSchema("udf", ())


# -- calling from expressions ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1024)
def functions(udfs: tuple[Udf, ...]) -> Mapping[str, Function]:
    """The callables ``compile_expression`` takes for a table's UDFs."""
    return {u.name: functools.partial(_call, u) for u in udfs}


def _call(udf: Udf, *args: Compiled) -> Compiled | StepCall:
    want = len(udf.parameters)
    if len(args) != want:
        raise TypeError(f"takes {want} argument{'s' if want != 1 else ''}, got {len(args)}")
    bound = tuple(_argument(i, a, p) for i, (a, p) in enumerate(zip(args, udf.parameters, strict=True)))
    if udf.inline is not None:
        names = {p.name: a for p, a in zip(udf.parameters, bound, strict=True)}
        result = compile_expression(udf.inline, _NO_COLUMNS, field="code", bindings=names)
        return convert(result, udf.return_type)
    if not bound:  # a step needs an argument to know how many rows there are
        bound = (Compiled(pc.scalar(0), "int", frozenset()),)
    return StepCall(UdfKernel(udf), udf.return_type, bound)


def _argument(i: int, arg: Compiled, p: Parameter) -> Compiled:
    if arg.type == p.type or arg.type == "null" or (arg.type, p.type) == ("int", "float"):
        return convert(arg, p.type)
    if p.type == "string" and is_textual(arg.type):
        return convert(arg, "string")
    raise ArgumentError(i + 1, f"({p.name}) must be {p.type}, got {arg.type}")


@dataclass(frozen=True)
class UdfKernel:
    """A step kernel: the UDF over whole columns, through this process's runner (deterministic: memoised)."""

    udf: Udf

    def __call__(self, arrays: list[pa.Array]) -> StepResult:
        rows = len(arrays[0])
        args = arrays[: len(self.udf.parameters)]
        if self.udf.deterministic and rows > 1:
            return _memoised(self.udf, args, rows)
        return runner().run(self.udf, args, rows)


def _memoised(udf: Udf, args: list[pa.Array], rows: int) -> StepResult:
    """The UDF once per distinct argument tuple, spread back over the rows."""
    if not args:
        once = runner().run(udf, [], 1)
        index = pa.array(np.zeros(rows, np.int64))
        return StepResult(once.values.take(index), once.errors.take(index))
    if len(args) == 1:
        distinct = pc.unique(args[0])
        if len(distinct) == rows:
            return runner().run(udf, args, rows)
        index = pc.index_in(args[0], value_set=distinct, skip_nulls=False)
        unique_args = [distinct]
    else:
        names = [f"a{i}" for i in range(len(args))]
        frame = pl.from_arrow(pa.table(dict(zip(names, args, strict=True))))
        assert isinstance(frame, pl.DataFrame)
        distinct_frame = frame.unique(maintain_order=True)
        if distinct_frame.height == rows:
            return runner().run(udf, args, rows)
        numbered = distinct_frame.with_row_index("_u")
        joined = frame.join(numbered, on=names, how="left", nulls_equal=True, maintain_order="left")
        index = joined["_u"].to_arrow()
        unique_args = [distinct_frame[n].to_arrow() for n in names]
        unique_args = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in unique_args]
    once = runner().run(udf, unique_args, len(unique_args[0]))
    return StepResult(once.values.take(index), once.errors.take(index))


# -- executing one call ------------------------------------------------------------------------------------------
def arguments(udf: Udf, values: Mapping[str, Any]) -> list[pa.Array]:
    """The named arguments of an execute call as one-row arrays; SchemaMismatch (422) lists every bad one."""
    errors: list[FieldError] = []
    if not isinstance(values, Mapping):
        raise SchemaMismatch([FieldError(("body",), "the arguments must be an object of name: value", "type_error")])
    names = {p.name for p in udf.parameters}
    for extra in sorted(set(values) - names):
        errors.append(FieldError(("body", extra), f"'{udf.name}' has no parameter '{extra}'", "extra_forbidden"))
    arrays: list[pa.Array] = []
    for p in udf.parameters:
        if p.name not in values:
            errors.append(FieldError(("body", p.name), f"parameter '{p.name}' ({p.type}) is missing", "missing"))
            continue
        arrays.append(column_array(Column(p.name, p.type), [values[p.name]], functools.partial(_at, p.name), errors))
    if errors:
        raise SchemaMismatch(errors)
    return arrays


@functools.lru_cache(maxsize=256)
def _inline_call(udf: Udf) -> Compiled:
    """``name(param, ...)`` compiled over a table of the parameters: what execute evaluates for an inlined UDF."""
    call = "{}({})".format(udf.name, ", ".join(p.name for p in udf.parameters))
    schema = TableSchema("udf", tuple(Column(p.name, p.type) for p in udf.parameters))
    return compile_expression(call, schema, field="code", functions=functions((udf,)))


def _at(name: str, _row: int) -> tuple[str, ...]:
    return ("body", name)


def execute(udf: Udf, values: Mapping[str, Any]) -> Any:
    """Call ``udf`` once with named arguments; returns the result as a JSON value. Raises UdfRuntimeError."""
    arrays = arguments(udf, values)
    if udf.inline is not None:
        table = pa.table({p.name: a for p, a in zip(udf.parameters, arrays, strict=True)}) if arrays else None
        outcome = evaluate(_inline_call(udf), table if table is not None else pa.table({"_": [0]}))
        reason = outcome.first_error.partition(": ")[2] if outcome.errors and outcome.first_error else None
        value = outcome.values[0]
    else:
        result = runner().run(udf, arrays, 1)
        reason, value = result.errors[0].as_py(), result.values[0]
    if reason is not None:
        raise UdfRuntimeError(f"UDF '{udf.name}' failed: {reason}", udf=udf.name, reason=reason)
    return json_value(value.as_py(), udf.return_type)


def json_value(value: Any, type_: str) -> Any:
    if value is None:
        return None
    if type_ == "json":
        return orjson.loads(value)
    if type_ == "timestamp":
        return value.isoformat().replace("+00:00", "Z")
    if type_ == "float" and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    return value


def calls(expression: str, names: set[str]) -> set[str]:
    """The UDFs among ``names`` that ``expression`` calls."""
    try:
        tree = ast.parse(expression, mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return set()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
            found.add(node.func.id)
    return found
