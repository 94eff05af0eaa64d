"""Issue 14's figures: imports, exports and streams against the best readers and writers, in one run.

    python -m benchmarks transfer                       # 10,000,000 rows, 2 shards
    python -m benchmarks transfer --rows 1000000 --rounds 3

1. CSV import of ``--rows`` rows (5 columns) into a 2-shard table with validation rules on
   (``table.import_file``: the ``data_import`` job's code, in this process) against ``polars.read_csv`` +
   ``lance.write_dataset`` of the same file. Target: at most 2.5x. This process's peak RSS growth is reported.
2. Parquet import of the same rows against ``pyarrow.parquet.read_table`` + ``lance.write_dataset``. Target 2x.
3. Parquet export (``table.export``, snappy like the baseline) against ``pyarrow.parquet.write_table`` of the same
   rows, already in memory.
   Target: at least 0.5x the baseline's speed (a time ratio of at most 2x).
4. Streaming jsonl over HTTP (``POST /batch/stream/{t}``, chunks of 10,000 rows, read by an httpx client) against
   a bare Starlette ``StreamingResponse`` of polars ``write_ndjson`` chunks of the rows in memory, both served by
   uvicorn from a thread of this process. Target: at least 0.5x (time ratio at most 2x). The server's RSS
   growth during the stream is reported (target under 200 MB).
5. Arrow IPC stream of the same rows against the jsonl stream. Target: at least 5x faster.

Every timing is the median of ``--rounds`` runs, in ms (the tables are emptied between import rounds).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import polars as pl
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.auth import print_load
from benchmarks.common import Figure, report

TABLE = "transfer_bench"
COLUMNS = {"id": "int", "name": "string", "price": "float", "quantity": "int", "day": "date"}
RULES = {"price": {"min": 0, "max": 1000}, "quantity": {"min": 0}, "name": {"max_length": 40}}
CHUNK = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--shards", type=int, default=2)


def rows_table(n: int) -> pa.Table:
    rng = np.random.default_rng(0)
    ids = np.arange(n, dtype=np.int64)
    days = (np.datetime64("2020-01-01") + rng.integers(0, 2000, n)).astype("datetime64[D]")
    return pa.table(
        {
            "id": ids,
            "name": pa.array(np.char.add("item-", ids.astype(str)).tolist(), pa.string()),
            "price": rng.random(n) * 100,
            "quantity": rng.integers(0, 1000, n),
            "day": pa.array(days, pa.date32()),
        }
    )


class PeakRss:
    """This process's RSS growth at its peak while the block runs (sampled every 50 ms)."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = 0

    def __enter__(self) -> PeakRss:
        self.start = self.process.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss - self.start)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss - self.start)


def median_of(rounds: int, fn: Callable[[], Any], reset: Callable[[], Any] | None = None) -> float:
    runs = []
    for _ in range(rounds):
        if reset is not None:
            reset()
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return 1000 * statistics.median(runs)  # ms


