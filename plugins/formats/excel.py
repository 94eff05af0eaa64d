"""Excel: read with fastexcel (calamine, Rust, straight to Arrow), written with xlsxwriter (streaming rows).

Reading: fastexcel, like every Excel reader, loads a whole sheet before giving any of it, so memory is bounded by a
cap on the workbook instead: ``max_bytes`` of uncompressed XML (the sum of the zip's entries; the file's size for
a binary ``.xls``), 256 MiB by default, about six million cells. Past it the read is a SourceError before anything
is unpacked (which also stops zip bombs). The sheet's Arrow batch is then cut into ``batch_size`` slices (no copy).
Cells hold values, never formulas (a formula cell gives the value Excel saved with it). Excel has one number type,
so integers come back as float64.

Measured on this machine, a 200,000-row, 5-column sheet (7.5 MB .xlsx): fastexcel 0.83 s to an Arrow batch,
python-calamine 1.9 s (``iter_rows`` and building the columns in Python), so fastexcel it is.

Read options: ``sheet`` (a name, or an index from 0; default 0), ``header`` (true: the first row names the columns).
Write options: ``sheet`` (the name of the first sheet, "Sheet1"; more sheets, past ``max_rows`` rows each, are
named "Sheet1 (2)" ...), ``header`` (true), ``escape_formulas`` (true: text starting with = + - @ gets a ``'``).
xlsxwriter's constant-memory mode writes row by row to a temporary file, about 120,000 cells a second here.

Example::

    for batch in ExcelFormat().read(open("book.xlsx", "rb"), {"sheet": "Orders"}, batch_size=1000): ...
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import fastexcel
import pyarrow as pa
import xlsxwriter
from xlsxwriter.worksheet import Worksheet

from engine.errors import InvalidValue, SourceError
from engine.registry import Format, hookimpl
from plugins.formats._common import Options, check_batch_size, flat_batch

NAME = "excel"
MAX_BYTES = 256 << 20
MAX_ROWS = 1_048_576  # rows of an Excel sheet
MAX_TEXT = 32_767  # characters of an Excel cell
_BAD_SHEET_NAME = re.compile(r"[\[\]:*?/\\]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Cell = Callable[[Worksheet, int, int, Any], None]


class ExcelFormat:
    media_type: str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    extensions: tuple[str, ...] = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
    seekable: bool = True

    def __init__(self, max_bytes: int = MAX_BYTES, max_rows: int = MAX_ROWS) -> None:
        self.max_bytes = max_bytes
        self.max_rows = max_rows

    def read(self, source: BinaryIO, options: Mapping[str, Any], batch_size: int) -> Iterator[pa.RecordBatch]:
        check_batch_size(NAME, batch_size)
        opts = Options(NAME, options, ("sheet", "header"))
        header = opts.boolean("header", True)
        wanted = opts.values.get("sheet", 0)
        if isinstance(wanted, bool) or not isinstance(wanted, int | str):
            raise opts.fail("sheet", f"must be a sheet's name or index, not {wanted!r}")
        reader = _open(source, self.max_bytes)
        names = reader.sheet_names
        if (isinstance(wanted, str) and wanted not in names) or (
            isinstance(wanted, int) and not 0 <= wanted < len(names)
        ):
            shown = ", ".join(f"'{n}'" for n in names)
            raise opts.fail("sheet", f"{wanted!r} is not a sheet of the workbook (its sheets: {shown})")
        try:
            sheet = reader.load_sheet(wanted, header_row=0 if header else None, schema_sample_rows=None)
            batch = sheet.to_arrow()
        except fastexcel.FastExcelError as exc:
            raise SourceError(NAME, f"cannot read sheet {wanted!r}: {_first_line(exc)}") from exc
        # fastexcel marks columns without nulls in its sample as non-nullable; every column of a source may be null
        nullable = pa.schema([f.with_nullable(True) for f in batch.schema])
        return _slices(pa.RecordBatch.from_arrays(batch.columns, schema=nullable), batch_size)

    def write(
        self, batches: Iterable[pa.RecordBatch], schema: pa.Schema, sink: BinaryIO, options: Mapping[str, Any]
    ) -> None:
        opts = Options(NAME, options, ("sheet", "header", "escape_formulas"))
        base = opts.text("sheet", "Sheet1")
        if not base or len(base) > 31 or _BAD_SHEET_NAME.search(base):
            raise opts.fail("sheet", f"must be 1 to 31 characters without []:*?/\\, not {base!r}")
        _Writer(
            sink, schema, base, opts.boolean("header", True), opts.boolean("escape_formulas", True), self.max_rows
        ).write(batches)


def _open(source: BinaryIO, cap: int) -> fastexcel.ExcelReader:
    size = _unpacked_size(source)
    if size > cap:
        raise SourceError(NAME, f"the workbook unpacks to {size} bytes, more than the {cap} an import reads")
    source.seek(0)
    try:
        return fastexcel.read_excel(source.read())
    except fastexcel.FastExcelError as exc:
        raise SourceError(NAME, f"not an Excel workbook: {_first_line(exc)}") from exc


def _unpacked_size(source: BinaryIO) -> int:
    """The XML a .xlsx/.ods holds (its zip entries' sizes, from the zip's directory); a .xls file's own size."""
    source.seek(0)
    try:
        with zipfile.ZipFile(source) as archive:
            return sum(entry.file_size for entry in archive.infolist())
    except zipfile.BadZipFile:
        return source.seek(0, 2)


