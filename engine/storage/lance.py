"""The Lance adapter: the only module that imports ``lance``.

Every write commits a new Lance version on the dataset's main line and returns its number; the catalog decides
whether that version is ever named. ``restore`` rolls the main line back to a named version after an aborted
write, so the next write is based on committed data only.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lance
import lance.fragment
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import StorageError

ROWS_PER_FILE = 4 * 1024 * 1024
ROWS_PER_GROUP = 8192
ROW_ADDRESS = "_rowaddr"  # Lance's name for a row's address: fragment id << 32 | offset in the fragment


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


def read(
    uri: str,
    version: int,
    columns: Sequence[str] | None = None,
    where: pc.Expression | None = None,
    *,
    addresses: bool = False,
) -> pa.Table:
    """Rows of ``version``; with ``addresses``, plus their ``ROW_ADDRESS`` column (what ``rewrite`` deletes by)."""
    with _Translate(uri, "read"):
        return lance.dataset(uri, version=version).to_table(
            columns=list(columns) if columns else None, filter=where, with_row_address=addresses
        )


def scan(
    uri: str, version: int, columns: Sequence[str] | None = None, batch_size: int = 65536
) -> Iterator[pa.RecordBatch]:
    with _Translate(uri, "scan"):
        ds = lance.dataset(uri, version=version)
        yield from ds.to_batches(columns=list(columns) if columns else None, batch_size=batch_size)


def rewrite(uri: str, version: int, deleted: np.ndarray, rows: pa.Table | None) -> tuple[int, np.ndarray]:
    """One Lance commit on top of ``version``: delete the rows at the addresses ``deleted``, append ``rows``.

    The caller knows each row's address (``ROW_ADDRESS``: fragment id << 32 | offset), so deletes mark rows in
    the fragments' deletion files directly, with no key scan or join (Lance's ``merge_insert`` costs 3x more
    for a point update). Returns the new version and the addresses of the appended rows, in order.
    """
    with _Translate(uri, "write"):
        ds = _opened.pop((uri, version), None) or lance.dataset(uri, version=version)
        removed: list[int] = []
        updated = []
        if len(deleted):
            fragments = deleted >> np.uint64(32)
            offsets = deleted & np.uint64(0xFFFFFFFF)
            for fid in np.unique(fragments):
                fragment = ds.get_fragment(int(fid))
                if fragment is None:
                    raise StorageError(f"write failed on {uri}: fragment {int(fid)} is not in version {version}")
                left = fragment.delete_rows(offsets[fragments == fid].tolist())
                if left is None:
                    removed.append(int(fid))
                else:
                    updated.append(left)
        created = []
        if rows is not None and rows.num_rows:
            created = lance.fragment.write_fragments(
                rows, ds, schema=rows.schema, max_rows_per_file=ROWS_PER_FILE, max_rows_per_group=ROWS_PER_GROUP
            )
        if not removed and not updated and not created:
            return version, np.empty(0, np.uint64)
        if removed or updated:
            operation: Any = lance.LanceOperation.Update(
                removed_fragment_ids=removed, updated_fragments=updated, new_fragments=created
            )
        else:
            operation = lance.LanceOperation.Append(created)
        before = max(ds.fragment_ids(), default=-1)  # ids alone: get_fragments() builds an object per fragment
        after = lance.LanceDataset.commit(ds, operation, read_version=version)  # the open dataset: no second open
        _remember(uri, after)
        return after.version, _new_addresses(after, before, [m.physical_rows for m in created])


# The dataset each write committed, by (uri, version): the next write on a shard starts from it without opening
# the dataset again (an open reads the manifest: ~0.5 ms of a ~4 ms point write).
_opened: dict[tuple[str, int], lance.LanceDataset] = {}
_OPENED_MAX = 256


def _remember(uri: str, ds: lance.LanceDataset) -> None:
    if len(_opened) >= _OPENED_MAX:
        _opened.pop(next(iter(_opened)))
    _opened[(uri, ds.version)] = ds


def _new_addresses(ds: lance.LanceDataset, before: int, sizes: list[int]) -> np.ndarray:
    """Addresses of the rows of the fragments a commit created (ids above ``before``, assigned in order)."""
    ids = sorted(i for i in ds.fragment_ids() if i > before)
    if len(ids) != len(sizes):
        raise StorageError(f"write on {ds.uri}: expected {len(sizes)} new fragments, found {len(ids)}")
    parts = [
        (np.uint64(fid) << np.uint64(32)) + np.arange(n, dtype=np.uint64) for fid, n in zip(ids, sizes, strict=True)
    ]
    return np.concatenate(parts) if parts else np.empty(0, np.uint64)


def put_column(uri: str, version: int, name: str, values: pa.Array | pa.ChunkedArray) -> int:
    """Write column ``name`` (replacing it if the dataset has it): ``values`` in scan order, one per live row.

    Only the column is written (new data files beside each fragment's); rows keep their addresses.
    """
    with _Translate(uri, "write column"):
        ds = lance.dataset(uri, version=version)
        if name in ds.schema.names:
            ds.drop_columns([name])
            ds = lance.dataset(uri)
        column = pa.table({name: values})
        reader = pa.RecordBatchReader.from_batches(column.schema, column.to_batches(max_chunksize=ROWS_PER_GROUP * 8))
        ds.add_columns(reader)
        return lance.dataset(uri).version


def drop_column(uri: str, version: int, name: str) -> int:
    """Drop column ``name`` (metadata only: its data files go with the next cleanup)."""
    with _Translate(uri, "drop column"):
        ds = lance.dataset(uri, version=version)
        ds.drop_columns([name])
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


def cleanup(uri: str, before: int) -> int:
    """Delete the versions numbered below ``before`` (and the files only they use); the latest is always kept."""
    with _Translate(uri, "cleanup"):
        ds = lance.dataset(uri)
        old = [v for v in (m["version"] for m in ds.versions()) if v < min(before, ds.version)]
        if not old:
            return 0
        stats = ds.cleanup_old_versions(versions=old, delete_unverified=True)
        return int(getattr(stats, "old_versions", 0))


def remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def list_table_dirs(root: str) -> list[str]:
    base = Path(root) / "tables"
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []
