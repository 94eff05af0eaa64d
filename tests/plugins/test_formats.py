"""The import/export formats (``plugins.formats``) on real files in tmp dirs: round trips, bounded batches, and the
bad sources and options each names. Pure, no Ray."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import FormatError, SourceError
from engine.registry import current
from plugins.formats import CsvFormat, ExcelFormat, JsonFormat, JsonlFormat, LanceFormat, ParquetFormat

FORMATS = {
    "csv": CsvFormat(),
    "json": JsonFormat(),
    "jsonl": JsonlFormat(),
    "parquet": ParquetFormat(),
    "excel": ExcelFormat(),
    "lance": LanceFormat(),
}
ROWS = pa.table(
    {
        "id": pa.array([1, 2, 3, None, 5], pa.int64()),
        "price": [1.5, -2.25, None, 0.0, 1e10],
        "name": ["ann", "", None, 'b,c "q"', "line\nbreak"],
        "ok": [True, False, None, True, False],
    }
)


def write(tmp_path: Path, name: str, table: pa.Table, options: dict[str, Any] | None = None, **kw: Any) -> Path:
    path = tmp_path / f"out.{name}"
    fmt = kw.get("fmt") or FORMATS[name]
    with path.open("wb") as sink:
        fmt.write(table.to_batches(max_chunksize=2), table.schema, sink, options or {})
    return path


def read(fmt: Any, path: Path, options: dict[str, Any] | None = None, batch_size: int = 1000) -> list[pa.RecordBatch]:
    with path.open("rb") as source:
        return list(fmt.read(source, options or {}, batch_size))


def table_of(batches: list[pa.RecordBatch]) -> pa.Table:
    return pa.Table.from_batches(batches) if batches else pa.table({})


class Counting(io.RawIOBase):
    """A source that counts the bytes read from it (so a test sees that a reader did not read ahead to the end)."""

    def __init__(self, data: bytes) -> None:
        self.inner, self.read_bytes = io.BytesIO(data), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.inner.readinto(buffer)
        self.read_bytes += n
        return n

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.read_bytes += len(data)
        return data


# -- registration --------------------------------------------------------------------------------------------------
def test_the_formats_register_through_their_own_entry_points() -> None:
    described = {e["name"]: e for e in current().describe()["formats"]}
    assert set(described) == set(FORMATS)
    for name, entry in described.items():
        assert entry["module"] == f"plugins.formats.{name}" and entry["plugin"] == f"tessera.formats.{name}"
        assert entry["distribution"] is not None and entry["distribution"].startswith("tessera ")
        fmt = current().formats()[name]
        assert isinstance(fmt.media_type, str) and fmt.extensions and isinstance(fmt.seekable, bool)
    assert current().formats()["parquet"].seekable and not current().formats()["csv"].seekable


# -- round trips ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["csv", "json", "jsonl", "parquet", "lance"])
def test_write_then_read_gives_the_same_rows_and_types(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, ROWS)
    back = table_of(read(FORMATS[name], path, batch_size=2))
    assert back.schema == ROWS.schema
    assert back.to_pylist() == ROWS.to_pylist()


def test_excel_round_trips_as_far_as_excel_holds_types(tmp_path: Path) -> None:
    """Excel has one number type (float64), and no NaN: the rest comes back as written."""
    table = ROWS.append_column("at", pa.array([dt.datetime(2024, 1, 2, 3, 4, 5)] * 4 + [None], pa.timestamp("us")))
    back = table_of(read(FORMATS["excel"], write(tmp_path, "excel", table, {"escape_formulas": False}), batch_size=2))
    expected = table.set_column(0, "id", table.column("id").cast(pa.float64()))
    assert back.schema.names == expected.schema.names
    assert back.schema.field("name").type == pa.string() and back.schema.field("ok").type == pa.bool_()
    assert back.column("at").cast(pa.timestamp("us")).to_pylist() == table.column("at").to_pylist()
    assert back.drop_columns("at").to_pylist() == expected.drop_columns("at").to_pylist()


def test_parquet_keeps_nested_and_temporal_types_and_gathers_row_groups(tmp_path: Path) -> None:
    table = pa.table(
        {
            "at": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)] * 10, pa.timestamp("us", "UTC")),
            "tags": [["a", "b"], None, [], ["c"], ["d"]] * 2,
        }
    )
    path = write(tmp_path, "parquet", table, {"row_group_rows": 4})  # written 2 rows at a time
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    batches = read(FORMATS["parquet"], path, batch_size=3)
    assert max(b.num_rows for b in batches) <= 3 and table_of(batches) == table
    assert table_of(read(FORMATS["parquet"], path, {"columns": ["tags"]})).column_names == ["tags"]


@pytest.mark.parametrize("name", ["json", "jsonl"])
def test_json_formats_keep_lists_and_grow_their_schema(tmp_path: Path, name: str) -> None:
    table = pa.table({"tags": [["a"], None, ["b", "c"]], "n": [1, 2, 3]})
    assert table_of(read(FORMATS[name], write(tmp_path, name, table))) == table
    if name == "json":
        data = b'[{"a": 1, "b": null}, {"a": 2, "b": "x", "c": true}]'
    else:
        data = b'{"a": 1, "b": null}\n{"a": 2, "b": "x", "c": true}\n'
    fmt = JsonFormat() if name == "json" else JsonlFormat(chunk_bytes=8)  # one line a chunk
    batches = list(fmt.read(io.BytesIO(data), {}, 1))
    assert [b.schema.names for b in batches] == [["a", "b"], ["a", "b", "c"]]  # a later batch adds a column
    assert batches[1].schema.field("b").type == pa.string()  # and types the all-null one
    assert batches[1].column("a").type == pa.int64()  # and never changes a type


def test_an_explicit_schema_fixes_the_types(tmp_path: Path) -> None:
    schema = pa.schema([("a", pa.float64()), ("b", pa.string())])
    data = b"a,b\n1,2\n3,4\n"
    assert table_of(list(CsvFormat().read(io.BytesIO(data), {"schema": schema}, 10))).schema == schema
    lines = b'{"a": 1, "b": "x"}\n{"a": 2}\n'
    assert table_of(list(JsonlFormat().read(io.BytesIO(lines), {"schema": schema}, 10))).schema == schema
    records = b'[{"a": 1, "b": "x"}, {"a": 2}]'
    got = table_of(list(JsonFormat().read(io.BytesIO(records), {"schema": schema}, 10)))
    assert got.schema == schema and got.to_pylist() == [{"a": 1.0, "b": "x"}, {"a": 2.0, "b": None}]
    with pytest.raises(FormatError, match=re.escape("csv option 'schema' must be a pyarrow.Schema, not dict")):
        CsvFormat().read(io.BytesIO(data), {"schema": {"a": "float"}}, 10)


# -- bounded batches -------------------------------------------------------------------------------------------------
def big_csv(rows: int) -> bytes:
    return b"id,name,score\n" + b"".join(b"%d,name%d,%d.5\n" % (i, i % 97, i) for i in range(rows))


@pytest.mark.parametrize("name", ["csv", "jsonl", "json"])
def test_a_large_source_is_read_in_batches_without_reading_it_whole(name: str) -> None:
    rows = 100_000
    if name == "csv":
        data = big_csv(rows)
    elif name == "jsonl":
        data = b"".join(b'{"id": %d, "name": "name%d"}\n' % (i, i % 97) for i in range(rows))
    else:
        data = b"[" + b",".join(b'{"id": %d, "name": "name%d"}' % (i, i % 97) for i in range(rows)) + b"]"
    source = Counting(data)
    # small blocks, so that what pyarrow reads ahead (32 blocks) is small beside this 2-3 MB source
    fmt = {"csv": CsvFormat(block_bytes=1 << 14), "jsonl": JsonlFormat(chunk_bytes=1 << 16), "json": JsonFormat()}[name]
    batches = fmt.read(source, {}, 1000)  # type: ignore[arg-type]
    first = next(batches)
    assert first.num_rows == 1000 and source.read_bytes < len(data) // 2  # streaming: most is not read yet
    sizes = [first.num_rows, *(b.num_rows for b in batches)]
    assert len(sizes) == 100 and max(sizes) <= 1000 and sum(sizes) == rows
    assert source.read_bytes == len(data)


def test_excel_and_parquet_batches_are_at_most_batch_size(tmp_path: Path) -> None:
    table = pa.table({"n": list(range(2500))})
    for name in ("excel", "parquet"):
        sizes = [b.num_rows for b in read(FORMATS[name], write(tmp_path, name, table), batch_size=1000)]
        assert sizes == [1000, 1000, 500], name


# -- CSV options and bad sources -----------------------------------------------------------------------------------
def csv_rows(data: bytes, options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return table_of(list(CsvFormat().read(io.BytesIO(data), options or {}, 100))).to_pylist()


def test_csv_options() -> None:
    assert csv_rows(b"\xef\xbb\xbfa,b\n1,x\n") == [{"a": 1, "b": "x"}]  # the BOM is not part of the first name
    assert csv_rows(b"a;b\n1;x,y\n", {"delimiter": ";"}) == [{"a": 1, "b": "x,y"}]
    assert csv_rows(b"a\tb\n1\t'x\ty'\n", {"delimiter": "\t", "quote": "'"}) == [{"a": 1, "b": "x\ty"}]
    assert csv_rows(b'a,b\n1,"x\n', {"quote": None}) == [{"a": 1, "b": '"x'}]
    assert csv_rows(b"1,x\n", {"header": False}) == [{"f0": 1, "f1": "x"}]
    assert csv_rows(b"a,b\nNA,x\n3,-\n", {"null_values": ["NA", "-"]}) == [{"a": None, "b": "x"}, {"a": 3, "b": None}]
    assert csv_rows(b'a,b\n,""\n') == [{"a": None, "b": ""}]  # empty is null, quoted empty is ""
    assert csv_rows("a,b\n1,é\n".encode("latin-1"), {"encoding": "latin-1"}) == [{"a": 1, "b": "é"}]
    assert csv_rows("a,b\n1,é\n".encode("utf-16"), {"encoding": "UTF-16"}) == [{"a": 1, "b": "é"}]
    assert csv_rows(b"") == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delimter": ";"}, "csv option 'delimter' is not an option of this format"),
        ({"delimiter": ";;"}, "csv option 'delimiter' must be one character"),
        ({"header": "yes"}, "csv option 'header' must be true or false, not 'yes'"),
        ({"encoding": "klingon"}, "csv option 'encoding' names no known text encoding: 'klingon'"),
        ({"null_values": "NA"}, "csv option 'null_values' must be a list of strings"),
        ({"quote": ","}, "csv option 'quote' must differ from the delimiter"),
    ],
)
def test_bad_csv_options_are_named_up_front(options: dict[str, Any], message: str) -> None:
    with pytest.raises(FormatError, match=message) as info:
        CsvFormat().read(io.BytesIO(b"a\n1\n"), options, 10)  # raised before the first batch is asked for
    assert info.value.fields["option"] == next(iter(options)) or "quote" in options


def test_ragged_rows_name_their_line() -> None:
    data = big_csv(5000) + b"1,2\n"
    with pytest.raises(SourceError, match=r"csv source, line 5002: Expected 3 columns, got 2: 1,2") as info:
        list(CsvFormat(block_bytes=1 << 14).read(io.BytesIO(data), {}, 100))
    assert info.value.line == 5002 and info.value.to_dict()["code"] == "invalid_source"


def test_a_value_that_does_not_fit_the_inferred_type_names_its_line() -> None:
    data = b"a\n" + b"1\n" * 20_000 + b"x\n"
    with pytest.raises(SourceError, match="line 20002: In CSV column #0: CSV conversion error to int64: invalid value"):
        list(CsvFormat(block_bytes=1 << 14).read(io.BytesIO(data), {}, 100))


def test_wrong_encodings_are_source_errors() -> None:
    latin = "a,b\n1,x\n2,café\n".encode("latin-1")
    with pytest.raises(
        SourceError, match=re.escape("line 3: 'b' is not valid utf-8 text; set options.encoding")
    ) as info:
        csv_rows(latin)
    assert info.value.column == "b"
    with pytest.raises(SourceError, match="the bytes are not valid ascii"):
        csv_rows(latin, {"encoding": "ascii"})


def test_csv_escapes_formulas_unless_told_not_to(tmp_path: Path) -> None:
    table = pa.table({"t": ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "safe", None], "n": [-1, 2, 3, 4, 5, 6, 7]})
    back = table_of(read(CsvFormat(), write(tmp_path, "csv", table)))
    assert back.column("t").to_pylist() == ["'=1+1", "'+1", "'-2", "'@SUM(A1)", "'\tx", "safe", None]
    assert back.column("n").to_pylist() == table.column("n").to_pylist()  # numbers are not text: left alone
    back = table_of(read(CsvFormat(), write(tmp_path, "csv", table, {"escape_formulas": False})))
    assert back.column("t").to_pylist() == table.column("t").to_pylist()


def test_csv_writes_options_and_a_header_for_no_rows(tmp_path: Path) -> None:
    table = pa.table({"a": [1, None], "b": [["x"], None]})
    path = write(tmp_path, "csv", table, {"delimiter": ";", "null_value": "NULL"})
    assert path.read_bytes() == b'"a";"b"\n1;"[""x""]"\nNULL;NULL\n'  # nested values as JSON text
    sink = io.BytesIO()
    CsvFormat().write([], table.schema, sink, {"header": True})
    assert sink.getvalue() == b'"a","b"\n'


# -- JSON and JSONL bad sources ----------------------------------------------------------------------------------------
def json_records(n: int) -> bytes:
    return b",".join(b'{"id": %d, "name": "n%d"}' % (i, i) for i in range(1, n + 1))


@pytest.mark.parametrize(
    ("data", "match", "record"),
    [
        (b"[" + json_records(2500) + b', {"id": }]', "malformed JSON", 2501),
        (
            b"[" + json_records(2500) + b', {"id": "x"}]',
            "Could not convert 'x' with type str: tried to convert to int64",
            2501,
        ),
        (b"[" + json_records(2000) + b', {"id": "x"}]', "'id' is 'x', which is not of the column's type int64", 2001),
        (b"[" + json_records(10) + b", 5]", "the element is int, not an object", 11),
        (b"[" + json_records(10), "malformed JSON", 11),
    ],
    ids=["malformed", "mistyped in a batch", "mistyped across batches", "not an object", "unterminated"],
)
def test_malformed_json_names_its_record(data: bytes, match: str, record: int) -> None:
    with pytest.raises(SourceError, match=match) as info:
        list(JsonFormat().read(io.BytesIO(data), {}, 1000))
    assert info.value.record == record


def test_json_must_be_an_array() -> None:
    with pytest.raises(SourceError, match=r"not a JSON array of objects \(it starts with '\{'\)"):
        list(JsonFormat().read(io.BytesIO(b' {"a": 1}'), {}, 10))
    with pytest.raises(SourceError, match="the source is empty"):
        list(JsonFormat().read(io.BytesIO(b"  \n"), {}, 10))
    assert list(JsonFormat().read(io.BytesIO(b"\xef\xbb\xbf[]"), {}, 10)) == []
    assert table_of(list(JsonFormat().read(io.BytesIO(b'\xef\xbb\xbf [{"a": 1}]'), {}, 10))).to_pylist() == [{"a": 1}]


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (b'{"id": }', "Invalid value"),
        (b'{"id": "x"}', "changed from number to string"),
        (b"[1]", "changed from object to array"),
        (b"{", "Missing a name for object member"),
    ],
    ids=["malformed", "mistyped", "not an object", "unterminated"],
)
def test_malformed_jsonl_names_its_line(bad: bytes, match: str) -> None:
    lines = b"".join(b'{"id": %d}\n' % i for i in range(5000))
    data = b"\xef\xbb\xbf" + lines + bad + b"\n" + lines
    with pytest.raises(SourceError, match=match) as info:
        list(JsonlFormat(chunk_bytes=1 << 12).read(io.BytesIO(data), {}, 1000))
    assert info.value.line == 5001


def test_jsonl_skips_blank_lines_and_counts_them() -> None:
    data = b'{"a": 1}\n\n{"a": 2}\n\n{"a": }\n'
    assert table_of(list(JsonlFormat().read(io.BytesIO(data[:19]), {}, 10))).to_pylist() == [{"a": 1}, {"a": 2}]
    with pytest.raises(SourceError) as info:
        list(JsonlFormat().read(io.BytesIO(data), {}, 10))
    assert info.value.line == 5


# -- Parquet ---------------------------------------------------------------------------------------------------------
def test_truncated_or_foreign_parquet_is_a_source_error(tmp_path: Path) -> None:
    data = write(tmp_path, "parquet", ROWS).read_bytes()
    for bad in (data[: len(data) // 2], b"a,b\n1,2\n", b""):
        with pytest.raises(SourceError, match="parquet source: not a Parquet file, or a truncated one"):
            ParquetFormat().read(io.BytesIO(bad), {}, 10)
    with pytest.raises(FormatError, match="parquet option 'columns' names 'nope', which the file does not have"):
        ParquetFormat().read(io.BytesIO(data), {"columns": ["nope"]}, 10)
    with pytest.raises(FormatError, match="parquet option 'compression' must be one of zstd"):
        ParquetFormat().write([], ROWS.schema, io.BytesIO(), {"compression": "zip"})


# -- Excel -----------------------------------------------------------------------------------------------------------
def test_excel_sheets_by_name_or_index_and_no_such_sheet(tmp_path: Path) -> None:
    path = write(tmp_path, "excel", pa.table({"n": list(range(10))}), fmt=ExcelFormat(max_rows=5))
    excel = ExcelFormat()
    assert table_of(read(excel, path, {"sheet": "Sheet1 (2)"})).column("n").to_pylist() == [4.0, 5.0, 6.0, 7.0]
    assert table_of(read(excel, path, {"sheet": 2})).column("n").to_pylist() == [8.0, 9.0]
    assert table_of(read(excel, path, {"header": False})).column(0).to_pylist()[0] == "n"
    with pytest.raises(
        FormatError,
        match=r"excel option 'sheet' 'Orders' is not a sheet of the workbook \(its sheets: "
        r"'Sheet1', 'Sheet1 \(2\)', 'Sheet1 \(3\)'\)",
    ):
        read(excel, path, {"sheet": "Orders"})
    with pytest.raises(FormatError, match="excel option 'sheet' 3 is not a sheet"):
        read(excel, path, {"sheet": 3})


def test_excel_splits_sheets_past_the_row_limit(tmp_path: Path) -> None:
    """1,048,576 rows a sheet in Excel: the limit is the writer's parameter so the test need not write a million."""
    table = pa.table({"n": list(range(25))})
    path = write(tmp_path, "excel", table, {"sheet": "data"}, fmt=ExcelFormat(max_rows=11))  # a header + 10 rows
    sheets = [table_of(read(ExcelFormat(), path, {"sheet": i})).column("n").to_pylist() for i in range(3)]
    assert sheets == [[float(i) for i in range(s, min(s + 10, 25))] for s in (0, 10, 20)]
    with pytest.raises(FormatError, match=r"excel option 'sheet' 3 is not a sheet of the workbook .*'data \(3\)'"):
        read(ExcelFormat(), path, {"sheet": 3})


