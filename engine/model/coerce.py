"""Turn user values (JSON-decoded rows, Python values, Arrow tables) into Arrow data of a table's schema.

Every check names the offending value's location (``rows.3.age``); nothing is coerced silently in a way that
loses information (``2.5`` never becomes ``2`` in an int column, ``true`` is not an int).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import ColumnNotFound, FieldError, InvalidRequest, KeyTooLong, SchemaMismatch
from engine.model.schema import ROW_ID, Column, TableSchema
from engine.model.types import TIMESTAMP, arrow_type

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
MAX_JSON_DEPTH = 64
MAX_ERRORS = 50
# The longest string key, in UTF-8 bytes: keys are hashed to place rows and kept in memory by every shard's key
# index, so a longer one is refused (``KeyTooLong``, 400) before anything hashes it (docs/API.md).
MAX_KEY_BYTES = 1024

Loc = tuple[str | int, ...]
_Convert = Callable[[Any], Any]  # returns the value to store, or raises ValueError with a message


class _Bad(ValueError):
    pass


def _int(v: Any) -> int:
    if type(v) is float and v.is_integer():
        v = int(v)
    if type(v) is not int:
        raise _Bad(f"expected int, got {_kind(v)}")
    if not INT_MIN <= v <= INT_MAX:
        raise _Bad(f"integer {v} is out of the 64-bit range")
    return v


def _float(v: Any) -> float:
    if type(v) is int:
        return float(v)
    if type(v) is not float:
        raise _Bad(f"expected float, got {_kind(v)}")
    if not math.isfinite(v):
        raise _Bad(f"{v} is not a finite number")
    return v


def _str(v: Any) -> str:
    if type(v) is not str:
        raise _Bad(f"expected string, got {_kind(v)}")
    return v


def _bool(v: Any) -> bool:
    if type(v) is not bool:
        raise _Bad(f"expected bool, got {_kind(v)}")
    return v


def _json(v: Any) -> str:
    _check_depth(v)
    try:
        return orjson.dumps(v).decode()
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise _Bad(f"value is not JSON-serialisable: {exc}") from None


def _timestamp(v: Any) -> dt.datetime:
    if isinstance(v, str):
        try:
            v = dt.datetime.fromisoformat(v)
        except ValueError:
            raise _Bad(f"expected an ISO-8601 timestamp, got {v!r}") from None
    elif type(v) is dt.date:
        v = dt.datetime(v.year, v.month, v.day)
    if not isinstance(v, dt.datetime):
        raise _Bad(f"expected timestamp, got {_kind(v)}")
    try:
        return v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v.astimezone(dt.UTC)
    except OverflowError:
        raise _Bad(f"timestamp {v.isoformat()} is outside years 1-9999 in UTC") from None


def _date(v: Any) -> dt.date:
    if isinstance(v, str):
        try:
            return dt.date.fromisoformat(v)
        except ValueError:
            raise _Bad(f"expected an ISO-8601 date (YYYY-MM-DD), got {v!r}") from None
    if isinstance(v, dt.datetime) or not isinstance(v, dt.date):
        raise _Bad(f"expected date, got {_kind(v)}")
    return v


_CONVERT: dict[str, _Convert] = {
    "int": _int,
    "float": _float,
    "string": _str,
    "bool": _bool,
    "json": _json,
    "timestamp": _timestamp,
    "date": _date,
    "image": _str,
    "video": _str,
    "audio": _str,
    "document": _str,
}


def _at(field: str, column: str) -> Callable[[int], Loc]:
    """Where row ``i``'s value of ``column`` sits in the request."""
    return lambda i: (field, i, column)


# Python's datetime covers years 1..9999: Arrow values outside it could be stored but never read back.
_RANGE = {
    "timestamp": (
        pa.scalar(dt.datetime(1, 1, 1, tzinfo=dt.UTC), TIMESTAMP),
        pa.scalar(dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC), TIMESTAMP),
    ),
    "date": (pa.scalar(dt.date(1, 1, 1)), pa.scalar(dt.date(9999, 12, 31))),
}


def _out_of_range(array: pa.Array | pa.ChunkedArray, column_type: str) -> pa.Array | None:
    """A mask of the values outside the representable range, or None when all are inside."""
    bounds = _RANGE.get(column_type)
    if bounds is None or len(array) == array.null_count:
        return None
    bad = pc.fill_null(pc.or_(pc.less(array, bounds[0]), pc.greater(array, bounds[1])), False)
    return bad if pc.any(bad).as_py() else None


def _kind(v: Any) -> str:
    names = {bool: "bool", int: "int", float: "float", str: "string", list: "array", dict: "object"}
    return names.get(type(v), type(v).__name__)