def _slices(batch: pa.RecordBatch, size: int) -> Iterator[pa.RecordBatch]:
    for start in range(0, batch.num_rows, size):
        yield batch.slice(start, size)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


class _Writer:
    """One workbook, row by row (xlsxwriter's constant memory mode: a row once left is on disk)."""

    def __init__(self, sink: BinaryIO, schema: pa.Schema, base: str, header: bool, escape: bool, max_rows: int):
        self.book = xlsxwriter.Workbook(
            sink,
            {
                "constant_memory": True,
                "strings_to_numbers": False,
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "nan_inf_to_errors": False,
            },
        )
        self.schema, self.base, self.header, self.escape = schema, base, header, escape
        self.rows_per_sheet = max_rows - (1 if header else 0)
        self.cells = [self._cell(f.type) for f in schema]
        self.sheets = 0
        self.sheet: Worksheet | None = None
        self.row = 0  # the next row of the sheet
        self.written = 0  # data rows written, for error messages

    def write(self, batches: Iterable[pa.RecordBatch]) -> None:
        try:
            self._next_sheet()
            for batch in batches:
                self._batch(flat_batch(_naive(batch), self.escape))
        finally:
            self.book.close()

    def _next_sheet(self) -> None:
        self.sheets += 1
        name = self.base if self.sheets == 1 else f"{self.base[:25]} ({self.sheets})"
        self.sheet = self.book.add_worksheet(name)
        self.row = 0
        if self.header:
            for col, field in enumerate(self.schema):
                text = field.name
                self.sheet.write_string(0, col, "'" + text if self.escape and text.startswith(_FORMULA_START) else text)
            self.row = 1

    def _batch(self, batch: pa.RecordBatch) -> None:
        columns = [c.to_pylist() for c in batch.columns]
        cells = self.cells
        for values in zip(*columns, strict=True):
            if self.row - (1 if self.header else 0) >= self.rows_per_sheet:
                self._next_sheet()
            sheet, row = self.sheet, self.row
            assert sheet is not None
            for col, value in enumerate(values):
                if value is not None:
                    cells[col](sheet, row, col, value)
            self.row += 1
            self.written += 1

    def _cell(self, dtype: pa.DataType) -> Cell:
        """How a value of ``dtype`` is written (after ``flat_batch``: nested values are text by then)."""
        if pa.types.is_boolean(dtype):
            return lambda s, r, c, v: s.write_boolean(r, c, v)
        if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
            return _number
        if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype) or pa.types.is_time(dtype):
            shape = (
                "yyyy-mm-dd"
                if pa.types.is_date(dtype)
                else "hh:mm:ss"
                if pa.types.is_time(dtype)
                else ("yyyy-mm-dd hh:mm:ss")
            )
            style = self.book.add_format({"num_format": shape})
            return lambda s, r, c, v: s.write_datetime(r, c, v, style)
        return self._text

    def _text(self, sheet: Worksheet, row: int, col: int, value: Any) -> None:
        text = value if isinstance(value, str) else value.hex() if isinstance(value, bytes) else str(value)
        if len(text) > MAX_TEXT:
            name = self.schema.field(col).name
            raise InvalidValue(
                f"'{name}' of row {self.written + 1} has {len(text)} characters; an Excel cell holds at most {MAX_TEXT}",
                column=name,
                row=self.written + 1,
            )
        sheet.write_string(row, col, text)


def _number(sheet: Worksheet, row: int, col: int, value: Any) -> None:
    number = float(value)
    if math.isfinite(number):  # Excel has no NaN or infinity: such a cell stays empty
        sheet.write_number(row, col, number)


def _naive(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Timestamps in UTC without a zone, in microseconds (Excel has no zones; Python's datetime no nanoseconds)."""
    columns = []
    for column in batch.columns:
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("us"), safe=False)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


@hookimpl
def tessera_formats() -> Mapping[str, Format]:
    return {NAME: ExcelFormat()}


__all__ = ["ExcelFormat"]