def test_excel_reads_values_not_formulas_and_escapes_formulas_on_write(tmp_path: Path) -> None:
    import xlsxwriter

    path = tmp_path / "formulas.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("calc")
    sheet.write_row(0, 0, ["a", "b"])
    sheet.write_number(1, 0, 20)
    sheet.write_formula(1, 1, "=A2*2", None, 40)  # the value Excel would save with the formula
    book.close()
    assert table_of(read(ExcelFormat(), path)).to_pylist() == [{"a": 20.0, "b": 40.0}]

    table = pa.table({"=cmd": ['=HYPERLINK("x")', "-1", "plain"]})
    back = table_of(read(ExcelFormat(), write(tmp_path, "excel", table)))
    assert back.column_names == ["'=cmd"] and back.column(0).to_pylist() == ['\'=HYPERLINK("x")', "'-1", "plain"]
    back = table_of(read(ExcelFormat(), write(tmp_path, "excel", table, {"escape_formulas": False})))
    assert back.column(0).to_pylist() == table.column(0).to_pylist()  # written as text, never as formulas


def test_excel_bad_sources_and_the_size_cap(tmp_path: Path) -> None:
    path = write(tmp_path, "excel", pa.table({"n": list(range(100))}))
    with pytest.raises(SourceError, match=r"excel source: the workbook unpacks to \d+ bytes, more than the 1000"):
        read(ExcelFormat(max_bytes=1000), path)
    with pytest.raises(SourceError, match="excel source: not an Excel workbook"):
        ExcelFormat().read(io.BytesIO(b"a,b\n1,2\n"), {}, 10)
    with pytest.raises(FormatError, match="excel option 'sheet' must be 1 to 31 characters"):
        ExcelFormat().write([], ROWS.schema, io.BytesIO(), {"sheet": "a/b"})


def test_batch_size_must_be_positive() -> None:
    for fmt in FORMATS.values():
        with pytest.raises(FormatError, match="option 'batch_size' must be a positive integer, not 0"):
            fmt.read(io.BytesIO(b""), {}, 0)
