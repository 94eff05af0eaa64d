"""Imports: a source read by a format plugin in batches (joined in groups of ``GROUP_ROWS`` rows), each group
coerced and validated on Arrow (``conform``, ``rules``), its rows spooled per shard to Arrow IPC files, and all of it written in one transaction.

Memory stays bounded whatever the source's size: the reader holds a few blocks, one batch is conformed at a time,
and the rows wait on disk (``<data>/imports/<job_id>/shard-<i>.arrow``) until the end, when one coordinator run
hands every shard its spool file (``Spooled``: the host maps it) and commits the lot. So a table's readers see all
of an import or none of it, and ``on_error: fail`` stops before that run when any row is bad. A cancel is honoured
between batches; the spool directory is removed whatever happens.

The commit carries the Idempotency record ``job:<id>``: a job re-run after a crash that had in fact committed
returns that first result instead of importing twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson
import pyarrow as pa

from engine.config import Settings
from engine.errors import ImportRejected, InvalidRequest, RequestInProgress
from engine.logical.plan import Insert, Spooled, StageResult
from engine.logical.planner import partition, specs_of
from engine.model.schema import TableSchema
from engine.physical.coordinator import ShardWork
from engine.registry import Format
from engine.storage.idempotency import IdempotencyRecord
from engine.transfer import conform as conforming
from engine.transfer.rules import parse_rules
from engine.transfer.sources import Source, check_url, open_source

log = logging.getLogger(__name__)

IMPORTS = "imports"
UPLOADS = "uploads"
UPLOAD_SCHEME = "upload://"  # a file sent with POST /batch/import, kept under <data>/uploads/
ON_ERROR = ("skip", "fail", "default")
MAX_BATCH_SIZE = 10_000
MAX_REPORTED_ERRORS = 1_000
GROUP_ROWS = 100_000  # rows coerced, validated and spooled together (read in batch_size batches)
_HEADER_FORMATS = ("csv", "excel")  # a header line comes before the first record
_JSON_TEXT = ("csv", "excel")  # formats without JSON values: a json column's cells are JSON text


@dataclass(frozen=True)
class ImportRequest:
    """A ``data_import`` job's parameters, checked (``check``) before anything is read."""

    table_name: str
    format: str
    source_url: str
    mapping: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    validation_rules: Mapping[str, Any] = field(default_factory=dict)
    on_error: str = "skip"
    batch_size: int = 1000


def check(parameters: Any, formats: Mapping[str, Format]) -> ImportRequest:
    """The parameters as a request, or InvalidRequest naming the first one that is wrong."""
    if not isinstance(parameters, Mapping):
        raise InvalidRequest("parameters must be an object", field="parameters")
    p = dict(parameters)
    for name in ("table_name", "source_url"):
        if not isinstance(p.get(name), str) or not p[name]:
            raise InvalidRequest(f"{name} is required (text)", field=name)
    fmt = p.get("format")
    if not isinstance(fmt, str) or fmt not in formats:
        raise InvalidRequest(f"format: {fmt!r} is not a format (formats: {', '.join(sorted(formats))})", field="format")
    for name in ("mapping", "options", "validation_rules"):
        if p.get(name) is not None and not isinstance(p[name], Mapping):
            raise InvalidRequest(f"{name} must be an object", field=name)
    mapping = p.get("mapping") or {}
    for source, target in mapping.items():
        if not isinstance(target, str) or not target:
            raise InvalidRequest(f"mapping.{source} must name a table column (text)", field=f"mapping.{source}")
    on_error = p.get("on_error", "skip")
    if on_error not in ON_ERROR:
        raise InvalidRequest(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}", field="on_error")
    batch_size = p.get("batch_size", 1000)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidRequest(
            f"batch_size must be an integer from 1 to {MAX_BATCH_SIZE}, not {batch_size!r}", field="batch_size"
        )
    return ImportRequest(
        p["table_name"],
        fmt,
        p["source_url"],
        dict(mapping),
        dict(p.get("options") or {}),
        dict(p.get("validation_rules") or {}),
        on_error,
        batch_size,
    )


def check_source(url: str, settings: Settings) -> None:
    """What can be checked of a ``source_url`` before the job runs (its scheme; a ``file://`` path's place)."""
    check_url(url, settings)


def upload_path(root: str, source_url: str) -> tuple[str, str] | None:
    """The local file and name of an ``upload://<id>/<name>`` source, or None for any other URL."""
    if not source_url.startswith(UPLOAD_SCHEME):
        return None
    ident, _, name = source_url.removeprefix(UPLOAD_SCHEME).partition("/")
    if not ident or not all(c.isalnum() for c in ident) or not name or "/" in name or name in (".", ".."):
        raise InvalidRequest(f"source_url: {source_url!r} is not an upload of this server", field="source_url")
    return os.path.join(root, UPLOADS, ident, name), name


