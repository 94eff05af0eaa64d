"""The Lance adapter: the only module that imports ``lance``.

Every write commits a new Lance version on the dataset's main line and returns its number; the catalog decides
whether that version is ever named. ``restore`` rolls the main line back to a named version after an aborted
write, so the next write is based on committed data only.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lance
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import StorageError

ROWS_PER_FILE = 4 * 1024 * 1024
ROWS_PER_GROUP = 8192


class _Translate:
    """Turn any lance/arrow failure into StorageError naming the dataset and the step."""

    def __init__(self, uri: str, step: str) -> None:
        self.uri, self.step = uri, step

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and isinstance(exc, (OSError, ValueError, RuntimeError, pa.ArrowException)):
            raise StorageError(f"{self.step} failed on {self.uri}: {exc}", step=self.step) from exc


def shard_uri(root: str, table_id: str, shard: int) -> str:
    return f"{root.rstrip('/')}/tables/{table_id}/shard-{shard:04d}.lance"


def table_dir(root: str, table_id: str) -> str:
    return f"{root.rstrip('/')}/tables/{table_id}"


def create(uri: str, schema: pa.Schema) -> int:
    with _Translate(uri, "create"):
        return lance.write_dataset(
            schema.empty_table(), uri, mode="create", max_rows_per_file=ROWS_PER_FILE, max_rows_per_group=ROWS_PER_GROUP
        ).version


def open_version(uri: str, version: int) -> lance.LanceDataset:
    with _Translate(uri, "open"):
        return lance.dataset(uri, version=version)


def latest_version(uri: str) -> int:
    with _Translate(uri, "open"):
        return lance.dataset(uri).version


def read(uri: str, version: int, columns: Sequence[str] | None = None, where: pc.Expression | None = None) -> pa.Table:
    with _Translate(uri, "read"):
        return lance.dataset(uri, version=version).to_table(columns=list(columns) if columns else None, filter=where)


def scan(
    uri: str, version: int, columns: Sequence[str] | None = None, batch_size: int = 65536
) -> Iterator[pa.RecordBatch]:
    with _Translate(uri, "scan"):
        ds = lance.dataset(uri, version=version)
        yield from ds.to_batches(columns=list(columns) if columns else None, batch_size=batch_size)


def append(uri: str, table: pa.Table) -> int:
    with _Translate(uri, "append"):
        return lance.write_dataset(
            table, uri, mode="append", max_rows_per_file=ROWS_PER_FILE, max_rows_per_group=ROWS_PER_GROUP
        ).version


def delete_keys(uri: str, keys: Sequence[str], rows: pa.Table) -> int:
    """Delete the rows whose key columns match ``rows`` (a table of key values): no filter text involved."""
    with _Translate(uri, "delete"):
        lance.dataset(uri).merge_insert(list(keys)).when_matched_delete().execute(rows.select(list(keys)))
        return lance.dataset(uri).version


def merge(uri: str, keys: Sequence[str], table: pa.Table, *, insert_missing: bool) -> int:
    """Replace the rows whose keys match ``table``'s; with ``insert_missing`` add the others (upsert)."""
    with _Translate(uri, "merge"):
        builder = lance.dataset(uri).merge_insert(list(keys)).when_matched_update_all()
        if insert_missing:
            builder = builder.when_not_matched_insert_all()
        builder.execute(table)
        return lance.dataset(uri).version


def restore(uri: str, version: int) -> int:
    """Make ``version``'s content the latest again (a new version); returns the new version number."""
    with _Translate(uri, "restore"):
        ds = lance.dataset(uri, version=version)
        ds.restore()
        return lance.dataset(uri).version


def fragment_count(uri: str, version: int) -> int:
    with _Translate(uri, "inspect"):
        return len(lance.dataset(uri, version=version).get_fragments())


def compact(uri: str) -> int:
    with _Translate(uri, "compact"):
        ds = lance.dataset(uri)
        ds.optimize.compact_files(target_rows_per_fragment=ROWS_PER_FILE, materialize_deletions_threshold=0.1)
        return lance.dataset(uri).version


def cleanup(uri: str, older_than: dt.timedelta) -> int:
    """Delete versions (and their files) older than ``older_than``; the latest version is always kept."""
    with _Translate(uri, "cleanup"):
        stats = lance.dataset(uri).cleanup_old_versions(older_than=older_than, delete_unverified=True)
        return int(getattr(stats, "old_versions", 0))


def remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def list_table_dirs(root: str) -> list[str]:
    base = Path(root) / "tables"
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []
