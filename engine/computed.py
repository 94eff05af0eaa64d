"""Computed columns: their definitions, validation, and the whole-table kinds (aggregate, window).

Four kinds (``column_type``):

- ``expression``: a Python-syntax expression over the row (``engine.expressions``). Stored ones
  (``cache_results``) are real columns of the shards' Lance datasets, computed by the shard for every row a
  write adds or changes; the others are computed by the shard when read.
- ``udf``: a call of one of the table's user-defined functions (``engine.udfs``), with expressions as arguments;
  stored like an expression column (``cache_results``) or computed when read. Expression columns may call UDFs
  too.
- ``aggregate``: ``SUM AVG MIN MAX COUNT COUNT_DISTINCT`` of a column or expression (``COUNT(*)``), optionally
  ``parameters.group_by``; each row holds its group's value. Shards compute partial aggregates of their rows,
  merged once (``aggregate_values``).
- ``window``: ``ROW_NUMBER RANK DENSE_RANK LAG LEAD`` and ``SUM AVG MIN MAX COUNT`` over a frame, with
  ``partition_by``, ``order_by`` and ``frame`` (rows preceding / following, or ``"unbounded"``). A partition may
  span shards, so the inputs are gathered and computed at once (``window_values``).

Aggregates and windows depend on every row of the table: one insert can change the value of every row of a
group, in every shard. Writing those values into each row would turn a one-row insert into a rewrite of the
group across shards, so they are kept beside the rows instead: the values for a table version are computed
once and cached (per-shard partials for aggregates, so a write recomputes only the shards it touched), and
attached to rows when read. ``cache_results: false`` recomputes them on every read.

Window semantics: rows frames (``ROWS BETWEEN``); rows are ordered by ``order_by`` then by primary key, so
ties have a deterministic order; nulls sort last. Without a frame, an ordered window runs from the start of the
partition to the current row, and an unordered one covers the whole partition. ``LAG(x, n)`` / ``LEAD(x, n)``
default to ``n = 1``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import polars as pl

from engine.errors import Conflict, InvalidRequest
from engine.expressions import OnError
from engine.schema import TableSchema, check_name

# Internal column names: user names start with a letter, so these never clash with a table's columns.
ARG = "_arg"  # an aggregate's or window's argument, computed per row
VALUE = "_value"  # a merged aggregate's or a window's result

ColumnKind = Literal["expression", "udf", "aggregate", "window"]
KINDS: tuple[str, ...] = ("expression", "udf", "aggregate", "window")
AGGREGATES = ("SUM", "AVG", "MIN", "MAX", "COUNT", "COUNT_DISTINCT")
RANKING = ("ROW_NUMBER", "RANK", "DENSE_RANK")
OFFSETS = ("LAG", "LEAD")
WINDOW_AGGREGATES = ("SUM", "AVG", "MIN", "MAX", "COUNT")
_COUNT_STAR = re.compile(r"^\s*COUNT\s*\(\s*\*\s*\)\s*$", re.IGNORECASE)


class InvalidComputedColumn(InvalidRequest):
    code = "invalid_computed_column"


class DependencyConflict(Conflict):
    """Dropping a column that other computed columns read."""

    code = "computed_column_in_use"


@dataclass(frozen=True)
class ComputedColumn:
    """A computed column's definition as stored in the catalog (hashable: parameters kept as JSON text)."""

    name: str
    column_type: str
    expression: str
    dependencies: tuple[str, ...]
    parameters_json: str
    cache_results: bool
    type: str  # the result's column type
    created_at: str

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(orjson.loads(self.parameters_json))

    @property
    def stored(self) -> bool:
        """Held in the shards' rows (Lance columns): stored expression and udf columns."""
        return self.cache_results and self.column_type in ("expression", "udf")

    @property
    def whole_table(self) -> bool:
        return self.column_type in ("aggregate", "window")

    @property
    def on_error(self) -> OnError:
        return "abort" if self.parameters.get("on_error") == "abort" else "null"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "column_type": self.column_type,
            "expression": self.expression,
            "dependencies": list(self.dependencies),
            "parameters": self.parameters,
            "cache_results": self.cache_results,
            "type": self.type,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ComputedColumn:
        return cls(
            d["name"],
            d["column_type"],
            d["expression"],
            tuple(d["dependencies"]),
            orjson.dumps(d["parameters"], option=orjson.OPT_SORT_KEYS).decode(),
            d["cache_results"],
            d["type"],
            d["created_at"],
        )


