"""Issue 12's figures: what an API key costs a request, against the same request without a key in the same run.

    python -m benchmarks auth
    python -m benchmarks auth --requests 6000 --batch-rounds 10     # more samples, about twice as long

Two apps over one ``engine.connect`` database, each served by uvicorn from a thread of this process
(``service.background.live_server``):

- **open**: open mode, called without a key (the anonymous local administrator: not authenticated, not limited,
  not counted);
- **key**: required mode, called with a key that is not an administrator's but has the permissions the routes need
  (``tables`` read/create/delete, ``data`` read/write). Its rate limits are on, so every request goes through the
  token bucket, with limits far above what the run sends (none refuses). It is given ``allowed_hosts``, so both
  apps check the ``Host`` header and their middleware differs only by authentication.

1. Median latency of sequential requests, one client each: ``GET /api/v1/auth/verify`` and ``GET /api/v1/tables``
   (authenticated: the key's HMAC read from SQLite, the route's permission, the limiter, the usage counter), and
   ``GET /api/v1/health`` (public in both modes: what the difference is when auth does nothing, i.e. the noise).
   Target: key at most +0.3 ms over open.
2. REST ``POST /tables/{t}/rows/batch`` throughput, ``--batch`` rows per request from ``--clients`` clients into
   one table, request bodies encoded before timing. Target: key at least 0.95x open.

The two sides alternate in rounds, A B B A A B ..., so that drift (a noisy neighbour, the table growing, a usage
flush) falls on both alike; the latency medians are over every timed request, the throughput is the median of the
rounds. Client and servers share this process (and its GIL), as in the ``udf`` suite's execute figure: absolute
latencies are higher than against ``tessera serve``, the difference is what is measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import numpy as np
import orjson

from benchmarks.common import COLUMNS, Figure, make_table, report

if TYPE_CHECKING:
    import engine

SideName = Literal["open", "key"]
SIDES: tuple[SideName, SideName] = ("open", "key")
TABLE = "items"
ADMIN_KEY = "bench-admin-key-0123456789"  # only ever on this run's temporary data directory
KEY_PERMISSIONS = [
    {"resource": "data", "actions": ["read", "write"]},
    {"resource": "tables", "actions": ["read", "create", "delete"]},
]
ROUTES = {"health": "/health", "verify": "/auth/verify", "tables": "/tables"}
AUTHENTICATED = ("verify", "tables")  # the routes whose difference has the +0.3 ms target
MAX_OVERHEAD_MS = 0.3
MIN_BATCH_RATIO = 0.95
WARMUP = 50
JSON = {"content-type": "application/json"}
NOTES = [
    "client and both servers run in one process (uvicorn threads, one GIL); the difference between sides is the figure",
    "the key side has rate limits on (requests 10,000,000/min, burst 1,000,000) so the limiter runs but never refuses",
    "both apps check the Host header (the key side is given allowed_hosts), so only authentication differs",
    "sides alternate A B B A ...; latency medians over all timed requests, throughput the median of rounds",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--requests", type=int, default=3000, help="timed sequential requests per route and side")
    p.add_argument("--rounds", type=int, default=10, help="rounds the latency requests are split into")
    p.add_argument("--batch", type=int, default=1000, help="rows per REST batch request")
    p.add_argument("--batch-requests", type=int, default=40, help="batch requests per round and side")
    p.add_argument("--batch-rounds", type=int, default=6, help="throughput rounds per side")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients for the batch figure")
    p.add_argument("--shards", type=int, default=2)


@dataclass(frozen=True)
class Side:
    name: SideName
    http: httpx.Client


def run(args: argparse.Namespace) -> int:
    import ray

    import engine

    work = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    meta: dict[str, Any] = vars(args) | {"cpus": os.cpu_count(), "load_average_at_start": list(os.getloadavg())}
    db = engine.connect(data_dir=str(work / "data"), shards=args.shards, maintenance_seconds=0)
    try:
        with serve_both(db) as (open_url, key_url):
            key = create_key(key_url)
            with ExitStack() as stack:
                sides: dict[SideName, Side] = {
                    "open": Side("open", stack.enter_context(httpx.Client(base_url=open_url, timeout=120))),
                    "key": Side(
                        "key",
                        stack.enter_context(
                            httpx.Client(base_url=key_url, timeout=120, headers={"authorization": f"Bearer {key}"})
                        ),
                    ),
                }
                prepare(sides, key_url)
                figures = latency_figures(sides, args.requests, args.rounds)
                figures.append(batch_figure(sides, args))
    finally:
        db.close()
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    meta["load_average_at_end"] = list(os.getloadavg())
    print_load(meta)
    report("auth", figures, meta | {"notes": NOTES})
    return 0


# -- setup -----------------------------------------------------------------------------------------------------
def side_settings(db: engine.Database) -> tuple[engine.Settings, engine.Settings]:
    """(open, key): the database's settings in open mode, and in required mode with high rate limits."""
    opened = replace(db.settings, auth="open", admin_key=None)
    keyed = replace(
        db.settings,
        auth="required",
        admin_key=ADMIN_KEY,
        allowed_hosts=("127.0.0.1",),
        rate_limits="on",  # on, but so far above the run's traffic that none refuses
        rate_limit_requests_per_minute=10_000_000,
        rate_limit_burst=1_000_000,
        rate_limit_batch_per_minute=10_000_000,
    )
    return opened, keyed


