"""The Lance adapter: the only module that imports ``lance``.

Every write commits a new Lance version on the dataset's main line and returns its number; the catalog decides
whether that version is ever named. ``restore`` rolls the main line back to a named version after an aborted
write, so the next write is based on committed data only.

Durability: Lance writes a local dataset through object_store's ``LocalFileSystem``, which (as pylance 14 uses
it) never fsyncs: data files, deletion files, the manifest and the transaction file go to a temporary name and
are renamed or hard-linked into place, so a process crash leaves whole files, but a power loss can leave any of
them empty. So every write here returns only once the files it created and the directories that name them are
fsynced: a version the catalog names afterwards survives power loss. ``rewrite`` syncs its data and deletion
files before it commits the manifest that names them. On an object store (a URI with a scheme) a PUT is durable
when it returns, and nothing is synced here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lance
import lance.fragment
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cachetools import LRUCache

from engine.errors import StorageError

ROWS_PER_FILE = 4 * 1024 * 1024
ROWS_PER_GROUP = 8192
ROW_ADDRESS = "_rowaddr"  # Lance's name for a row's address: fragment id << 32 | offset in the fragment
_SYNC_THREADS = 16  # fsyncs in flight at once (a commit has ~8 files and directories; a compaction more)


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


class OpenDatasets:
    """The dataset each write committed, by (uri, version): the next write on a shard starts from it without
    opening the dataset again (an open reads the manifest: ~0.5 ms of a ~4 ms point write).

    Bounded (the least recently used go first) and shared by the threads of a shard host, which runs many shards'
    writes at once, so every access holds the lock. ``take`` removes the entry: no two writers share a dataset.
    """

    def __init__(self, maxsize: int = 256) -> None:
        self._lock = threading.Lock()
        self._datasets: LRUCache[tuple[str, int], lance.LanceDataset] = LRUCache(maxsize=maxsize)

    def take(self, uri: str, version: int) -> lance.LanceDataset | None:
        with self._lock:
            return self._datasets.pop((uri, version), None)

    def keep(self, uri: str, ds: lance.LanceDataset) -> None:
        with self._lock:
            self._datasets[(uri, ds.version)] = ds

    def __len__(self) -> int:
        with self._lock:
            return len(self._datasets)


# This process's datasets, for callers that pass none (a shard host's shards share it).
_OPENED = OpenDatasets()


def _local_path(uri: str) -> str | None:
    """The directory of a dataset on a local disk; None for an object store (its PUTs are durable on return)."""
    if uri.startswith("file://"):
        return uri.removeprefix("file://")
    return None if "://" in uri else uri


def _listing(root: str) -> dict[str, int]:
    """Every file and directory under ``root``, by path, with its inode: what a write created or replaced
    (Lance replaces by renaming a new file over the old) is what differs between two listings."""
    found: dict[str, int] = {}
    pending = [root]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except FileNotFoundError:
            continue
        with entries:
            for entry in entries:
                found[entry.path] = entry.inode()
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
    return found


def _fsync(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # removed since it was listed (a cleanup): nothing of it to make durable
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_since(root: str | None, before: dict[str, int]) -> dict[str, int]:
    """fsync what appeared or was replaced under ``root`` since ``before``, and the directories naming it.

    All at once from a few threads (fsync releases the GIL): the filesystem folds concurrent fsyncs into one
    journal commit, about 3x quicker than one after another for the ~8 files and directories of a commit. Their
    order does not matter: the caller names the version only after every one has returned. Returns the new
    listing (the ``before`` of a next step)."""
    if root is None:
        return before
    after = _listing(root)
    changed = [path for path, inode in after.items() if before.get(path) != inode]
    paths = changed + sorted({os.path.dirname(path) for path in changed} - set(changed))
    if paths:
        with ThreadPoolExecutor(max_workers=min(len(paths), _SYNC_THREADS)) as pool:
            list(pool.map(_fsync, paths))  # list(): re-raises the first failure
    return after


@contextlib.contextmanager
def _durable(uri: str) -> Iterator[None]:
    """Sync what the block wrote to the dataset at ``uri`` (see the module's docstring)."""
    root = _local_path(uri)
    before = _listing(root) if root is not None else {}
    yield
    _sync_since(root, before)


def _created_dirs(path: str) -> list[str]:
    """``path`` and those of its parents that do not exist yet, up to the first that does (included)."""
    out = [os.path.abspath(path)]
    while not os.path.exists(out[-1]) and os.path.dirname(out[-1]) != out[-1]:
        out.append(os.path.dirname(out[-1]))
    return out


def create(uri: str, schema: pa.Schema) -> int:
    with _Translate(uri, "create"):
        root = _local_path(uri)
        made = _created_dirs(root) if root is not None else []
        with _durable(uri):
            version = lance.write_dataset(
                schema.empty_table(),
                uri,
                mode="create",
                max_rows_per_file=ROWS_PER_FILE,
                max_rows_per_group=ROWS_PER_GROUP,
            ).version
        for directory in made[1:]:  # the new directories' own entries in their parents
            _fsync(directory)
        return version


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


def rewrite(
    uri: str, version: int, deleted: np.ndarray, rows: pa.Table | None, opened: OpenDatasets = _OPENED
) -> tuple[int, np.ndarray]:
    """One Lance commit on top of ``version``: delete the rows at the addresses ``deleted``, append ``rows``.

    The caller knows each row's address (``ROW_ADDRESS``: fragment id << 32 | offset), so deletes mark rows in
    the fragments' deletion files directly, with no key scan or join (Lance's ``merge_insert`` costs 3x more
    for a point update). Returns the new version and the addresses of the appended rows, in order, once the
    version is durable. ``opened`` holds the dataset each commit leaves, for the next write to start from.
    """
    with _Translate(uri, "write"):
        root = _local_path(uri)
        listed = _listing(root) if root is not None else {}
        ds = opened.take(uri, version)
        if ds is None:
            ds = lance.dataset(uri, version=version)
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
        listed = _sync_since(root, listed)  # the new data and deletion files, before a manifest names them
        if removed or updated:
            operation: Any = lance.LanceOperation.Update(
                removed_fragment_ids=removed, updated_fragments=updated, new_fragments=created
            )
        else:
            operation = lance.LanceOperation.Append(created)
        before = max(ds.fragment_ids(), default=-1)  # ids alone: get_fragments() builds an object per fragment
        after = lance.LanceDataset.commit(ds, operation, read_version=version)  # the open dataset: no second open
        _sync_since(root, listed)  # the manifest, the transaction file and the directories naming them
        opened.keep(uri, after)
        return after.version, _new_addresses(after, before, [m.physical_rows for m in created])


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
    with _Translate(uri, "write column"), _durable(uri):
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
    with _Translate(uri, "drop column"), _durable(uri):
        ds = lance.dataset(uri, version=version)
        ds.drop_columns([name])
        return lance.dataset(uri).version


def restore(uri: str, version: int) -> int:
    """Make ``version``'s content the latest again (a new version); returns the new version number."""
    with _Translate(uri, "restore"), _durable(uri):
        ds = lance.dataset(uri, version=version)
        ds.restore()
        return lance.dataset(uri).version


def fragment_count(uri: str, version: int) -> int:
    with _Translate(uri, "inspect"):
        return len(lance.dataset(uri, version=version).get_fragments())


def compact(uri: str) -> int:
    with _Translate(uri, "compact"), _durable(uri):
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


# -- whole datasets, for exports and imports in the Lance format (plugins.formats.lance) ---------------------------
def write_dataset(path: str, batches: Iterator[pa.RecordBatch], schema: pa.Schema) -> None:
    """A new Lance dataset at ``path`` from ``batches``, written as they come."""
    lance.write_dataset(pa.RecordBatchReader.from_batches(schema, batches), path, mode="create")


def dataset_batches(path: str, batch_size: int) -> Iterator[pa.RecordBatch]:
    """The rows of the Lance dataset at ``path`` (its latest version), ``batch_size`` rows at a time."""
    yield from lance.dataset(path).to_batches(batch_size=batch_size)
