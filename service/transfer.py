"""Import, export and streaming endpoints (``engine.transfer``).

- ``POST /batch/import``: a JSON body with ``source_url``, or ``multipart/form-data`` with the same fields as form
  fields (object fields as JSON text) beside a ``file`` part. The upload is streamed to
  ``<data>/uploads/<id>/<name>`` by python-multipart's parser as it arrives (never whole in memory; the body cap
  for this path is ``TESSERA_IMPORT_MAX_BYTES``), and the job reads it as ``upload://<id>/<name>``.
- ``POST /batch/export``: queues a ``data_export`` job.
  Both check the body up front (422 for its shape, 400 for an unknown format, mapping target, rule or filter,
  404 for an unknown table) and answer 200 with the job's ``JobInfo``, its ``parameters`` the request's fields.
- ``GET /batch/exports/{job_id}/download``: the export's file (``Range`` supported), 404 for an unknown export,
  410 once it expired. The job's own key, or admin read.
- ``POST /batch/stream/{table}``: the rows of one table version, encoded chunk by chunk (``engine.transfer.encode``)
  as they are read; at most ``TESSERA_MAX_CONCURRENT_STREAMS`` per key (429). A client that goes away stops the
  read: the response's task is cancelled and the scan's cursors are closed.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import orjson
import pyarrow as pa
from pydantic import ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from engine import Database
from engine.errors import ExportNotFound, InvalidRequest, JobNotFound
from engine.model.batches import rebatch
from engine.transfer import exporter, importer
from engine.transfer.conform import plan_columns
from engine.transfer.encode import encoder
from engine.transfer.rules import parse_rules
from engine.transfer.scan import plan_scan
from service.auth.gate import principal_of
from service.auth.policy import authorize_job, authorize_job_access, rule_for
from service.context import database
from service.json import JSONResponse, parse_body
from service.models import ExportData, ImportData, JobInfo, StreamData

IMPORT_PATH = "/batch/import"
_JSON_FIELDS = ("mapping", "options", "validation_rules", "batch_size", "priority", "webhook_events", "timeout_seconds")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


# -- import -----------------------------------------------------------------------------------------------------
async def import_data(request: Request) -> Response:
    db = database(request)
    content_type = request.headers.get("content-type", "")
    upload = None
    if content_type.lower().startswith("multipart/form-data"):
        fields, upload = await _multipart(request, db.root, content_type)
        try:
            body = ImportData.model_validate(fields)
        except ValidationError:
            _discard_at(db.root, upload)
            raise
        if upload is not None:
            body = body.model_copy(update={"source_url": importer.UPLOAD_SCHEME + upload})
    else:
        body = await parse_body(request, ImportData)
    try:
        if body.source_url is None:
            raise InvalidRequest(
                "source_url is required (or send the file as the multipart 'file' part)", field="source_url"
            )
        parameters = body.model_dump(exclude=body.job_fields(), exclude_none=True)
        authorize_job(principal_of(request), "data_import", parameters)
        info = await run_in_threadpool(_submit_import, db, body, parameters, principal_of(request).key_id)
    except BaseException:
        _discard_at(db.root, upload)
        raise
    return JSONResponse(info)


def _submit_import(db: Database, body: ImportData, parameters: dict[str, Any], owner: str | None) -> JobInfo:
    request = importer.check(parameters, db.registry.formats())
    if not request.source_url.startswith(importer.UPLOAD_SCHEME):
        importer.check_source(request.source_url, db.settings)
    schema = db.table(request.table_name).schema  # TableNotFound: 404
    if request.mapping:
        plan_columns(list(request.mapping), schema, request.mapping)
    parse_rules(request.validation_rules, schema)
    return _submit(db, "data_import", parameters, body, owner)


def _submit(db: Database, job_type: str, parameters: dict[str, Any], body: Any, owner: str | None) -> JobInfo:
    job = db.jobs.submit(
        job_type,
        parameters,
        priority=body.priority,
        timeout_seconds=body.timeout_seconds,
        webhook_url=body.webhook_url,
        webhook_events=body.webhook_events,
        owner_key=owner,
    )
    return cast(JobInfo, job.info)


async def _multipart(request: Request, root: str, content_type: str) -> tuple[dict[str, Any], str | None]:
    """The form fields (JSON-typed where the field is not text) and the upload's ``<id>/<name>``, if any."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidRequest("multipart body without a boundary in its Content-Type", field="Content-Type")
    reader = _FormReader(root)
    parser = MultipartParser(boundary, cast(Any, reader.callbacks()))
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except BaseException:
        reader.discard()
        raise
    if reader.error is not None:
        reader.discard()
        raise InvalidRequest(reader.error, field="file")
    fields: dict[str, Any] = {}
    for name, value in reader.fields.items():
        if name in _JSON_FIELDS:
            try:
                fields[name] = orjson.loads(value)
            except orjson.JSONDecodeError:
                reader.discard()
                raise InvalidRequest(f"form field {name} must be JSON text: {value[:80]!r}", field=name) from None
        else:
            fields[name] = value
    return fields, reader.upload