@contextmanager
def serve_both(db: engine.Database) -> Iterator[tuple[str, str]]:
    """Both apps on loopback; yields their ``/api/v1`` URLs. Each gate is closed after its server stops (the
    live server runs without lifespan, which is what would close it under ``tessera serve``)."""
    from service import create_app
    from service.background import live_server

    opened, keyed = side_settings(db)
    open_app, key_app = create_app(db, opened), create_app(db, keyed)
    try:
        with live_server(open_app) as open_url, live_server(key_app) as key_url:
            yield f"{open_url}/api/v1", f"{key_url}/api/v1"
    finally:
        open_app.state.gate.close()
        key_app.state.gate.close()


def expect_ok(r: httpx.Response, what: str) -> httpx.Response:
    """The response, or an error naming the request, its status and body (the auth code may be what failed)."""
    if r.status_code != 200:
        raise RuntimeError(f"{what}: {r.status_code} {r.text[:2000]}")
    return r


def create_key(key_url: str) -> str:
    """A non-administrator key with the permissions the timed routes need, made with the administrator key."""
    with httpx.Client(base_url=key_url, timeout=60, headers={"authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        body = {"name": "bench", "permissions": KEY_PERMISSIONS}
        r = expect_ok(admin.post("/auth/api-keys", json=body), "POST /auth/api-keys")
    return str(r.json()["api_key"])


def prepare(sides: dict[SideName, Side], key_url: str) -> None:
    """Create the table and check each side is what it should be: the key side refuses a request without a key and
    answers as the key, the open side answers as the anonymous administrator, both list the table."""
    schema = {"name": TABLE, "schema": {"columns": COLUMNS}, "primary_key": "id"}
    expect_ok(sides["key"].http.post("/tables", json=schema), "POST /tables (key)")
    anonymous = httpx.get(f"{key_url}/auth/verify", timeout=60)
    if anonymous.status_code != 401:
        raise RuntimeError(f"required mode answered a request without a key: {anonymous.status_code} {anonymous.text}")
    for side in sides.values():
        verified = expect_ok(side.http.get("/auth/verify"), f"GET /auth/verify ({side.name})").json()
        if (verified["key_id"] is None) != (side.name == "open"):
            raise RuntimeError(f"GET /auth/verify ({side.name}) answered as {verified}")
        listed = expect_ok(side.http.get("/tables"), f"GET /tables ({side.name})").text
        if TABLE not in listed:
            raise RuntimeError(f"GET /tables ({side.name}) does not list {TABLE!r}: {listed[:500]}")


def order(round_no: int) -> tuple[SideName, SideName]:
    """A B, then B A: which side goes first alternates, so a linear drift within a pair cancels too."""
    return SIDES if round_no % 2 == 0 else (SIDES[1], SIDES[0])


# -- 1. latency ------------------------------------------------------------------------------------------------
def sequential_ms(http: httpx.Client, path: str, n: int, what: str) -> list[float]:
    """Milliseconds of each of ``n`` sequential GETs of ``path``."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        r = http.get(path)
        out.append((time.perf_counter() - start) * 1000)
        expect_ok(r, what)
    return out


def latency_figures(sides: dict[SideName, Side], requests: int, rounds: int) -> list[Figure]:
    per_round = max(1, requests // rounds)
    print(f"[1/2] sequential GETs: {per_round * rounds:,} per route and side, in {rounds} rounds (open / key)")
    lat: dict[str, dict[SideName, list[float]]] = {route: {"open": [], "key": []} for route in ROUTES}
    for path in ROUTES.values():
        for side in sides.values():
            sequential_ms(side.http, path, WARMUP, f"GET {path} ({side.name})")
    for k in range(rounds):
        for route, path in ROUTES.items():
            for name in order(k):
                lat[route][name] += sequential_ms(sides[name].http, path, per_round, f"GET {path} ({name})")
    figures = [latency_figure(route, lat[route]) for route in ROUTES]
    print(f"\n{'GET /api/v1...':16} {'open ms':>9} {'key ms':>9} {'diff ms':>9} {'open p90':>9} {'key p90':>9}")
    for route, path in ROUTES.items():
        o, keyed = lat[route]["open"], lat[route]["key"]
        diff = statistics.median(keyed) - statistics.median(o)
        print(
            f"{path:16} {statistics.median(o):9.3f} {statistics.median(keyed):9.3f} {diff:+9.3f}"
            f" {percentile(o, 90):9.3f} {percentile(keyed, 90):9.3f}"
        )
    return figures


def latency_figure(route: str, lat: dict[SideName, list[float]]) -> Figure:
    path = ROUTES[route]
    keyed, opened = statistics.median(lat["key"]), statistics.median(lat["open"])
    difference = keyed - opened
    authenticated = route in AUTHENTICATED
    figure = Figure(
        f"GET {path} with a key, median",
        keyed,
        "ms",
        opened,
        "open mode, no key",
        f"<= +{MAX_OVERHEAD_MS} ms" if authenticated else "public: reference",
    )
    if authenticated:
        figure.ok = difference <= MAX_OVERHEAD_MS
    figure.extra = {
        "difference_ms": difference,
        "requests_per_side": len(lat["key"]),
        "open_p90_ms": percentile(lat["open"], 90),
        "key_p90_ms": percentile(lat["key"], 90),
        "open_p99_ms": percentile(lat["open"], 99),
        "key_p99_ms": percentile(lat["key"], 99),
    }
    return figure


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


# -- 2. batch insert throughput --------------------------------------------------------------------------------
def encoded_bodies(count: int, rows: int) -> list[bytes]:
    """``count`` request bodies of ``rows`` rows each, with ids no other body has (encoded before any timing)."""
    data = make_table(count * rows)
    return [orjson.dumps({"rows": data.slice(i * rows, rows).to_pylist()}) for i in range(count)]


def insert_rate(http: httpx.Client, bodies: list[bytes], rows: int, clients: int, what: str) -> float:
    """Rows per second of posting ``bodies`` with ``clients`` requests in flight."""
    path = f"/tables/{TABLE}/rows/batch"
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for r in pool.map(lambda body: http.post(path, content=body, headers=JSON), bodies):
            expect_ok(r, what)
    return len(bodies) * rows / (time.perf_counter() - start)


def batch_figure(sides: dict[SideName, Side], args: argparse.Namespace) -> Figure:
    n, rounds = args.batch_requests, args.batch_rounds
    print(
        f"\n[2/2] REST POST /rows/batch: {args.clients} clients, {args.batch:,} rows/req, "
        f"{n} requests per round, {rounds} rounds per side (open / key)"
    )
    warmup = 2
    bodies = iter(encoded_bodies(2 * (rounds * n + warmup), args.batch))
    for side in sides.values():
        insert_rate(side.http, [next(bodies) for _ in range(warmup)], args.batch, args.clients, f"warm-up {side.name}")
    rates: dict[SideName, list[float]] = {"open": [], "key": []}
    for k in range(2 * rounds):  # as many rounds per side: pairs, each side first in every other pair
        name = order(k // 2)[k % 2]
        chunk = [next(bodies) for _ in range(n)]
        rates[name].append(insert_rate(sides[name].http, chunk, args.batch, args.clients, f"POST /rows/batch ({name})"))
    count = expect_ok(sides["open"].http.get(f"/tables/{TABLE}/rows/count"), "GET /rows/count").json()["row_count"]
    expected = 2 * (rounds * n + warmup) * args.batch
    if count != expected:
        raise RuntimeError(f"the table has {count:,} rows after the batch figure, expected {expected:,}")
    keyed, opened = statistics.median(rates["key"]), statistics.median(rates["open"])
    figure = Figure(
        f"REST batch insert with a key, {args.clients} clients",
        keyed,
        "rows/s",
        opened,
        "open mode, no key",
        f">= {MIN_BATCH_RATIO}x",
    )
    figure.ok = (figure.ratio or 0) >= MIN_BATCH_RATIO
    figure.extra = {
        "rows_per_request": args.batch,
        "requests_per_round": n,
        "open_rounds_rows_per_s": rates["open"],
        "key_rounds_rows_per_s": rates["key"],
        "request_bodies_encoded_before_timing": True,
    }
    print(f"rows/s per round  open: {' '.join(f'{r:,.0f}' for r in rates['open'])}")
    print(f"                  key:  {' '.join(f'{r:,.0f}' for r in rates['key'])}")
    return figure


# -- output ----------------------------------------------------------------------------------------------------
def print_load(meta: dict[str, Any]) -> None:
    start, end = (" ".join(f"{x:.2f}" for x in meta[k]) for k in ("load_average_at_start", "load_average_at_end"))
    print(f"\nmachine: {meta['cpus']} CPUs; load average (1, 5, 15 min) at start {start}, at end {end}")