@dataclass(frozen=True)
class Stats:
    """What the last computation of a column did (kept in the catalog beside the definition)."""

    last_computed: str | None = None
    computation_time_ms: float | None = None
    errors: int = 0
    stale: bool = False  # a UDF it calls was replaced since: recompute to bring stored values up to date


# -- parsing the whole-table kinds ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """``FUNC(arg, n)`` of an aggregate or window column: ``arg`` is expression text (None for ``COUNT(*)``)."""

    function: str
    arg: str | None
    offset: int = 1  # LAG / LEAD


def parse_call(text: str, kind: str) -> Call:
    """Split ``SUM(price * quantity)`` into its function and argument text; raises InvalidComputedColumn."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidComputedColumn("expression is required", field="expression")
    if _COUNT_STAR.match(text):
        return Call("COUNT", None)
    allowed = AGGREGATES if kind == "aggregate" else (*RANKING, *OFFSETS, *WINDOW_AGGREGATES)
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise InvalidComputedColumn(
            f"expression: syntax error: {exc.msg} (line {exc.lineno}, col {exc.offset})", field="expression"
        ) from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.keywords:
        raise InvalidComputedColumn(
            f"expression: a {kind} column is one call of {', '.join(allowed)}, e.g. SUM(price)", field="expression"
        )
    function = node.func.id.upper()
    if function not in allowed:
        raise InvalidComputedColumn(
            f"expression: '{node.func.id}' is not a known {kind} function; use one of {', '.join(allowed)}",
            field="expression",
        )
    args = node.args
    if function in RANKING:
        if args:
            raise InvalidComputedColumn(f"expression: {function}() takes no arguments", field="expression")
        return Call(function, None)
    if function in OFFSETS:
        if not 1 <= len(args) <= 2:
            raise InvalidComputedColumn(f"expression: {function}(x, n) takes one or two arguments", field="expression")
        offset = 1
        if len(args) == 2:
            n = args[1]
            if not (isinstance(n, ast.Constant) and type(n.value) is int and 0 <= n.value <= 1_000_000):
                raise InvalidComputedColumn(
                    f"expression: the offset of {function} must be an integer from 0 to 1000000", field="expression"
                )
            offset = n.value
        return Call(function, ast.get_source_segment(text.strip(), args[0]), offset)
    if len(args) != 1:
        raise InvalidComputedColumn(f"expression: {function}() takes one argument", field="expression")
    return Call(function, ast.get_source_segment(text.strip(), args[0]))


@dataclass(frozen=True)
class Frame:
    preceding: int | None  # None: unbounded
    following: int | None


@dataclass(frozen=True)
class WindowSpec:
    call: Call
    partition_by: tuple[str, ...]
    order_by: tuple[tuple[str, bool], ...]  # (column, descending)
    frame: Frame


def group_by(parameters: dict[str, Any]) -> tuple[str, ...]:
    return _names(parameters.get("group_by", []), "parameters.group_by")


def window_spec(call: Call, parameters: dict[str, Any]) -> WindowSpec:
    partition = _names(parameters.get("partition_by", []), "parameters.partition_by")
    order: list[tuple[str, bool]] = []
    raw = parameters.get("order_by", [])
    if not isinstance(raw, list):
        raise InvalidComputedColumn("parameters.order_by must be a list", field="parameters.order_by")
    for i, item in enumerate(raw):
        loc = f"parameters.order_by[{i}]"
        if isinstance(item, str):
            item = {"column": item}
        if not isinstance(item, dict) or not isinstance(item.get("column"), str) or set(item) - {"column", "direction"}:
            raise InvalidComputedColumn(f"{loc} must be {{column, direction}}", field=loc)
        direction = str(item.get("direction", "asc")).lower()
        if direction not in ("asc", "ascending", "desc", "descending"):
            raise InvalidComputedColumn(f"{loc}.direction must be 'asc' or 'desc'", field=f"{loc}.direction")
        order.append((item["column"], direction.startswith("desc")))
    if call.function in (*RANKING, *OFFSETS) and not order:
        raise InvalidComputedColumn(f"{call.function} needs parameters.order_by", field="parameters.order_by")
    frame_raw = parameters.get("frame")
    if frame_raw is None:
        frame = Frame(None, 0) if order else Frame(None, None)
    else:
        if not isinstance(frame_raw, dict) or set(frame_raw) - {"preceding", "following"}:
            raise InvalidComputedColumn("parameters.frame must be {preceding, following}", field="parameters.frame")
        frame = Frame(
            _bound(frame_raw.get("preceding", "unbounded"), "preceding"),
            _bound(frame_raw.get("following", 0), "following"),
        )
    return WindowSpec(call, partition, tuple(order), frame)


def _bound(value: Any, which: str) -> int | None:
    if value == "unbounded":
        return None
    if type(value) is int and 0 <= value <= 1_000_000_000:
        return value
    raise InvalidComputedColumn(
        f'parameters.frame.{which} must be a non-negative integer or "unbounded"', field=f"parameters.frame.{which}"
    )


def _names(value: Any, loc: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidComputedColumn(f"{loc} must be a list of column names", field=loc)
    for v in value:
        check_name(v, "column")
    return tuple(value)


# -- computing aggregates: per-shard partials, merged once ------------------------------------------------------
def partial_aggregate(frame: pl.DataFrame, function: str, groups: Sequence[str]) -> pl.DataFrame:
    """One shard's partial: per group, what merging needs (``v`` holds the argument's values)."""
    v = pl.col(ARG)
    if function == "COUNT_DISTINCT":
        return frame.select([*groups, ARG]).unique()  # nulls kept: a group of only nulls still counts 0
    parts = {
        "SUM": [v.sum().alias("sum"), v.count().alias("n")],
        "AVG": [v.sum().alias("sum"), v.count().alias("n")],
        "MIN": [v.min().alias("min")],
        "MAX": [v.max().alias("max")],
        "COUNT": [v.count().alias("n")],
    }[function]
    if not groups:
        return frame.select(parts)
    return frame.group_by(list(groups)).agg(parts)


def merge_partials(partials: Sequence[pl.DataFrame], function: str, groups: Sequence[str]) -> pl.DataFrame:
    """Merge shard partials into one value per group (column ``value``)."""
    frames = [p for p in partials if p.height] or list(partials[:1])
    both = pl.concat(frames, how="vertical_relaxed")
    by = list(groups)
    if function == "COUNT_DISTINCT":
        merged = both.unique()
        value = pl.col(ARG).count().alias(VALUE)
        return merged.group_by(by).agg(value) if by else merged.select(value)
    exprs = {
        "SUM": [pl.when(pl.col("n").sum() > 0).then(pl.col("sum").sum()).otherwise(None).alias(VALUE)],
        "AVG": [
            pl.when(pl.col("n").sum() > 0).then(pl.col("sum").sum() / pl.col("n").sum()).otherwise(None).alias(VALUE)
        ],
        "MIN": [pl.col("min").min().alias(VALUE)],
        "MAX": [pl.col("max").max().alias(VALUE)],
        "COUNT": [pl.col("n").sum().alias(VALUE)],
    }[function]
    return both.group_by(by).agg(exprs) if by else both.select(exprs)


def attach_groups(rows: pl.DataFrame, values: pl.DataFrame, groups: Sequence[str], name: str) -> pl.Series:
    """Each row's group value, in row order (a group with no value, or a row of no group, gets null)."""
    if not groups:
        value = values[VALUE][0] if values.height else None
        return pl.Series(name, [value] * rows.height, dtype=values.schema.get(VALUE))
    keyed = rows.select(list(groups)).with_row_index("_row")
    joined = keyed.join(values, on=list(groups), how="left", nulls_equal=True).sort("_row")
    return joined[VALUE].alias(name)


