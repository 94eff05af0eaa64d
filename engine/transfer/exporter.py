"""Exports: one table version, scanned shard batch by shard batch (``scan.Scan``), written by a format plugin into
the data directory's export area, atomically.

``<data>/exports/<job_id>/<table>.<ext>[.gz]`` is written under a ``.part`` name and renamed when complete, so a
download never sees half a file and a crashed export leaves only a ``.part`` the sweep removes. The file is kept
until ``expires_at`` (``Settings.export_ttl_hours``): ``expired`` lists the directories past it for the background
sweep, and ``download`` refuses them with 410 meanwhile.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from engine.errors import ExportExpired, ExportNotFound, FormatError, InvalidRequest
from engine.registry import Format
from engine.transfer.scan import Scan

EXPORTS = "exports"
MANIFEST = "export.json"  # beside the file: what the download serves, and until when
_NO_GZIP = ("lance",)  # formats that are an archive already


@dataclass(frozen=True)
class Export:
    path: str
    rows: int
    size: int
    expires_at: str
    format: str

    def result(self, job_id: str) -> dict[str, Any]:
        return {
            "rows_exported": self.rows,
            "file_size_bytes": self.size,
            "download_url": download_url(job_id),
            "expires_at": self.expires_at,
            "format": self.format,
        }


def download_url(job_id: str) -> str:
    return f"/api/v1/batch/exports/{job_id}/download"


def export_dir(root: str, job_id: str) -> str:
    if not job_id or not all(c.isalnum() or c in "-_" for c in job_id):
        raise ExportNotFound(job_id, "not an export id")
    return os.path.join(root, EXPORTS, job_id)


def format_of(formats: Mapping[str, Format], name: Any, field: str = "format") -> Format:
    if not isinstance(name, str) or name not in formats:
        raise InvalidRequest(f"{field}: {name!r} is not a format (formats: {', '.join(sorted(formats))})", field=field)
    return formats[name]


def file_name(table: str, fmt_name: str, fmt: Format, compress: bool) -> str:
    extension = fmt.extensions[0] if fmt.extensions else f".{fmt_name}"
    return f"{table}{extension}" + (".gz" if compress and fmt_name not in _NO_GZIP else "")


def write_file(
    scan: Scan,
    fmt_name: str,
    fmt: Format,
    path: str,
    *,
    options: Mapping[str, Any] | None = None,
    compress: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Write every batch of ``scan`` as ``fmt`` to ``path`` (gzipped if ``compress``), atomically: under a
    ``.part`` name, fsynced, then renamed. ``on_batch(rows so far)`` after each batch. Returns the rows written."""
    part = path + ".part"
    rows = 0

    def counted() -> Iterator[pa.RecordBatch]:
        nonlocal rows
        for batch in scan:
            rows += batch.num_rows
            yield batch
            if on_batch is not None:
                on_batch(rows)

    try:
        with open(part, "wb") as raw:
            if compress and fmt_name not in _NO_GZIP:
                name = os.path.basename(path).removesuffix(".gz")
                with gzip.GzipFile(filename=name, mode="wb", fileobj=raw, compresslevel=6) as z:
                    fmt.write(counted(), scan.schema, z, dict(options or {}))  # type: ignore[arg-type]
            else:
                fmt.write(counted(), scan.schema, raw, dict(options or {}))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(part, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(part)
        raise
    finally:
        scan.close()
    return rows


def write(
    scan: Scan,
    fmt_name: str,
    fmt: Format,
    *,
    root: str,
    job_id: str,
    table: str,
    options: Mapping[str, Any] | None,
    compress: bool,
    ttl_hours: float,
    on_batch: Callable[[int], None] | None = None,
) -> Export:
    """An export job's file in the export area, and the manifest its download reads."""
    folder = export_dir(root, job_id)
    shutil.rmtree(folder, ignore_errors=True)  # a retried job starts again
    os.makedirs(folder)
    name = file_name(table, fmt_name, fmt, compress)
    final = os.path.join(folder, name)
    try:
        rows = write_file(scan, fmt_name, fmt, final, options=options, compress=compress, on_batch=on_batch)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=ttl_hours)
    done = Export(final, rows, os.path.getsize(final), expires.isoformat().replace("+00:00", "Z"), fmt_name)
    manifest = {"file": name, "expires_at": done.expires_at, "expires": expires.timestamp(), "format": fmt_name}
    with open(os.path.join(folder, MANIFEST), "wb") as f:
        f.write(orjson.dumps(manifest))
    return done


def download(root: str, job_id: str) -> tuple[str, str]:
    """The export file of ``job_id`` and its download name: ``ExportNotFound``, or ``ExportExpired`` past its time."""
    folder = export_dir(root, job_id)
    try:
        with open(os.path.join(folder, MANIFEST), "rb") as f:
            manifest = orjson.loads(f.read())
    except FileNotFoundError:
        raise ExportNotFound(job_id) from None
    if manifest["expires"] <= time.time():
        raise ExportExpired(job_id, manifest["expires_at"])
    path = os.path.join(folder, manifest["file"])
    if not os.path.exists(path):
        raise ExportExpired(job_id, manifest["expires_at"])
    return path, manifest["file"]


def sweep(root: str, now: float | None = None) -> list[str]:
    """Delete every export past its ``expires_at`` (keeping its manifest, so its download says 410, not 404), and
    the leftovers of exports that never finished (no manifest) an hour on; returns the job ids swept."""
    now = time.time() if now is None else now
    base = os.path.join(root, EXPORTS)
    swept: list[str] = []
    for job_id in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        folder = os.path.join(base, job_id)
        try:
            with open(os.path.join(folder, MANIFEST), "rb") as f:
                manifest = orjson.loads(f.read())
        except FileNotFoundError:
            if now - os.path.getmtime(folder) > 3600:
                shutil.rmtree(folder, ignore_errors=True)
                swept.append(job_id)
            continue
        if manifest["expires"] <= now:
            for name in os.listdir(folder):
                if name != MANIFEST:
                    path = os.path.join(folder, name)
                    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            swept.append(job_id)
    return swept


def check_export_options(fmt_name: str, fmt: Format, options: Any) -> None:
    """Options checked before the job is queued: the format's writer checks them on an empty write."""
    if options is not None and not isinstance(options, Mapping):
        raise InvalidRequest("options must be an object", field="options")
    try:
        fmt.write(iter(()), pa.schema([]), io.BytesIO(), dict(options or {}))
    except FormatError:
        raise
    except Exception:  # an empty schema may not be writable by every format; options were checked first
        pass


__all__ = [
    "Export",
    "check_export_options",
    "download",
    "download_url",
    "export_dir",
    "file_name",
    "format_of",
    "sweep",
    "write",
    "write_file",
]
