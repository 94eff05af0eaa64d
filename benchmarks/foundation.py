"""Issue 2's figures, each measured against the raw library on the same data in the same run.

    python -m benchmarks foundation --rows 1000000

1. Python-client bulk insert of an Arrow table   vs  ``lance.write_dataset`` appending the same table
2. REST ``POST /rows/batch``, 10,000 rows each   (target: >= 200,000 rows/s end to end)
3. Query of all rows through the client as Arrow vs  a direct Lance scan of the same rows
4. REST point lookup by primary key              (target: median < 5 ms)
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

from benchmarks.common import COLUMNS, Figure, Server, make_table, report, timed


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--batch", type=int, default=10_000, help="rows per REST batch request")
    p.add_argument("--lookups", type=int, default=500)
    p.add_argument("--clients", type=int, default=4, help="concurrent clients for the REST batch figure")
    p.add_argument("--repeat", type=int, default=3)


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    try:
        figures = client_figures(args, work) + rest_figures(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report("foundation", figures, {"rows": args.rows, "shards": args.shards, "batch": args.batch})
    return 0


def client_figures(args: argparse.Namespace, work: Path) -> list[Figure]:
    import lance
    import ray

    import engine

    data = make_table(args.rows)
    print(f"[1/4] bulk insert of {args.rows:,} rows: Tessera client vs lance.write_dataset (median of {args.repeat})")
    n = [0]

    def raw_append() -> None:
        n[0] += 1
        lance.write_dataset(data, str(work / f"raw-{n[0]}.lance"), mode="append")

    raw_s, _ = timed(raw_append, args.repeat)
    db = engine.connect(data_dir=str(work / "client"), maintenance_seconds=0)
    tables = iter(range(100))

    def engine_insert() -> None:
        db.create_table(f"bulk{next(tables)}", COLUMNS, primary_key="id", shards=args.shards).insert(data)

    db.create_table("warmup", COLUMNS, primary_key="id", shards=args.shards).insert(data.slice(0, 1000))
    eng_s, _ = timed(engine_insert, args.repeat)
    insert = Figure(
        "client bulk insert (Arrow)",
        args.rows / eng_s,
        "rows/s",
        args.rows / raw_s,
        "lance.write_dataset append",
        ">= 0.5x",
    )
    insert.ok = (insert.ratio or 0) >= 0.5

    print("[2/4] query all rows as Arrow: Tessera client vs direct Lance scan")
    table = db.table("bulk0")
    raw_ds = lance.dataset(str(work / "raw-1.lance"))
    raw_scan, _ = timed(lambda: raw_ds.to_table(), args.repeat + 2)
    eng_scan, _ = timed(lambda: table.to_arrow(), args.repeat + 2)
    assert table.to_arrow().num_rows == args.rows
    scan = Figure(
        "client query of all rows (Arrow)",
        args.rows / eng_scan,
        "rows/s",
        args.rows / raw_scan,
        "lance to_table()",
        ">= 0.5x",
    )
    scan.ok = (scan.ratio or 0) >= 0.5
    db.close()
    ray.shutdown()
    return [insert, scan]


def rest_figures(args: argparse.Namespace, work: Path) -> list[Figure]:
    print("[3/4] REST POST /rows/batch: starting `tessera serve`")
    server = Server(str(work / "rest"), "--shards", str(args.shards)).wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            r = http.post(
                "/tables",
                json={"name": "items", "schema": {"columns": COLUMNS}, "primary_key": "id", "shards": args.shards},
            )
            r.raise_for_status()
            data = make_table(args.rows)
            bodies = [
                orjson.dumps({"rows": data.slice(i, args.batch).to_pylist()}) for i in range(0, args.rows, args.batch)
            ]
            headers = {"content-type": "application/json"}
            http.post(
                "/tables/items/rows/batch",
                content=orjson.dumps({"rows": make_table(10, start=-10).to_pylist()}),
                headers=headers,
            )
            half = len(bodies) // 2
            start = time.perf_counter()
            for body in bodies[:half]:
                http.post("/tables/items/rows/batch", content=body, headers=headers).raise_for_status()
            one_client = half * args.batch / (time.perf_counter() - start)
            start = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:  # a loader keeps a few requests in flight
                posted = pool.map(
                    lambda b: http.post("/tables/items/rows/batch", content=b, headers=headers), bodies[half:]
                )
                for r in posted:
                    r.raise_for_status()
            many = (len(bodies) - half) * args.batch / (time.perf_counter() - start)
            assert http.get("/tables/items/rows/count").json()["row_count"] == args.rows + 10
            name = f"REST batch insert, {args.clients} clients ({args.batch:,} rows/req)"
            batch = Figure(name, many, "rows/s", one_client, "1 client", ">= 200,000")
            batch.ok = batch.value >= 200_000
            batch.extra = {
                "request_bodies_encoded_before_timing": True,
                "requests": len(bodies),
                "one_client_rows_per_s": one_client,
            }

            print(f"[4/4] REST point lookups by primary key ({args.lookups})")
            keys = [random.randrange(args.rows) for _ in range(args.lookups)]
            for k in keys[:20]:
                http.get(f"/tables/items/rows/{k}").raise_for_status()
            lat: list[float] = []
            for k in keys:
                s = time.perf_counter()
                r = http.get(f"/tables/items/rows/{k}")
                lat.append((time.perf_counter() - s) * 1000)
                r.raise_for_status()
            lookup = Figure("REST point lookup by key (median)", statistics.median(lat), "ms", None, "", "< 5 ms")
            lookup.ok = lookup.value < 5
            lookup.extra = {"p90_ms": sorted(lat)[int(len(lat) * 0.9)], "p99_ms": sorted(lat)[int(len(lat) * 0.99)]}
            return [batch, lookup]
    finally:
        server.stop()