# -- computing windows over whole partitions --------------------------------------------------------------------
def window_values(frame: pl.DataFrame, spec: WindowSpec, key: Sequence[str], name: str) -> pl.DataFrame:
    """The window's value per row of ``frame`` (all rows of the table): returns ``key`` columns and ``name``.

    ``frame`` holds the key, partition and order columns, and ``v`` (the argument's values) when there is one.
    """
    order = [c for c, _ in spec.order_by] + [k for k in key if k not in {c for c, _ in spec.order_by}]
    descending = [d for _, d in spec.order_by] + [False] * (len(order) - len(spec.order_by))
    part = list(spec.partition_by)
    # ``over`` keeps the frame's order within each partition, so sorting by the order columns is enough
    # (sorting by the partition columns too, often strings, cost most of a window's time)
    ordered = frame.sort(order, descending=descending, nulls_last=True)
    f = spec.call.function
    position = pl.int_range(pl.len(), dtype=pl.Int64)
    if f == "ROW_NUMBER":
        value = position + 1
    elif f in ("RANK", "DENSE_RANK"):
        ties = pl.struct([c for c, _ in spec.order_by]) if len(spec.order_by) > 1 else pl.col(spec.order_by[0][0])
        changed = (ties != ties.shift(1)).fill_null(True) | (position == 0)
        if f == "DENSE_RANK":
            value = changed.cast(pl.Int64).cum_sum()
        else:
            value = pl.when(changed).then(position + 1).otherwise(None).forward_fill()
    elif f == "LAG":
        value = pl.col(ARG).shift(spec.call.offset)
    elif f == "LEAD":
        value = pl.col(ARG).shift(-spec.call.offset)
    else:
        value = _framed(f, spec.frame)
    if part:
        value = value.over(part)
    return ordered.select([*key, value.alias(name)])


