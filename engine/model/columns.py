"""Computed columns: their definitions, validation, and the whole-table kinds (aggregate, window).

Four kinds (``column_type``):

- ``expression``: a Python-syntax expression over the row (``engine.expr.compiler``). Stored ones
  (``cache_results``) are real columns of the shards' Lance datasets, computed by the shard for every row a
  write adds or changes; the others are computed by the shard when read.
- ``udf``: a call of one of the table's user-defined functions (``engine.expr.udfs``), with expressions as arguments;
  stored like an expression column (``cache_results``) or computed when read. Expression columns may call UDFs
  too.
- ``aggregate``: ``SUM AVG MIN MAX COUNT COUNT_DISTINCT`` of a column or expression (``COUNT(*)``), optionally
  ``parameters.group_by``; each row holds its group's value. Shards compute partial aggregates of their rows,
  merged once (``engine.expr.aggregates``).
- ``window``: ``ROW_NUMBER RANK DENSE_RANK LAG LEAD`` and ``SUM AVG MIN MAX COUNT`` over a frame, with
  ``partition_by``, ``order_by`` and ``frame`` (rows preceding / following, or ``"unbounded"``). A partition may
  span shards, so the inputs are gathered and computed at once (``engine.expr.aggregates.window_values``).

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
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from engine.errors import InvalidComputedColumn
from engine.model.names import check_name
from engine.model.types import OnError

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
