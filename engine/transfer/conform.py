"""An import batch in a table's schema: source columns mapped to table columns, values coerced as inserts coerce
them (``engine.model.coerce``: nothing lossy, ``2.5`` is not an int, ``true`` is not an int), validation rules
checked (``rules``), every bad cell found on Arrow arrays at once.

Text sources (CSV) arrive as strings and are parsed: integers and decimals by their written form, booleans
``true``/``false``/``1``/``0`` (any case), ISO-8601 dates and timestamps (a timestamp without a zone is UTC, a
date alone is its midnight), JSON text for ``json`` columns. Typed sources (Parquet, JSON, JSONL, Excel, Lance)
are cast safely; text in a typed column is parsed like CSV text.

The normal path is vectorised: regular expressions pick the well-formed cells, one cast converts them. Python
looks at single values only on error paths (messages for bad cells, at most ``MAX_MESSAGES`` a batch; a value
that is well-formed but out of range) and for ``json`` columns, whose values are parsed and re-encoded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import ColumnNotFound, InvalidRequest
from engine.model.coerce import MAX_KEY_BYTES
from engine.model.schema import ROW_ID, Column, TableSchema
from engine.model.types import arrow_type, json_fields
from engine.transfer.rules import Rule, check_rule

MAX_MESSAGES = 1_000  # bad cells described per batch (all are counted)

_INT = r"^[+-]?\d{1,19}$"
_FLOAT = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)?$"
_ZONE = r"(Z|z|[+-]\d{2}(:?\d{2})?)$"
_TRUE, _FALSE = ("true", "1"), ("false", "0")


@dataclass(frozen=True)
class ImportPlan:
    columns: dict[str, str]  # source column -> table column
    ignored: tuple[str, ...]  # source columns that feed no table column


def plan_columns(source_names: Sequence[str], schema: TableSchema, mapping: Mapping[str, str] | None) -> ImportPlan:
    """Which source column feeds which table column: ``mapping``'s, then the source columns named like one."""
    mapping = dict(mapping or {})
    columns: dict[str, str] = {}
    fed: dict[str, str] = {}
    for source, target in mapping.items():
        where = f"mapping.{source}"
        if schema.computed_column(target) is not None:
            raise InvalidRequest(f"{where}: '{target}' is a computed column; it cannot be imported", field=where)
        if target == ROW_ID or not schema.has(target):
            raise ColumnNotFound(schema.table, target, where)
        if source not in source_names:
            raise InvalidRequest(
                f"{where}: the source has no column '{source}' (its columns: {', '.join(source_names)})", field=where
            )
        if target in fed:
            raise InvalidRequest(f"{where}: '{target}' is fed by '{fed[target]}' already", field=where)
        columns[source], fed[target] = target, source
    for name in source_names:
        if name in columns or name in fed or name == ROW_ID or name in mapping:
            continue
        if schema.has(name) and schema.computed_column(name) is None:
            columns[name], fed[name] = name, name
    return ImportPlan(columns, tuple(n for n in source_names if n not in columns))


@dataclass
class Conformed:
    table: pa.Table  # storage order (``_row_id`` null for keyless tables); bad cells null
    bad: list[tuple[int, str, str]]  # (row in the batch, column, message), at most MAX_MESSAGES, rows ascending
    bad_cells: int  # every bad cell
    bad_rows: pa.Array  # bool per row: some cell is bad
    fatal_rows: pa.Array  # bool per row: a bad cell that cannot be null (a key, a non-nullable column)