class _FormReader:
    """python-multipart callbacks: text fields kept (up to 1 MB each), the ``file`` part written to disk."""

    MAX_FIELD = 1 << 20

    def __init__(self, root: str) -> None:
        self.root = root
        self.fields: dict[str, str] = {}
        self.upload: str | None = None
        self.error: str | None = None
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = b"", b""
        self._name: str | None = None
        self._text: list[bytes] = []
        self._file: Any = None

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: setattr(self, "_field", self._field + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "_value", self._value + d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._headers, self._name, self._text, self._file = {}, None, [], None

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_done(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if self._name == "file" or filename is not None:
            if self.upload is not None:
                self.error = "send one file per import"
                return
            name = _SAFE_NAME.sub("_", os.path.basename(filename.decode("utf-8", "replace"))) if filename else ""
            ident = uuid.uuid4().hex
            folder = os.path.join(self.root, importer.UPLOADS, ident)
            os.makedirs(folder, exist_ok=True)
            name = name.strip("._") or "upload"
            self.upload = f"{ident}/{name}"
            self._file = open(os.path.join(folder, name), "wb")  # noqa: SIM115 (closed at the part's end)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.write(data[start:end])
        elif self._name is not None:
            self._text.append(data[start:end])
            if sum(map(len, self._text)) > self.MAX_FIELD:
                self.error = f"form field {self._name} is longer than {self.MAX_FIELD} bytes"
                self._text = []

    def _end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._name:
            self.fields[self._name] = b"".join(self._text).decode("utf-8", "replace")

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
        _discard_at(self.root, self.upload)


def _discard_at(root: str, upload: str | None) -> None:
    if upload is not None:
        shutil.rmtree(os.path.join(root, importer.UPLOADS, upload.split("/")[0]), ignore_errors=True)


# -- export -----------------------------------------------------------------------------------------------------
async def export_data(request: Request) -> Response:
    body = await parse_body(request, ExportData)
    parameters = body.model_dump(exclude=body.job_fields(), exclude_none=True)
    if body.order_by is not None:
        parameters["order_by"] = body.order()
    principal = principal_of(request)
    authorize_job(principal, "data_export", parameters)
    db = database(request)
    return JSONResponse(await run_in_threadpool(_submit_export, db, body, parameters, principal.key_id))


def _submit_export(db: Database, body: ExportData, parameters: dict[str, Any], owner: str | None) -> JobInfo:
    formats = db.registry.formats()
    fmt = exporter.format_of(formats, body.format)
    exporter.check_export_options(body.format, fmt, body.options)
    record = db.catalog.get_table(body.table_name)  # TableNotFound: 404
    plan_scan(record.schema, record.shards, body.columns, body.where, body.order(), body.limit)
    return _submit(db, "data_export", parameters, body, owner)


async def download_export(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    db = database(request)
    path, name = await run_in_threadpool(_download, db, request, job_id)
    return FileResponse(path, filename=name, media_type="application/octet-stream")


def _download(db: Database, request: Request, job_id: str) -> tuple[str, str]:
    try:
        job = db.jobs.get(job_id)
    except JobNotFound:
        raise ExportNotFound(job_id) from None
    if job.record.job_type != "data_export":
        raise ExportNotFound(job_id, "that job is not an export")
    rule = rule_for("GET", "/batch/exports/{job_id}/download")
    authorize_job_access(principal_of(request), rule, job_id, job.record.owner_key)
    if job.record.status != "completed":
        raise ExportNotFound(job_id, f"the export is {job.record.status}, not completed")
    return exporter.download(db.root, job_id)


# -- streaming --------------------------------------------------------------------------------------------------
async def stream_rows(request: Request) -> Response:
    body = await parse_body(request, StreamData)
    db = database(request)
    principal = principal_of(request)
    gate = request.app.state.gate
    decision = gate.take(principal, "streams")
    if decision is not None and not decision.allowed:
        raise gate.refuse(decision)
    try:
        table = await run_in_threadpool(db.table, request.path_params["table"])
        scan = await run_in_threadpool(table.scan, body.columns, body.where, body.order())
        schema = table.schema
        enc = encoder(
            body.format,
            scan.schema,
            json_columns=[c for c in schema.json_columns if c in scan.schema.names],
            include_headers=body.include_headers,
            compression=body.compression,
        )
    except BaseException:
        if decision is not None:
            gate.limits.release(principal.key_id, "streams")
        raise

    async def chunks() -> AsyncIterator[bytes]:
        batches: Iterator[pa.RecordBatch] = rebatch(scan, body.chunk_size)
        try:
            yield enc.begin()
            while True:
                chunk = await run_in_threadpool(_next_chunk, batches, enc)
                if chunk is None:
                    break
                yield chunk
            yield enc.end()
        finally:  # also when the client went away and this task was cancelled: nothing here awaits
            if decision is not None:
                gate.limits.release(principal.key_id, "streams")
            scan.close()  # asks the hosts to drop the cursors; does not wait

    headers = {"Content-Encoding": enc.content_encoding} if enc.content_encoding else {}
    return StreamingResponse(chunks(), media_type=enc.media_type, headers=headers)


def _next_chunk(batches: Iterator[pa.RecordBatch], enc: Any) -> bytes | None:
    """The next chunk's bytes (a chunk that encodes to nothing, e.g. gzip's buffer, is joined to the next)."""
    for batch in batches:
        data: bytes = enc.encode(batch)
        if data:
            return data
    return None