def _framed(function: str, frame: Frame) -> pl.Expr:
    """``function`` of ``v`` over the rows frame [i - preceding, i + following] of each row i of one (ordered)
    partition, clipped to the partition. Nulls are skipped; a frame without values gives null (COUNT: 0).

    SUM / AVG / COUNT use prefix sums (one pass whatever the frame); MIN / MAX use running and suffix extremes,
    and a rolling extreme for frames bounded on both sides.
    """
    v = pl.col(ARG)
    p, q = frame.preceding, frame.following
    i = pl.int_range(pl.len(), dtype=pl.Int64)
    last = pl.len().cast(pl.Int64) - 1
    hi = i * 0 + last if q is None else pl.min_horizontal(i + q, last)  # per row (gather needs a column)
    lo = None if p is None else i - p  # first row of the frame (may be before the partition)
    if function in ("SUM", "AVG", "COUNT"):
        count = _span(v.is_not_null().cast(pl.Int64).cum_sum(), hi, lo)
        if function == "COUNT":
            return count
        total = _span(v.fill_null(0).cum_sum(), hi, lo)
        return pl.when(count > 0).then(total if function == "SUM" else total / count).otherwise(None)
    # cum_min / cum_max leave nulls in place: carry the extreme so far over them
    running = (v.cum_min() if function == "MIN" else v.cum_max()).forward_fill()
    backwards = v.reverse()
    suffix = (backwards.cum_min() if function == "MIN" else backwards.cum_max()).forward_fill().reverse()
    if lo is None:  # from the start of the partition
        return running.gather(hi)
    start = pl.max_horizontal(lo, 0)
    if q is None:  # to the end of the partition
        return suffix.gather(start)
    size = p + q + 1  # type: ignore[operator]
    rolled = v.rolling_min(size, min_samples=1) if function == "MIN" else v.rolling_max(size, min_samples=1)
    return pl.when(i + q <= last).then(rolled.gather(hi)).otherwise(suffix.gather(start))


def _span(prefix: pl.Expr, hi: pl.Expr, lo: pl.Expr | None) -> pl.Expr:
    """prefix[hi] - prefix[lo - 1]: the total of rows lo..hi from a prefix sum (lo None or < 1: from row 0)."""
    upper = prefix.gather(hi)
    if lo is None:
        return upper
    return upper - pl.when(lo >= 1).then(prefix.gather(pl.max_horizontal(lo - 1, 0))).otherwise(0)


__all__ = [
    "AGGREGATES",
    "KINDS",
    "Call",
    "ComputedColumn",
    "DependencyConflict",
    "Frame",
    "InvalidComputedColumn",
    "Stats",
    "WindowSpec",
    "attach_groups",
    "group_by",
    "merge_partials",
    "parse_call",
    "partial_aggregate",
    "window_spec",
    "window_values",
]


