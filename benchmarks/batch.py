"""Issue 3's figures, over REST against `tessera serve` on 127.0.0.1, each with its baseline in the same run.

    python -m benchmarks batch

1. 1,000 single-row upserts across 4 shards in one transactional batch  vs  1,000 separate PUT /rows/{id}
2. a small transactional batch (2 operations) over REST: median latency  (target < 15 ms)
3. the transfer workload (2 expression updates + a ledger insert) in batches/s with 1 and 8 clients
4. the small batch of 2 on shards of --large-rows rows each  vs  the same on 16-row shards (a point write should
   not cost more on a large shard)
"""

from __future__ import annotations

import argparse
import itertools
import random
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson

from benchmarks.common import Figure, Server, report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--upserts", type=int, default=1000)
    p.add_argument("--latency-samples", type=int, default=200)
    p.add_argument("--transfer-seconds", type=float, default=15.0)
    p.add_argument("--large-rows", type=int, default=500_000, help="rows per shard for figure 4")


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    server = Server(str(work / "data"), "--shards", "4").wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            small = small_batch(http, args.latency_samples)
            figures = [upserts(http, args.upserts), small]
            figures += transfers(server.url, args.transfer_seconds)
            figures.append(large_shards(http, args.latency_samples, args.large_rows, small))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    report("batch", figures, vars(args))
    return 0


def _moves(table: str, src: int, dst: int, amount: int) -> list[dict]:
    """The two expression updates of a transfer: debit ``src``, credit ``dst``."""
    return [
        {
            "operation": "update",
            "table": table,
            "where": {"id": src},
            "set": {"balance": {"expr": f"balance - {amount}"}},
        },
        {
            "operation": "update",
            "table": table,
            "where": {"id": dst},
            "set": {"balance": {"expr": f"balance + {amount}"}},
        },
    ]


def upserts(http: httpx.Client, n: int) -> Figure:
    print(f"[1/4] {n} single-row upserts: one batch vs {n} PUT requests")
    schema = {"columns": {"id": "int", "name": "string", "price": "float"}}
    http.post("/tables", json={"name": "items", "schema": schema, "primary_key": "id", "shards": 4}).raise_for_status()
    http.post(
        "/tables/items/rows/batch", json={"rows": [{"id": i, "name": "x", "price": 1.0} for i in range(n)]}
    ).raise_for_status()
    start = time.perf_counter()
    for i in range(n):
        http.put(f"/tables/items/rows/{i}", json={"data": {"price": 2.0}}).raise_for_status()
    separate = time.perf_counter() - start
    ops = [{"operation": "upsert", "table": "items", "data": {"id": i, "name": "y", "price": 3.0}} for i in range(n)]
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        r = http.post("/batch/operations", json={"operations": ops, "return_results": False})
        runs.append(time.perf_counter() - start)
        assert r.json()["committed"], r.text
    batch = statistics.median(runs)
    figure = Figure(
        f"{n} upserts in one batch (4 shards)", n / batch, "rows/s", n / separate, f"{n} separate PUTs", ">= 20x"
    )
    figure.ok = (figure.ratio or 0) >= 20
    figure.extra = {"batch_seconds": batch, "separate_seconds": separate}
    return figure


def small_batch(http: httpx.Client, samples: int) -> Figure:
    print(f"[2/4] small transactional batch (2 operations), {samples} samples")
    lat = _batch_latencies(http, "acc", 64, samples)
    figure = Figure("small transactional batch, median", statistics.median(lat), "ms", None, "", "< 15 ms")
    figure.ok = figure.value < 15
    figure.extra = {"p90_ms": sorted(lat)[int(len(lat) * 0.9)]}
    return figure


def large_shards(http: httpx.Client, samples: int, rows_per_shard: int, small: Figure) -> Figure:
    print(f"[4/4] the same small batch on 4 shards of {rows_per_shard:,} rows")
    lat = _batch_latencies(http, "large", 4 * rows_per_shard, samples)
    figure = Figure(
        f"small batch on {rows_per_shard:,}-row shards, median",
        statistics.median(lat),
        "ms",
        small.value,
        "on 16-row shards",
        "reported",
    )
    figure.extra = {"p90_ms": sorted(lat)[int(len(lat) * 0.9)]}
    return figure


def _batch_latencies(http: httpx.Client, table: str, rows: int, samples: int) -> list[float]:
    """Milliseconds per 2-operation transfer batch between random accounts of a new ``rows``-row table."""
    schema = {"columns": {"id": "int", "balance": "int"}}
    http.post("/tables", json={"name": table, "schema": schema, "primary_key": "id", "shards": 4}).raise_for_status()
    for start in range(0, rows, 50_000):
        chunk = [{"id": i, "balance": 1000} for i in range(start, min(rows, start + 50_000))]
        http.post(
            f"/tables/{table}/rows/batch",
            content=orjson.dumps({"rows": chunk}),
            headers={"content-type": "application/json"},
        ).raise_for_status()
    lat = []
    for k in range(samples + 10):
        a, b = random.sample(range(rows), 2)
        body = {"operations": _moves(table, a, b, 1)}
        start = time.perf_counter()
        http.post("/batch/operations", json=body).raise_for_status()
        if k >= 10:
            lat.append((time.perf_counter() - start) * 1000)
    return lat


def transfers(url: str, seconds: float) -> list[Figure]:
    print(f"[3/4] transfer workload, {seconds:.0f} s each with 1 and 8 clients")
    with httpx.Client(base_url=url, timeout=120) as http:
        for name, cols in (
            ("accounts", {"id": "int", "balance": "int"}),
            ("ledger", {"id": "int", "src": "int", "dst": "int", "amount": "int"}),
        ):
            http.post(
                "/tables", json={"name": name, "schema": {"columns": cols}, "primary_key": "id", "shards": 4}
            ).raise_for_status()
        http.post(
            "/tables/accounts/rows/batch", json={"rows": [{"id": i, "balance": 10**6} for i in range(1000)]}
        ).raise_for_status()
    ids = itertools.count()
    lock = threading.Lock()

    def rate(clients: int) -> float:
        done = [0]
        deadline = time.monotonic() + seconds

        def client(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=url, timeout=120) as http:
                while time.monotonic() < deadline:
                    with lock:
                        tid = next(ids)
                    src, dst = rng.sample(range(1000), 2)
                    ops = [
                        *_moves("accounts", src, dst, 5),
                        {
                            "operation": "insert",
                            "table": "ledger",
                            "data": {"id": tid, "src": src, "dst": dst, "amount": 5},
                        },
                    ]
                    assert http.post("/batch/operations", json={"operations": ops}).json()["committed"]
                    with lock:
                        done[0] += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return done[0] / (time.perf_counter() - start)

    one, eight = rate(1), rate(8)
    return [
        Figure("transfer batches, 1 client", one, "batches/s", None, "", "reported"),
        Figure("transfer batches, 8 clients", eight, "batches/s", one, "1 client", "reported"),
    ]
