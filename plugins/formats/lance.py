"""Lance: a Lance dataset directory, carried as a zip file (a download is one file).

Write: the batches become a new dataset in a temporary directory (``engine.storage.lance.write_dataset``), which
is then zipped into the sink (stored, not deflated: Lance's files are compressed already). Read: the zip is
unpacked to a temporary directory and the dataset read ``batch_size`` rows at a time. No options.

An export in this format holds every committed row of its table version, whatever the shards' logs hold unfolded:
the export reads through the shard hosts, which serve the logs' rows with the dataset's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import pyarrow as pa

from engine.errors import SourceError
from engine.registry import Format, hookimpl
from engine.storage import lance
from plugins.formats._common import Options, check_batch_size, rebatch

NAME = "lance"
DATASET = "data.lance"  # the directory inside the zip


class LanceFormat:
    media_type: str = "application/zip"
    extensions: tuple[str, ...] = (".lance.zip", ".lance")
    seekable: bool = True

    def read(self, source: BinaryIO, options: Mapping[str, Any], batch_size: int) -> Iterator[pa.RecordBatch]:
        check_batch_size(NAME, batch_size)
        Options(NAME, options, ())
        return _read(source, batch_size)

    def write(
        self, batches: Iterable[pa.RecordBatch], schema: pa.Schema, sink: BinaryIO, options: Mapping[str, Any]
    ) -> None:
        Options(NAME, options, ())
        work = tempfile.mkdtemp(prefix="tessera-lance-")
        try:
            path = os.path.join(work, DATASET)
            lance.write_dataset(path, iter(batches), schema)
            with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
                for folder, _, files in os.walk(path):
                    for name in sorted(files):
                        full = os.path.join(folder, name)
                        archive.write(full, os.path.relpath(full, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _read(source: BinaryIO, batch_size: int) -> Iterator[pa.RecordBatch]:
    work = tempfile.mkdtemp(prefix="tessera-lance-")
    try:
        try:
            with zipfile.ZipFile(source) as archive:
                for member in archive.infolist():
                    target = os.path.realpath(os.path.join(work, member.filename))
                    if not target.startswith(os.path.realpath(work) + os.sep):
                        raise SourceError(NAME, f"the zip's member {member.filename!r} points outside it")
                archive.extractall(work)
        except zipfile.BadZipFile as exc:
            raise SourceError(NAME, f"not a zip of a Lance dataset: {exc}") from None
        roots = [d for d in os.listdir(work) if os.path.isdir(os.path.join(work, d))]
        if len(roots) != 1:
            raise SourceError(NAME, "the zip must hold one Lance dataset directory")
        try:
            yield from rebatch(lance.dataset_batches(os.path.join(work, roots[0]), batch_size), batch_size)
        except (OSError, ValueError) as exc:
            raise SourceError(NAME, f"not a Lance dataset: {str(exc).splitlines()[0]}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


@hookimpl
def tessera_formats() -> Mapping[str, Format]:
    return {NAME: LanceFormat()}


__all__ = ["LanceFormat"]