# -- defining a column ---------------------------------------------------------------------------------------------
def define(
    schema: TableSchema,
    name: Any,
    column_type: Any,
    expression: Any,
    dependencies: Any = None,
    parameters: Any = None,
    cache_results: Any = True,
    created_at: str = "",
) -> ComputedColumn:
    """Validate a new computed column against ``schema``; raises a 4xx error naming the problem."""
    from engine.expressions import compile_expression
    from engine.udfs import functions

    check_name(name, "name")
    if any(c.lower() == name.lower() for c in (*schema.readable, *schema.key)):
        raise ColumnExists(name)
    if column_type not in KINDS:
        raise InvalidComputedColumn(f"column_type must be one of {', '.join(KINDS)}", field="column_type")
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidComputedColumn("expression must be a non-empty string", field="expression")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise InvalidComputedColumn("parameters must be an object", field="parameters")
    if parameters.get("on_error", "null") not in ("null", "abort"):
        raise InvalidComputedColumn('parameters.on_error must be "null" or "abort"', field="parameters.on_error")
    if not isinstance(cache_results, bool):
        raise InvalidComputedColumn("cache_results must be true or false", field="cache_results")
    _no_cycle(name, expression)

    def compiled(text: str) -> tuple[str, frozenset[str]]:
        c = compile_expression(text, schema, field="expression", functions=functions(schema.udfs))
        _row_level(schema, c.columns, "expression")
        return c.type, c.columns

    if column_type == "udf":
        _udf_call(schema, expression)
    if column_type in ("expression", "udf"):
        type_, deps = compiled(expression)
    else:
        call = parse_call(expression, column_type)
        arg_type, deps = compiled(call.arg) if call.arg is not None else ("int", frozenset())
        if column_type == "aggregate":
            groups = group_by(parameters)
            for g in groups:
                schema.column(g, "parameters.group_by")
            _row_level(schema, groups, "parameters.group_by")
            deps = deps | set(groups)
        else:
            spec = window_spec(call, parameters)
            for c in (*spec.partition_by, *(o for o, _ in spec.order_by)):
                schema.column(c, "parameters")
            _row_level(schema, [*spec.partition_by, *(o for o, _ in spec.order_by)], "parameters")
            deps = deps | set(spec.partition_by) | {o for o, _ in spec.order_by}
        type_ = _result_type(call, arg_type)
    if dependencies is not None:
        if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
            raise InvalidComputedColumn("dependencies must be a list of column names", field="dependencies")
        if set(dependencies) != set(deps):
            raise InvalidComputedColumn(
                f"dependencies {sorted(dependencies)} do not match the columns the expression reads: {sorted(deps)}",
                field="dependencies",
            )
    return ComputedColumn(
        name,
        column_type,
        expression,
        tuple(sorted(deps)),
        orjson.dumps(parameters, option=orjson.OPT_SORT_KEYS).decode(),
        cache_results,
        type_,
        created_at,
    )


def _udf_call(schema: TableSchema, expression: str) -> None:
    """A ``udf`` column is one call of one of the table's UDFs (its arguments are expressions)."""
    try:
        node = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        return  # compiling reports it, with the position
    names = [u.name for u in schema.udfs]
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names):
        known = f"the table's UDFs are {', '.join(names)}" if names else "the table has no UDFs yet"
        raise InvalidComputedColumn(
            f"expression: a udf column is a call of a registered UDF, e.g. calculate_discount(price, 0.2); {known}",
            field="expression",
        )


def _no_cycle(name: str, expression: str) -> None:
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", re.sub(r"(['\"]).*?\1", "", expression)))
    if name in names:
        raise InvalidComputedColumn(f"cycle: column '{name}' depends on itself", field="expression")


def _row_level(schema: TableSchema, columns: Any, loc: str) -> None:
    """Aggregate and window values are attached to rows after the shards' work: nothing else can read them."""
    for c in columns:
        cc = schema.computed_column(c)
        if cc is not None and cc.whole_table:
            raise InvalidComputedColumn(
                f"{loc}: '{c}' is an {cc.column_type} column; computed columns can read stored columns and "
                "expression columns, not aggregate or window columns",
                field=loc,
            )


def _result_type(call: Call, arg_type: str) -> str:
    f = call.function
    if f in ("COUNT", "COUNT_DISTINCT", *RANKING):
        return "int"
    if f == "AVG":
        if arg_type not in ("int", "float"):
            raise InvalidComputedColumn(f"AVG needs a number, not {arg_type}", field="expression")
        return "float"
    if f == "SUM" and arg_type not in ("int", "float"):
        raise InvalidComputedColumn(f"SUM needs a number, not {arg_type}", field="expression")
    return arg_type


def dependents(schema: TableSchema, name: str) -> list[str]:
    """The computed columns that read ``name``."""
    return [c.name for c in schema.computed if name in c.dependencies]


class ColumnExists(Conflict):
    code = "column_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"column '{name}' already exists", column=name)