def _check_depth(v: Any) -> None:
    stack = [(v, 1)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, (list, dict)):
            if d > MAX_JSON_DEPTH:
                raise _Bad(f"JSON value is nested deeper than {MAX_JSON_DEPTH} levels")
            stack.extend((y, d + 1) for y in (x.values() if isinstance(x, dict) else x))


_FAST_TYPES: dict[str, frozenset[type]] = {
    "int": frozenset({int}),
    "float": frozenset({float, int}),
    "string": frozenset({str}),
    "bool": frozenset({bool}),
    "timestamp": frozenset({str}),
    "date": frozenset({str}),
    "image": frozenset({str}),
    "video": frozenset({str}),
    "audio": frozenset({str}),
    "document": frozenset({str}),
}
_NONE = type(None)


def _fast_array(column: Column, values: Sequence[Any]) -> pa.Array | None:
    """The common case in C: every value already has the right Python type. None means 'check one by one'."""
    allowed = _FAST_TYPES.get(column.type)
    if allowed is None:
        return None
    seen = set(map(type, values))
    if _NONE in seen:
        if not column.nullable:
            return None
        seen.discard(_NONE)
    if not seen <= allowed:
        return None
    target = arrow_type(column.type)
    try:
        if column.type in ("timestamp", "date"):
            array = pc.cast(pa.array(values, pa.string()), target)
            return None if _out_of_range(array, column.type) is not None else array
        array = pa.array(values, target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None
    if column.type == "float" and pc.all(pc.is_finite(array)).as_py() not in (True, None):
        return None
    return array


def column_array(
    column: Column, values: Sequence[Any], loc: Callable[[int], Loc], errors: list[FieldError]
) -> pa.Array:
    """Convert one column's values; appends a FieldError per bad value (up to MAX_ERRORS)."""
    fast = _fast_array(column, values)
    if fast is not None:
        return fast
    convert = _CONVERT[column.type]
    out: list[Any] = []
    for i, v in enumerate(values):
        if v is None:
            if not column.nullable:
                errors.append(FieldError(loc(i), f"column '{column.name}' may not be null", "null_not_allowed"))
            out.append(None)
            continue
        try:
            out.append(convert(v))
        except _Bad as exc:
            if len(errors) < MAX_ERRORS:
                errors.append(FieldError(loc(i), str(exc), "type_error"))
            out.append(None)
    return pa.array(out, arrow_type(column.type))


def rows_to_table(
    rows: Any, schema: TableSchema, *, field: str = "rows", require_all: bool = False, allow_row_id: bool = False
) -> pa.Table:
    """Validate JSON-like rows against ``schema`` and return them as an Arrow table in storage order.

    Missing columns are null; ``require_all`` makes every non-null column mandatory even when absent.
    """
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None) if isinstance(rows, list) else None
        where = f"{field}[{bad}]" if bad is not None else field
        raise SchemaMismatch(
            [
                FieldError(
                    (field,) if bad is None else (field, bad),
                    f"{where} must be an object of column: value",
                    "type_error",
                )
            ]
        )
    known = set(schema.names) | ({ROW_ID} if allow_row_id and not schema.primary_key else set())
    extra = set().union(*rows) - known if rows else set()
    if extra:
        name = sorted(extra)[0]
        row = next(i for i, r in enumerate(rows) if name in r)
        if name == ROW_ID:
            raise InvalidRequest(
                f"{field}[{row}]: '{ROW_ID}' is assigned by the engine", field=f"{field}[{row}].{name}"
            )
        if schema.computed_column(name) is not None:
            raise InvalidRequest(
                f"{field}[{row}]: '{name}' is a computed column; it cannot be written", field=f"{field}[{row}].{name}"
            )
        raise ColumnNotFound(schema.table, name, f"{field}[{row}]")
    errors: list[FieldError] = []
    arrays, names = [], []
    for column in schema.columns:
        values = [r.get(column.name) for r in rows]
        arrays.append(column_array(column, values, _at(field, column.name), errors))
        names.append(column.name)
    if not schema.primary_key:
        ids = [r.get(ROW_ID) for r in rows] if allow_row_id else [None] * len(rows)
        arrays.append(column_array(Column(ROW_ID, "int"), ids, lambda i: (field, i, ROW_ID), errors))
        names.append(ROW_ID)
    if errors:
        raise SchemaMismatch(errors)
    table = pa.Table.from_arrays(arrays, names=names)
    check_key_lengths(table, schema, field)
    return table


def coerce_value(column: Column, value: Any, loc: Loc) -> pa.Scalar:
    """One value for a ``where`` clause or a row id, as an Arrow scalar of the column's type."""
    errors: list[FieldError] = []
    array = column_array(Column(column.name, column.type, nullable=False), [value], lambda i: loc, errors)
    if errors:
        raise SchemaMismatch(errors)
    return array[0]