def run(db: Any, request: ImportRequest, job: Any, local_file: str | None = None) -> dict[str, Any]:
    """Run the import; returns the contract's result. ``db`` is the job worker's ``Database``; ``local_file`` a
    path a Python caller imports directly (it is not under any ``TESSERA_IMPORT_DIR`` rule, and is kept)."""
    key = f"job:{job.job_id}"
    request_hash = hashlib.sha256(orjson.dumps(request.__dict__, option=orjson.OPT_SORT_KEYS)).hexdigest()
    settings: Settings = db.settings
    reservation = db.catalog.reserve_key(
        key, request_hash, ttl_seconds=settings.idempotency_ttl_hours * 3600, stale_seconds=settings.lease_seconds
    )
    if reservation.state == "answered":
        job.log("this import committed before its worker was lost: its first result stands")
        return dict(orjson.loads(reservation.response))
    if reservation.state in ("running", "reused"):
        raise RequestInProgress(key)
    spool = os.path.join(db.root, IMPORTS, job.job_id)
    uploaded = upload_path(db.root, request.source_url)
    upload = (local_file, os.path.basename(local_file)) if local_file is not None else uploaded
    try:
        return _run(
            db,
            request,
            job,
            spool,
            upload,
            lambda result: IdempotencyRecord(key, reservation.attempt, orjson.dumps(result).decode()),
        )
    except BaseException:
        db.catalog.release_key(key, reservation.attempt)
        raise
    finally:
        shutil.rmtree(spool, ignore_errors=True)
        if uploaded is not None:  # an upload is read once
            shutil.rmtree(os.path.dirname(uploaded[0]), ignore_errors=True)


def _run(
    db: Any,
    request: ImportRequest,
    job: Any,
    spool: str,
    upload: tuple[str, str] | None,
    record: Callable[[dict[str, Any]], IdempotencyRecord],
) -> dict[str, Any]:
    start = time.perf_counter()
    table, _ = db.catalog.read_table(request.table_name)
    specs = specs_of(table, db.root)
    schema: TableSchema = table.schema
    fmt: Format = db.registry.formats()[request.format]
    rules = parse_rules(request.validation_rules, schema)
    text_source = request.format == "csv"
    options = dict(request.options)
    if text_source:  # CSV cells arrive as text and are parsed to the table's types here, like a JSON insert
        options["schema"] = _text_schema(schema, request.mapping, options)
    first_row = 2 if request.format in _HEADER_FORMATS and request.options.get("header", True) else 1
    stats = _Stats()
    spools = _Spools(spool, len(specs))
    with _opened(request, db.settings, upload) as source, contextlib.ExitStack() as held:
        job.log(f"importing {source.name} ({request.format}) into {request.table_name}")
        plans: dict[tuple[str, ...], conforming.ImportPlan] = {}
        ignored: set[str] = set()
        batches = fmt.read(_readable(source, fmt, spool, held), options, request.batch_size)
        for batch in _grouped(batches, job.check_cancelled):
            plan = plans.get(tuple(batch.schema.names))
            if plan is None:
                plan = plans[tuple(batch.schema.names)] = conforming.plan_columns(
                    batch.schema.names, schema, request.mapping
                )
                new = set(plan.ignored) - ignored
                if new:
                    ignored |= new
                    log.info("import into %s ignores the source columns %s", request.table_name, sorted(new))
                    job.log(f"ignored source columns (not table columns): {', '.join(sorted(new))}")
            done = conforming.conform(batch, schema, plan, rules, text_source, request.format in _JSON_TEXT)
            stats.bad(done.bad, first_row + stats.processed)
            rows, skipped = conforming.resolve(done, request.on_error, schema)
            stats.processed += batch.num_rows
            stats.skipped += skipped
            if request.on_error != "fail" or not stats.errors_total:
                spools.append(partition(rows, schema, len(specs), Insert, False))
            if source.total_bytes:
                job.progress(min(99.0, 100.0 * source.consumed() / source.total_bytes))
    if request.on_error == "fail" and stats.errors_total:
        spools.close()
        result = stats.result(0, start)
        result["rows_skipped"] = stats.processed
        raise ImportRejected(stats.bad_rows, result)
    spools.close()
    job.check_cancelled()
    imported = stats.processed - stats.skipped
    result = stats.result(imported, start)
    work = [ShardWork(specs[i], (Insert(Spooled(path, rows)),)) for i, (path, rows) in enumerate(spools.files) if rows]

    def answer(staged: list[StageResult]) -> IdempotencyRecord:
        result["duration_seconds"] = round(time.perf_counter() - start, 3)
        return record(result)

    if work:
        db.coordinator.run(work, check=answer)
    else:
        db.catalog.put_record(answer([]))
    job.log(f"{imported} rows imported, {stats.skipped} skipped of {stats.processed}")
    return result


