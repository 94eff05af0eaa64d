"""What the format modules share: option checking, re-batching to ``batch_size`` rows, the schema a streaming reader
keeps, formula escaping and the text form of values a format has no type for.

Private to ``plugins.formats``; the format modules stay about their own library.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import FormatError, SourceError
from engine.model.batches import rebatch as rebatch  # the format modules cut batches with it

# Cells that a spreadsheet would run as a formula (OWASP's list: = + - @, and tab and carriage return, which some
# spreadsheets strip before looking at the first character).
_FORMULA_START = r"^([=+\-@\t\r])"


# -- options ------------------------------------------------------------------------------------------------------
class Options:
    """The options of one read or write, checked up front: an unknown option is an error (a typo would otherwise
    be ignored silently), and each getter names the option whose value is wrong."""

    def __init__(self, fmt: str, options: Mapping[str, Any] | None, known: Sequence[str]) -> None:
        self.fmt = fmt
        self.values = dict(options or {})
        unknown = sorted(set(self.values) - set(known))
        if unknown:
            raise FormatError(fmt, unknown[0], f"is not an option of this format (options: {', '.join(known)})")

    def fail(self, name: str, problem: str) -> FormatError:
        return FormatError(self.fmt, name, problem)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.values.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false, not {value!r}")
        return value

    def char(self, name: str, default: str | None, *, nullable: bool = False) -> str | None:
        value = self.values.get(name, default)
        if value is None and nullable:
            return None
        if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
            raise self.fail(name, f"must be one character (not a line break), not {value!r}")
        return value

    def text(self, name: str, default: str) -> str:
        value = self.values.get(name, default)
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, not {value!r}")
        return value

    def choice(self, name: str, default: str, choices: Sequence[str]) -> str:
        value = self.values.get(name, default)
        if value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}, not {value!r}")
        return str(value)

    def strings(self, name: str, default: Sequence[str]) -> list[str]:
        value = self.values.get(name, default)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, f"must be a list of strings, not {value!r}")
        return list(value)

    def positive(self, name: str, default: int) -> int:
        value = self.values.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self.fail(name, f"must be a positive integer, not {value!r}")
        return value

    def encoding(self, name: str = "encoding") -> str:
        """The codec's canonical name (``"utf-8"`` for ``"UTF8"``, ``"utf-8-sig"``...)."""
        value = self.text(name, "utf-8")
        try:
            return codecs.lookup(value).name
        except LookupError:
            raise self.fail(name, f"names no known text encoding: {value!r}") from None

    def schema(self, name: str = "schema") -> pa.Schema | None:
        value = self.values.get(name)
        if value is not None and not isinstance(value, pa.Schema):
            raise self.fail(name, f"must be a pyarrow.Schema, not {type(value).__name__}")
        return value


def check_batch_size(fmt: str, batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise FormatError(fmt, "batch_size", f"must be a positive integer, not {batch_size!r}")


# -- batches ------------------------------------------------------------------------------------------------------
def first_failing(count: int, fails: Callable[[int], bool]) -> int:
    """The smallest ``k`` in 1..count with ``fails(k)`` (a prefix of ``k`` items fails), for a failure that stays
    once it appears; ``count`` if none does. Error paths only: finds a bad record in log2(count) parses."""
    lo, hi = 1, count
    while lo < hi:
        mid = (lo + hi) // 2
        if fails(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


class GrowingSchema:
    """The schema of a reader that infers types batch by batch (JSON, JSONL): set by the first batch (or by
    ``options["schema"]``, whose types never change), and it only ever grows. A later batch may give an all-null
    column its type and add columns (at the end: earlier batches lacked them); a column it lacks is null in it; a
    value of another type is cast safely (an int into a float column) or is a SourceError naming its record.
    """

    def __init__(self, fmt: str, fixed: pa.Schema | None) -> None:
        self.fmt = fmt
        self.fixed = set(fixed.names) if fixed is not None else set()
        self.schema: pa.Schema | None = fixed

    def fit(self, batch: pa.RecordBatch, first_record: int, unit: str) -> pa.RecordBatch:
        """``batch`` in the schema so far; its first row is record (or line: ``unit``) ``first_record``."""
        if self.schema is None:
            self.schema = batch.schema
            return batch
        names = set(self.schema.names)
        fields = [*self.schema, *(f for f in batch.schema if f.name not in names)]
        columns = []
        for i, field in enumerate(fields):
            at = batch.schema.get_field_index(field.name)
            if at < 0:
                columns.append(pa.nulls(batch.num_rows, field.type))
                continue
            column = batch.column(at)
            if field.type != column.type:
                if pa.types.is_null(field.type) and field.name not in self.fixed:
                    fields[i] = field.with_type(column.type)
                else:
                    column = self._cast(column, field, first_record, unit)
            columns.append(column)
        self.schema = pa.schema(fields)
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)

    def _cast(self, column: pa.Array, field: pa.Field, first_record: int, unit: str) -> pa.Array:
        try:
            return column.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
        for i, value in enumerate(column):
            try:
                pa.array([value.as_py()], column.type).cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                where = {unit: first_record + i}
                raise SourceError(
                    self.fmt,
                    f"'{field.name}' is {value.as_py()!r}, which is not of the column's type {field.type} (inferred "
                    "from the records before; pass options.schema to fix the types)",
                    column=field.name,
                    **where,
                ) from None
        raise SourceError(self.fmt, f"'{field.name}' does not fit the column's type {field.type}", column=field.name)


# -- values for formats without types ------------------------------------------------------------------------------
def escape_formulas(array: pa.Array) -> pa.Array:
    """Text cells that start like a formula, prefixed with ``'`` (the spreadsheet shows them as text)."""
    return pc.replace_substring_regex(array, pattern=_FORMULA_START, replacement=r"'\1", max_replacements=1)


def is_text(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype)


def is_nested(dtype: pa.DataType) -> bool:
    return pa.types.is_nested(dtype)


def as_json_text(array: pa.Array) -> pa.Array:
    """Nested values (lists, structs, maps) as JSON text, for the formats whose cells hold scalars only."""
    return pa.array([None if v is None else orjson.dumps(v).decode() for v in array.to_pylist()], pa.string())


def flat_batch(batch: pa.RecordBatch, escape: bool) -> pa.RecordBatch:
    """``batch`` with dictionaries decoded, nested values as JSON text and text escaped against formulas."""
    columns = []
    for column in batch.columns:
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        if is_nested(column.type):
            column = as_json_text(column)
        if escape and is_text(column.type):
            column = escape_formulas(column)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