def conform(
    batch: pa.RecordBatch,
    schema: TableSchema,
    plan: ImportPlan,
    rules: Mapping[str, Rule],
    text_source: bool,
    json_text: bool = False,
) -> Conformed:
    """``batch`` in ``schema``'s storage order, with every bad cell found. ``text_source``: every cell is text to
    parse (CSV); ``json_text``: text in a ``json`` column is JSON text (formats without JSON values of their own:
    CSV, Excel), as it is in a field marked so (``engine.model.types.json_fields``: a Parquet or Lance export)."""
    marked = set(json_fields(batch.schema))
    n = batch.num_rows
    by_target = {t: s for s, t in plan.columns.items()}
    arrays: list[pa.Array] = []
    problems: list[tuple[str, pa.Array, pa.Array | None, str]] = []  # column, bad mask, source values, why
    no = pa.array([False] * n, pa.bool_())
    bad_rows, fatal_rows = no, no
    for column in schema.columns:
        source = by_target.get(column.name)
        raw = batch.column(source) if source is not None else pa.nulls(n, arrow_type(column.type))
        if isinstance(raw, pa.ChunkedArray):
            raw = raw.combine_chunks()
        values, bad, why = _convert(raw, column, text_source, json_text or source in marked)
        found = [(bad, why)] if bad is not None else []
        if not column.nullable or column.name in schema.key:
            missing = pc.and_not(values.is_null(), bad) if bad is not None else values.is_null()
            found.append((missing, "may not be null"))
        if column.name in schema.key and column.type == "string":
            found.append((pc.greater(pc.binary_length(values), MAX_KEY_BYTES), f"is longer than {MAX_KEY_BYTES} bytes"))
        rule = rules.get(column.name)
        if rule is not None:
            found.extend(check_rule(rule, values))
        cell_bad = no
        for mask, reason in found:
            mask = pc.fill_null(mask, False)
            if pc.any(mask).as_py():
                problems.append((column.name, mask, raw, reason))
                cell_bad = pc.or_(cell_bad, mask)
        if cell_bad is not no:
            values = pc.if_else(cell_bad, pa.scalar(None, values.type), values)
            bad_rows = pc.or_(bad_rows, cell_bad)
            if not column.nullable or column.name in schema.key:
                fatal_rows = pc.or_(fatal_rows, cell_bad)
        arrays.append(values)
    names = list(schema.names)
    if not schema.primary_key:
        arrays.append(pa.nulls(n, pa.int64()))
        names.append(ROW_ID)
    table = pa.Table.from_arrays(arrays, names=names)
    bad, count = _messages(problems)
    return Conformed(table, bad, count, bad_rows, fatal_rows)


def resolve(conformed: Conformed, on_error: str, schema: TableSchema) -> tuple[pa.Table, int]:
    """The rows to write and how many were skipped: ``skip`` drops every row with a bad cell; ``default`` keeps
    them with the bad cells null, dropping only the rows whose bad cell cannot be null; ``fail`` writes none of
    the batch's rows if any is bad (the caller stops the import)."""
    table = conformed.table
    if not conformed.bad_cells:
        return table, 0
    if on_error == "fail":
        return table, 0
    drop = conformed.bad_rows if on_error == "skip" else conformed.fatal_rows
    dropped = pc.sum(drop).as_py() or 0
    return (table.filter(pc.invert(drop)) if dropped else table), dropped


# -- conversion ------------------------------------------------------------------------------------------------
def _convert(
    raw: pa.Array, column: Column, text_source: bool, json_text: bool
) -> tuple[pa.Array, pa.Array | None, str]:
    """The values as the column's type, the mask of cells that could not be converted, and why."""
    target = arrow_type(column.type)
    dtype = raw.type
    if pa.types.is_dictionary(dtype):
        raw, dtype = raw.dictionary_decode(), raw.type.value_type
    if pa.types.is_null(dtype):
        return pa.nulls(len(raw), target), None, ""
    if column.type == "json":
        return _json(raw, text_source or json_text)
    if _is_text(dtype):
        text = raw.cast(pa.string())
        if column.type in ("string", "image", "video", "audio", "document"):
            return text, None, ""
        return _parse(text, column)
    if column.type in ("string", "image", "video", "audio", "document"):
        return _refused(raw, target, f"expected {column.type} text, got {dtype}")
    if column.type == "bool":
        return (raw, None, "") if pa.types.is_boolean(dtype) else _refused(raw, target, f"expected bool, got {dtype}")
    if pa.types.is_boolean(dtype):
        return _refused(raw, target, f"expected {column.type}, got bool")
    if column.type == "int" and pa.types.is_floating(dtype):
        whole = pc.equal(pc.floor(raw), raw)
        bad = pc.and_not(raw.is_valid(), pc.fill_null(whole, False))
        bad = pc.or_(bad, pc.or_(pc.less(raw, -(2.0**63)), pc.greater_equal(raw, 2.0**63)))
        kept = pc.if_else(bad, pa.scalar(None, dtype), raw)
        return kept.cast(target, safe=False), bad, "is not a whole number in the 64-bit range"
    if column.type == "float" and (pa.types.is_integer(dtype) or pa.types.is_floating(dtype)):
        values = raw.cast(target)
        return values, pc.invert(pc.fill_null(pc.is_finite(values), True)), "is not a finite number"
    if column.type == "date" and pa.types.is_timestamp(dtype):
        days = raw.cast(pa.date32(), safe=False)
        midnight = pc.equal(
            days.cast(pa.timestamp("us")),
            raw.cast(pa.timestamp("us", tz=None), safe=False)
            if dtype.tz is None
            else pc.local_timestamp(raw).cast(pa.timestamp("us")),
        )
        return days, pc.invert(pc.fill_null(midnight, True)), "is a timestamp with a time of day, not a date"
    if column.type == "timestamp" and pa.types.is_timestamp(dtype) and dtype.tz is None:
        raw = pc.assume_timezone(raw, "UTC")
    return _cast(raw, target, f"cannot store {dtype} as {column.type}")