def _grouped(batches: Iterator[pa.RecordBatch], between: Callable[[], None]) -> Iterator[pa.RecordBatch]:
    """The reader's batches joined into groups of at least ``GROUP_ROWS`` rows (of one schema) for the Arrow work:
    a kernel call per 10,000 rows costs more than the work. ``between()`` (the cancel check) after each batch."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        between()
        if pending and batch.schema != pending[0].schema:
            yield pa.concat_batches(pending)
            pending, held = [], 0
        pending.append(batch)
        held += batch.num_rows
        if held >= GROUP_ROWS:
            yield pa.concat_batches(pending) if len(pending) > 1 else pending[0]
            pending, held = [], 0
    if pending:
        yield pa.concat_batches(pending) if len(pending) > 1 else pending[0]


def _text_schema(schema: TableSchema, mapping: Mapping[str, str], options: Mapping[str, Any]) -> pa.Schema:
    """Every source column that may feed a table column, as text (the others keep pyarrow's inferred types)."""
    targets = set(mapping.values())
    names = [*mapping, *(c.name for c in schema.columns if c.name not in targets and c.name not in mapping)]
    return pa.schema([(n, pa.string()) for n in dict.fromkeys(names)])


def _opened(request: ImportRequest, settings: Settings, upload: tuple[str, str] | None) -> Source:
    if upload is not None:
        path, name = upload
        if not os.path.exists(path):
            raise InvalidRequest(
                f"source_url: the upload {request.source_url} is gone (its import ran already)", field="source_url"
            )
        return open_source("", settings, upload=path, upload_name=name)
    return open_source(request.source_url, settings)


def _readable(source: Source, fmt: Format, spool: str, held: contextlib.ExitStack) -> BinaryIO:
    """The source as the format reads it: a format that seeks gets a file, a download is spooled to one first."""
    if not fmt.seekable or _seekable(source.file):
        return source.file
    os.makedirs(spool, exist_ok=True)
    copy = held.enter_context(tempfile.TemporaryFile(dir=spool))  # noqa: SIM115 (held closes it)
    shutil.copyfileobj(source.file, copy, 1 << 20)
    copy.seek(0)
    return copy  # type: ignore[return-value]


def _seekable(file: Any) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, OSError, ValueError):
        return False


class _Stats:
    def __init__(self) -> None:
        self.processed = 0
        self.skipped = 0
        self.errors: list[dict[str, Any]] = []
        self.errors_total = 0
        self.bad_rows = 0

    def bad(self, cells: Sequence[tuple[int, str, str]], first_row: int) -> None:
        rows = set()
        for index, column, message in cells:
            rows.add(index)
            self.errors_total += 1
            if len(self.errors) < MAX_REPORTED_ERRORS:
                self.errors.append({"row": first_row + index, "column": column, "error": message})
        self.bad_rows += len(rows)

    def result(self, imported: int, start: float) -> dict[str, Any]:
        return {
            "rows_processed": self.processed,
            "rows_imported": imported,
            "rows_skipped": self.skipped,
            "errors": self.errors,
            "error_count": self.errors_total,
            "duration_seconds": round(time.perf_counter() - start, 3),
        }


class _Spools:
    """One Arrow IPC file per shard, appended batch by batch."""

    def __init__(self, folder: str, shards: int) -> None:
        self.folder = folder
        self.paths = [os.path.join(folder, f"shard-{i}.arrow") for i in range(shards)]
        self.rows = [0] * shards
        self.writers: list[Any] = [None] * shards

    def append(self, parts: list[tuple[int, Any]]) -> None:
        for i, op in parts:
            rows: pa.Table = op.rows
            if not rows.num_rows:
                continue
            if self.writers[i] is None:
                os.makedirs(self.folder, exist_ok=True)
                self.writers[i] = pa.ipc.new_file(self.paths[i], rows.schema)
            self.writers[i].write_table(rows)
            self.rows[i] += rows.num_rows

    def close(self) -> None:
        for w in self.writers:
            if w is not None:
                w.close()
        self.writers = [None] * len(self.writers)

    @property
    def files(self) -> list[tuple[str, int]]:
        return list(zip(self.paths, self.rows, strict=True))


__all__ = ["UPLOADS", "UPLOAD_SCHEME", "ImportRequest", "check", "run", "upload_path"]