def run(args: argparse.Namespace) -> int:
    import lance

    import engine
    from service import create_app
    from service.background import live_server

    load_start = os.getloadavg()
    work = tempfile.mkdtemp(prefix="tessera-transfer-")
    figures: list[Figure] = []
    try:
        data = rows_table(args.rows)
        csv_path, parquet_path = os.path.join(work, "rows.csv"), os.path.join(work, "rows.parquet")
        pl.from_arrow(data).write_csv(csv_path)  # type: ignore[union-attr]
        pq.write_table(data, parquet_path)
        print(
            f"{args.rows:,} rows: CSV {os.path.getsize(csv_path) / 2**20:,.0f} MB, Parquet "
            f"{os.path.getsize(parquet_path) / 2**20:,.0f} MB"
        )
        db = engine.connect(data_dir=os.path.join(work, "data"), num_cpus=2, maintenance_seconds=0)
        try:
            table = db.create_table(TABLE, COLUMNS, primary_key="id", shards=args.shards)

            def lance_of(read: Callable[[], Any]) -> Callable[[], None]:
                def go() -> None:
                    target = os.path.join(work, "baseline.lance")
                    shutil.rmtree(target, ignore_errors=True)
                    frame = read()
                    lance.write_dataset(frame if isinstance(frame, pa.Table) else frame.to_arrow(), target)

                return go

            # 1. CSV import
            base = median_of(args.rounds, lance_of(lambda: pl.read_csv(csv_path)))
            imported: dict[str, Any] = {}
            with PeakRss() as rss:
                ours = median_of(
                    args.rounds,
                    lambda: imported.update(table.import_file(csv_path, validation_rules=RULES, batch_size=10_000)),
                    table.delete,
                )
            assert imported["rows_imported"] == args.rows, imported
            figures.append(
                Figure(
                    f"CSV import, {args.rows:,} rows, rules on",
                    ours,
                    "ms",
                    base,
                    "polars.read_csv + lance.write_dataset",
                    "<= 2.5x",
                    ours <= 2.5 * base,
                    {"peak_rss_growth_mb": round(rss.peak / 2**20)},
                )
            )
            print(f"CSV import peak RSS growth (this process): {rss.peak / 2**20:,.0f} MB")
            # 2. Parquet import
            base = median_of(args.rounds, lance_of(lambda: pq.read_table(parquet_path)))
            ours = median_of(
                args.rounds, lambda: imported.update(table.import_file(parquet_path, batch_size=10_000)), table.delete
            )
            assert imported["rows_imported"] == args.rows, imported
            figures.append(
                Figure(
                    f"Parquet import, {args.rows:,} rows",
                    ours,
                    "ms",
                    base,
                    "pq.read_table + lance.write_dataset",
                    "<= 2x",
                    ours <= 2 * base,
                )
            )
            # 3. Parquet export
            out = os.path.join(work, "export.parquet")
            base = median_of(args.rounds, lambda: pq.write_table(data, os.path.join(work, "baseline.parquet")))
            # the baseline's codec (pyarrow's default, snappy); the export's own default is zstd
            ours = median_of(args.rounds, lambda: table.export(out, "parquet", options={"compression": "snappy"}))
            assert pq.read_metadata(out).num_rows == args.rows
            figures.append(
                Figure(
                    f"Parquet export, {args.rows:,} rows",
                    ours,
                    "ms",
                    base,
                    "pq.write_table",
                    "time <= 2x (speed >= 0.5x)",
                    ours <= 2 * base,
                )
            )
            # 4, 5. streams
            settings = db.settings.with_(max_body_bytes=db.settings.max_body_bytes)
            with live_server(create_app(db, settings)) as url, live_server(bare_app(data)) as bare_url:
                base = median_of(args.rounds, lambda: read_stream(f"{bare_url}/stream", None, args.rows))
                with PeakRss() as rss:
                    jsonl = median_of(
                        args.rounds,
                        lambda: read_stream(
                            f"{url}/api/v1/batch/stream/{TABLE}", {"format": "jsonl", "chunk_size": CHUNK}, args.rows
                        ),
                    )
                arrow = median_of(
                    args.rounds,
                    lambda: read_stream(
                        f"{url}/api/v1/batch/stream/{TABLE}", {"format": "arrow", "chunk_size": CHUNK}, args.rows
                    ),
                )
            figures.append(
                Figure(
                    f"jsonl stream over HTTP, {args.rows:,} rows",
                    jsonl,
                    "ms",
                    base,
                    "bare Starlette + polars write_ndjson",
                    "time <= 2x (speed >= 0.5x)",
                    jsonl <= 2 * base,
                    {"server_rss_growth_mb": round(rss.peak / 2**20)},
                )
            )
            figures.append(
                Figure(
                    f"Arrow IPC stream, {args.rows:,} rows",
                    arrow,
                    "ms",
                    jsonl,
                    "the jsonl stream",
                    "time <= 0.2x (>= 5x faster)",
                    arrow <= 0.2 * jsonl,
                )
            )
            figures.append(
                Figure(
                    "server RSS growth while streaming jsonl",
                    rss.peak / 2**20,
                    "MB",
                    None,
                    "",
                    "< 200 MB",
                    rss.peak < 200 * 2**20,
                )
            )
        finally:
            db.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta = {
        "rows": args.rows,
        "rounds": args.rounds,
        "shards": args.shards,
        "cpus": os.cpu_count(),
        "load_average_at_start": list(load_start),
        "load_average_at_end": list(os.getloadavg()),
    }
    report("transfer", figures, meta)
    print_load(meta)
    return 0


def bare_app(data: pa.Table) -> Any:
    """The baseline: the rows in memory, written by polars as NDJSON chunks, streamed by Starlette."""
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    frame = pl.from_arrow(data)

    def chunks() -> Iterator[bytes]:
        for start in range(0, frame.height, CHUNK):  # type: ignore[union-attr]
            yield frame.slice(start, CHUNK).write_ndjson().encode()  # type: ignore[union-attr]

    async def stream(request: Any) -> StreamingResponse:
        return StreamingResponse(chunks(), media_type="application/x-ndjson")

    return Starlette(routes=[Route("/stream", stream, methods=["POST"])])


def read_stream(url: str, body: dict[str, Any] | None, rows: int) -> int:
    size = 0
    with httpx.stream("POST", url, json=body or {}, timeout=600) as r:
        r.raise_for_status()
        for chunk in r.iter_raw(1 << 20):
            size += len(chunk)
    if size == 0 and rows:
        raise RuntimeError(f"{url} sent nothing")
    return size