def conform_table(table: pa.Table, schema: TableSchema) -> pa.Table:
    """Check and cast an Arrow table supplied by a Python caller; zero-copy where the types already match."""
    for name in table.column_names:
        if schema.computed_column(name) is not None:
            raise InvalidRequest(f"'{name}' is a computed column; it cannot be written", field=name)
        if not schema.has(name) or name == ROW_ID:
            raise ColumnNotFound(schema.table, name, "the inserted table")
    errors: list[FieldError] = []
    arrays = []
    for column in schema.columns:
        target = arrow_type(column.type)
        if column.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, target))
            if not column.nullable and table.num_rows:
                errors.append(
                    FieldError(("rows", 0, column.name), f"column '{column.name}' may not be null", "null_not_allowed")
                )
            continue
        data = table[column.name]
        if column.type == "json" or (column.type == "timestamp" and pa.types.is_string(data.type)):
            arrays.append(column_array(column, data.to_pylist(), _at("rows", column.name), errors))
            continue
        if data.type != target:
            try:
                data = pc.cast(data, target, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                errors.append(
                    FieldError(("rows", column.name), f"cannot store {data.type} as {column.type}: {exc}", "type_error")
                )
                arrays.append(pa.nulls(table.num_rows, target))
                continue
        bad_range = _out_of_range(data, column.type)
        if bad_range is not None:
            row = pc.index(bad_range, True).as_py()
            errors.append(
                FieldError(("rows", row, column.name), f"{column.type} is outside years 1-9999", "type_error")
            )
        if column.type == "float" and data.null_count < len(data):
            bad = pc.invert(pc.is_finite(data))
            if pc.any(bad).as_py():
                row = pc.index(bad, True).as_py()
                errors.append(FieldError(("rows", row, column.name), "value is not a finite number", "type_error"))
        if not column.nullable and data.null_count:
            row = pc.index(pc.is_null(data), True).as_py()
            errors.append(
                FieldError(("rows", row, column.name), f"column '{column.name}' may not be null", "null_not_allowed")
            )
        arrays.append(data)
    if errors:
        raise SchemaMismatch(errors)
    names = list(schema.names)
    if not schema.primary_key:
        arrays.append(pa.nulls(table.num_rows, pa.int64()))
        names.append(ROW_ID)
    conformed = pa.Table.from_arrays(
        [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays], names=names
    )
    check_key_lengths(conformed, schema)
    return conformed


def check_key_lengths(table: pa.Table, schema: TableSchema, field: str = "rows") -> None:
    """Refuse rows whose string key is longer than ``MAX_KEY_BYTES``; the error names the first such row."""
    for name in schema.primary_key:
        if schema.column(name).type != "string":
            continue
        values = table[name]
        if values.nbytes <= MAX_KEY_BYTES:  # offsets and all: no value can be longer
            continue
        lengths = pc.binary_length(values)
        too_long = pc.greater(lengths, MAX_KEY_BYTES)
        if pc.any(too_long).as_py():
            row = pc.index(too_long, True).as_py()
            raise KeyTooLong(f"{field}[{row}].{name}", name, row, lengths[row].as_py(), MAX_KEY_BYTES)


def check_key_value(column: Column, value: Any, field: str, row: int | None = None) -> None:
    """Refuse one string key value (a row id, a value a filter pins the key to) longer than ``MAX_KEY_BYTES``."""
    if column.type != "string" or not isinstance(value, str) or len(value) * 4 <= MAX_KEY_BYTES:
        return  # (at most 4 UTF-8 bytes per character: short strings need no encoding)
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise KeyTooLong(field, column.name, row, size, MAX_KEY_BYTES)


def table_to_rows(table: pa.Table, schema: TableSchema) -> list[dict[str, Any]]:
    """Arrow rows as dicts ready for orjson: JSON cells are passed through as pre-encoded fragments."""
    rows = table.to_pylist()
    json_cols = [c for c in schema.json_columns if c in table.column_names]
    if json_cols:
        for r in rows:
            for c in json_cols:
                if r[c] is not None:
                    r[c] = orjson.Fragment(r[c])
    return rows


def decode_json_cells(rows: list[dict[str, Any]], schema: TableSchema) -> list[dict[str, Any]]:
    """For Python callers: JSON cells as Python values rather than text."""
    json_cols = list(schema.json_columns)
    for r in rows:
        for c in json_cols:
            if r.get(c) is not None:
                r[c] = orjson.loads(r[c])
    return rows


__all__ = [
    "MAX_KEY_BYTES",
    "TIMESTAMP",
    "check_key_lengths",
    "check_key_value",
    "coerce_value",
    "column_array",
    "conform_table",
    "rows_to_table",
    "table_to_rows",
]
