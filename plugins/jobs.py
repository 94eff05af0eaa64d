"""The built-in job types, registered through the plugin registry as any other plugin's would be.

- ``table_recompute`` ``{table_name, column?, where?}``: recompute one computed column, or every stored one in the
  table's order (a column before the columns computed from it). Each column is one transaction: all of it or
  none. Progress moves as each shard's part is staged; a cancel is honoured between shards (the column's write is
  aborted) and between columns. Safe to retry: a recompute from the start gives the same values.
- ``batch_operation`` ``{operations, transaction?, continue_on_error?, return_results?}``: the batch engine, result
  the batch response. It runs under the Idempotency-Key ``job:<id>``, so a run re-queued after a crash that had in
  fact committed returns that first answer instead of applying the batch twice; with ``transaction: true`` it is
  therefore safe to retry.
- ``data_import`` ``{table_name, format, source_url, mapping?, options?, validation_rules?, on_error?,
  batch_size?}`` and ``data_export`` ``{table_name, format, columns?, where?, order_by?, limit?, options?,
  compress?}``: ``engine.transfer``; both safe to retry (an import commits under ``job:<id>``, an export rewrites
  its file).
- ``sleep`` (``custom`` with ``{"type": "sleep", "seconds": s}``): sleeps, reporting progress and honouring a cancel
  within a few tens of milliseconds. For tests, demos and benchmarks; ``"ignore_cancel": true`` makes it sleep
  through a cancel or timeout as a handler stuck in a long call would, so the forced stop can be tried.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from engine.errors import ExportEmpty, JobParameterError
from engine.registry import JobContext, JobType, hookimpl
from engine.transfer import exporter, importer

MAX_SLEEP_SECONDS = 86_400.0


def _parameters(job: JobContext) -> Mapping[str, Any]:
    if not isinstance(job.parameters, Mapping):
        raise JobParameterError("parameters", f"must be an object, not {type(job.parameters).__name__}")
    return job.parameters


def _text(parameters: Mapping[str, Any], name: str, required: bool = True) -> str | None:
    value = parameters.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise JobParameterError(name, "is required: a name (text)" if value is None else "must be a name (text)")
    return value


def _flag(parameters: Mapping[str, Any], name: str, default: bool) -> bool:
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise JobParameterError(name, f"must be true or false, not {value!r}")
    return value


class TableRecompute:
    def retry_safe(self, parameters: Any) -> bool:
        return True

    def run(self, job: JobContext) -> dict[str, Any]:
        parameters = _parameters(job)
        table_name = _text(parameters, "table_name")
        column = _text(parameters, "column", required=False)
        where = parameters.get("where")
        table = job.db.table(table_name)
        columns = [column] if column is not None else [c.name for c in table.schema.computed if c.stored]
        start = time.perf_counter()
        done: list[dict[str, Any]] = []
        for i, name in enumerate(columns):
            job.check_cancelled()
            job.log(f"recomputing {table_name}.{name} ({i + 1} of {len(columns)})")

            def on_shard(staged: int, shards: int, i: int = i) -> None:
                job.progress(100.0 * (i + staged / shards) / len(columns))
                job.check_cancelled()

            outcome = table.recompute(name, where, progress=on_shard)
            job.log(f"{name}: {outcome['rows_recomputed']} rows in {outcome['computation_time_ms']:.0f} ms")
            done.append(outcome)
            job.progress(100.0 * (i + 1) / len(columns))
        return {
            "table_name": table_name,
            "columns": done,
            "rows_recomputed": sum(c["rows_recomputed"] for c in done),
            "errors": sum(c["errors"] for c in done),
            "duration_seconds": round(time.perf_counter() - start, 3),
        }


class BatchOperation:
    def retry_safe(self, parameters: Any) -> bool:
        return isinstance(parameters, Mapping) and parameters.get("transaction", True) is True

    def run(self, job: JobContext) -> dict[str, Any]:
        parameters = _parameters(job)
        operations = parameters.get("operations")
        if not isinstance(operations, list) or not all(isinstance(op, Mapping) for op in operations):
            raise JobParameterError("operations", "is required: a list of operations (objects)")
        transaction = _flag(parameters, "transaction", True)
        continue_on_error = _flag(parameters, "continue_on_error", False)
        return_results = _flag(parameters, "return_results", True)
        job.check_cancelled()
        job.log(f"running {len(operations)} operations ({'one transaction' if transaction else 'one by one'})")
        result = job.db.batch(
            [dict(op) for op in operations],
            transaction=transaction,
            continue_on_error=continue_on_error,
            idempotency_key=f"job:{job.job_id}",
        )
        response: dict[str, Any] = result.to_dict(return_results)
        job.log(f"{response['successful']} succeeded, {response['failed']} failed")
        return response


class DataImport:
    """An import (``engine.transfer.importer``): one transaction under the Idempotency record ``job:<id>``, so a
    run re-queued after a crash that had committed returns the first result: safe to retry."""

    def retry_safe(self, parameters: Any) -> bool:
        return True

    def run(self, job: JobContext) -> dict[str, Any]:
        request = importer.check(_parameters(job), job.db.registry.formats())  # an error names the parameter
        return importer.run(job.db, request, job)


class DataExport:
    """An export (``engine.transfer.exporter``) of one table version to the export area; a re-run writes it anew."""

    def retry_safe(self, parameters: Any) -> bool:
        return True

    def run(self, job: JobContext) -> dict[str, Any]:
        parameters = _parameters(job)
        table_name = str(_text(parameters, "table_name"))
        formats = job.db.registry.formats()
        fmt_name = parameters.get("format")
        fmt = exporter.format_of(formats, fmt_name)
        options = parameters.get("options") or {}
        if not isinstance(options, Mapping):
            raise JobParameterError("options", "must be an object")
        compress = _flag(parameters, "compress", False)
        limit = parameters.get("limit")
        table = job.db.table(table_name)
        scan = table.scan(parameters.get("columns"), parameters.get("where"), parameters.get("order_by"), limit)
        total = scan.rows if limit is None else min(scan.rows, limit)
        if total == 0:
            scan.close()
            raise ExportEmpty(table_name)
        job.log(f"exporting {total} rows of {table_name} as {fmt_name}")

        def on_batch(rows: int) -> None:
            job.progress(min(99.0, 100.0 * rows / total))
            job.check_cancelled()

        done = exporter.write(
            scan,
            str(fmt_name),
            fmt,
            root=job.db.root,
            job_id=job.job_id,
            table=table_name,
            options=options,
            compress=compress,
            ttl_hours=job.db.settings.export_ttl_hours,
            on_batch=on_batch,
        )
        job.log(f"{done.rows} rows, {done.size} bytes, downloadable until {done.expires_at}")
        return done.result(job.job_id)


class Sleep:
    def retry_safe(self, parameters: Any) -> bool:
        return True

    def run(self, job: JobContext) -> dict[str, Any]:
        parameters = _parameters(job)
        seconds = parameters.get("seconds", 0)
        stubborn = _flag(parameters, "ignore_cancel", False)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_SLEEP_SECONDS:
            raise JobParameterError(
                "seconds", f"must be a number of seconds from 0 to {MAX_SLEEP_SECONDS:g}, not {seconds!r}"
            )
        job.log(f"sleeping {seconds:g} s")
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            if not stubborn:
                job.check_cancelled()
            job.progress(100.0 * elapsed / seconds)
            time.sleep(min(0.02, seconds - elapsed))
        return {"slept": float(seconds)}


@hookimpl
def tessera_job_types() -> Mapping[str, JobType]:
    return {
        "table_recompute": TableRecompute(),
        "batch_operation": BatchOperation(),
        "data_import": DataImport(),
        "data_export": DataExport(),
        "sleep": Sleep(),
    }