def _parse(text: pa.Array, column: Column) -> tuple[pa.Array, pa.Array | None, str]:
    """Text cells as the column's type; a cell that is not a well-formed value of it is bad."""
    target = arrow_type(column.type)
    text = pc.utf8_trim_whitespace(text)
    if column.type == "bool":
        lowered = pc.utf8_lower(text)
        good = pc.is_in(lowered, value_set=pa.array([*_TRUE, *_FALSE]))
        values = pc.if_else(good, pc.is_in(lowered, value_set=pa.array(_TRUE)), pa.scalar(None, pa.bool_()))
        return values, pc.and_not(text.is_valid(), good), "is not a boolean (true, false, 1 or 0)"
    if column.type == "timestamp":
        text = pc.replace_substring_regex(text, pattern=r"^(\d{4}-\d{2}-\d{2})$", replacement=r"\1T00:00:00")
        text = pc.replace_substring_regex(text, pattern=r"^(\d{4}-\d{2}-\d{2}) ", replacement=r"\1T")
        zoned = pc.match_substring_regex(text, _ZONE)
        text = pc.if_else(zoned, text, pc.binary_join_element_wise(text, "Z", ""))
    pattern, what = {
        "int": (_INT, "an integer"),
        "float": (_FLOAT, "a finite number"),
        "date": (_DATE, "an ISO-8601 date (YYYY-MM-DD)"),
        "timestamp": (_TIMESTAMP, "an ISO-8601 timestamp"),
    }[column.type]
    formed = pc.fill_null(pc.match_substring_regex(text, pattern), True)
    candidates = pc.if_else(formed, text, pa.scalar(None, pa.string()))
    values, bad, _ = _cast(candidates, target, "")
    malformed = pc.invert(formed)
    return values, (pc.or_(malformed, bad) if bad is not None else malformed), f"is not {what}"


def _cast(raw: pa.Array, target: pa.DataType, why: str) -> tuple[pa.Array, pa.Array | None, str]:
    """``raw`` cast safely; on failure each cell alone (the error path), the ones that fail bad."""
    try:
        return raw.cast(target), None, why
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    out, bad = [], []
    for i in range(len(raw)):
        try:
            out.append(raw.slice(i, 1).cast(target)[0].as_py())
            bad.append(False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            out.append(None)
            bad.append(True)
    return pa.array(out, target), pa.array(bad, pa.bool_()), why or f"does not fit {target}"


def _refused(raw: pa.Array, target: pa.DataType, why: str) -> tuple[pa.Array, pa.Array | None, str]:
    return pa.nulls(len(raw), target), raw.is_valid(), why


def _json(raw: pa.Array, text: bool) -> tuple[pa.Array, pa.Array | None, str]:
    """JSON text (parsed, re-encoded compactly) or typed values (encoded) as the column's JSON text."""
    out: list[str | None] = []
    bad: list[bool] = []
    values = raw.cast(pa.string()).to_pylist() if text and _is_text(raw.type) else raw.to_pylist()
    for v in values:
        if v is None:
            out.append(None)
            bad.append(False)
            continue
        try:
            out.append(orjson.dumps(orjson.loads(v) if text and isinstance(v, str) else v).decode())
            bad.append(False)
        except (orjson.JSONDecodeError, TypeError):
            out.append(None)
            bad.append(True)
    return pa.array(out, pa.string()), pa.array(bad, pa.bool_()), "is not valid JSON"


def _is_text(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype)


# -- messages ----------------------------------------------------------------------------------------------------
def _messages(problems: list[tuple[str, pa.Array, pa.Array | None, str]]) -> tuple[list[tuple[int, str, str]], int]:
    cells: list[tuple[int, str, str]] = []
    count = 0
    for column, mask, source, why in problems:
        rows = pc.indices_nonzero(mask)
        count += len(rows)
        for row in rows.to_pylist()[: MAX_MESSAGES - len(cells)] if len(cells) < MAX_MESSAGES else []:
            value = source[row].as_py() if source is not None else None
            shown = "" if value is None else f"{_short(value)} "
            cells.append((row, column, f"{column}: {shown}{why}"))
    cells.sort(key=lambda c: c[0])
    return cells[:MAX_MESSAGES], count


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["Conformed", "ImportPlan", "conform", "plan_columns", "resolve"]
