"""Tessera's import/export formats, one module per format, each registered through the plugin registry by its own
entry point (``tessera.formats.csv`` ...) exactly as a third-party format would be (``engine.registry.Format``).

- ``csv``: pyarrow's streaming CSV reader and writer;
- ``json``: an array of objects, read incrementally with ijson, written with polars;
- ``jsonl``: JSON Lines, read in chunks of lines with pyarrow's JSON reader, written with polars;
- ``parquet``: pyarrow's ``ParquetFile.iter_batches`` and ``ParquetWriter``;
- ``excel``: read with fastexcel (a whole sheet, under a size cap), written with xlsxwriter (streaming);
- ``lance``: a Lance dataset directory, zipped (``engine.storage.lance`` writes and reads the dataset).

Every reader yields Arrow batches of at most ``batch_size`` rows with the types it infers (or
``options["schema"]`` where it takes one); coercing them to a table's schema is the import's business.
"""

from __future__ import annotations

from plugins.formats.csv import CsvFormat
from plugins.formats.excel import ExcelFormat
from plugins.formats.json import JsonFormat
from plugins.formats.jsonl import JsonlFormat
from plugins.formats.lance import LanceFormat
from plugins.formats.parquet import ParquetFormat

__all__ = ["CsvFormat", "ExcelFormat", "JsonFormat", "JsonlFormat", "LanceFormat", "ParquetFormat"]
