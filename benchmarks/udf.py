"""Issue 5's figures: user-defined functions, row by row in the sandbox and inlined, each against its baseline in the
same run on the same rows.

    python -m benchmarks udf --rows 1000000 --shards 2
    python -m benchmarks udf --rows 1000000 --keep --json udf.json   # keep the table for the next run

On a table ``{id int (key), price float, qty int}``:

1. Python row by row (the UDF has an ``if``, so it is not inlined): ``recompute`` of a stored ``udf`` column
   ``discount_py(price, 0.2)`` (end to end: the shards, their sandbox workers, the write), and the sandbox alone
   (``SandboxRunner().run`` in this process over the same values), both against the same function defined with plain
   ``exec`` and called in a loop over Python lists in this process (only the loop is timed).
   Targets: >= 1,000,000 rows/s and >= 0.3x the plain loop.
2. JavaScript row by row (also with an ``if``): recompute and the runner alone. Target: >= 1,000,000 rows/s.
3. ``price * (1 - rate)`` as a SQL UDF, an inlined Python UDF and an inlined JavaScript UDF, each a stored column
   ``f(price, 0.2)`` recomputed, against a stored ``expression`` column ``price * (1 - 0.2)`` recomputed the same way.
   Target: >= 0.5x (at most twice the time). The three must be inlined and give the expression column's values.
4. Memoisation: a deterministic row-by-row UDF over ``qty`` (10 distinct values) vs the same UDF not deterministic.
5. ``POST /tables/{t}/udfs/{name}/execute`` on a real uvicorn server in this process (httpx client): median and p95
   of the row-by-row Python UDF, the JavaScript UDF and an inlined one, against ``GET /api/v1/health`` in the same
   run. Target: median < 10 ms.

Timings that are compared with each other run interleaved (round 1 of each, then round 2, ...), so that a noisy
neighbour slows them alike: section 1's recompute, runner and plain loop, section 2's recompute and runner, section 3's
four columns, section 4's two; the median of ``--repeat`` rounds is reported. Sandbox workers are warm before any timing
(adding a stored column computes it once; the runner and the server get warm-up calls).

The generated table is kept in ``--data-dir`` with ``--keep`` and reused by runs with the same
``--rows/--shards/--seed``.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pyarrow as pa

from benchmarks import common
from benchmarks.common import Figure, report
from benchmarks.recompute import READY, Measured, PeakRss, Progress, generate, host_pids

if TYPE_CHECKING:
    import engine
    from sandbox.runner import SandboxRunner

COLUMNS = {"id": "int", "price": "float", "qty": "int"}
TABLE = "bench_udf"
CHECK_ROWS = 1000  # rows of each recomputed column compared with what it should hold
RATE = 0.2
MIN_ROWS_PER_S = 1_000_000
EXECUTE_WARMUP = 20

PRICE_RATE = [{"name": "price", "type": "float"}, {"name": "rate", "type": "float"}]
QTY = [{"name": "qty", "type": "int"}]


@dataclass(frozen=True)
class Definition:
    """A UDF as registered, and the stored column that calls it."""

    name: str
    language: str
    code: str
    parameters: list[dict[str, str]]
    return_type: str
    inlined: bool  # what the engine must decide
    deterministic: bool = False

    @property
    def column(self) -> str:
        return f"col_{self.name}"

    @property
    def call(self) -> str:
        return f"{self.name}(price, {RATE})" if self.parameters == PRICE_RATE else f"{self.name}(qty)"


PY_DISCOUNT = """def discount_py(price, rate):
    if price > 100.0:
        return price * (1 - rate)
    return price
"""
JS_DISCOUNT = """function discount_js(price, rate) {
  if (price > 100.0) {
    return price * (1 - rate);
  }
  return price;
}
"""
TIER = """def {name}(qty):
    if qty > 5:
        return qty * 2
    return qty
"""

PYTHON = Definition("discount_py", "python", PY_DISCOUNT, PRICE_RATE, "float", inlined=False)
JAVASCRIPT = Definition("discount_js", "javascript", JS_DISCOUNT, PRICE_RATE, "float", inlined=False)
SQL = Definition("disc_sql", "sql", "price * (1 - rate)", PRICE_RATE, "float", inlined=True)
PY_INLINE = Definition(
    "disc_py_inline",
    "python",
    "def disc_py_inline(price, rate):\n    return price * (1 - rate)\n",
    PRICE_RATE,
    "float",
    True,
)
JS_INLINE = Definition(
    "disc_js_inline",
    "javascript",
    "function disc_js_inline(price, rate) { return price * (1 - rate); }",
    PRICE_RATE,
    "float",
    True,
)
DETERMINISTIC = Definition("tier_det", "python", TIER.format(name="tier_det"), QTY, "int", False, deterministic=True)
NOT_DETERMINISTIC = Definition("tier_nd", "python", TIER.format(name="tier_nd"), QTY, "int", False)
DEFINITIONS = (PYTHON, JAVASCRIPT, SQL, PY_INLINE, JS_INLINE, DETERMINISTIC, NOT_DETERMINISTIC)
INLINED = {SQL.name: "SQL UDF", PY_INLINE.name: "inlined Python UDF", JS_INLINE.name: "inlined JS UDF"}
EXPRESSION_COLUMN, EXPRESSION = "col_expression", f"price * (1 - {RATE})"

NOTES = (
    "plain Python loop: the UDF's code run with exec() in this process, [f(p, r) for p, r in zip(prices, rates)] "
    "over Python lists of the same values; only the loop is timed (not the conversion to lists).",
    "sandbox runner alone: sandbox.runner.SandboxRunner().run(udf, [price, rate], n) in this process, Arrow in and "
    "out, with the engine's default limits (batches of 16,384 rows, one worker busy at a time).",
    "recompute: Table.recompute(column) of a stored udf column over every row: shards read, call the sandbox workers "
    "of their host, write the column back.",
    "timings compared with each other run interleaved (recompute, runner alone and plain loop; the columns of "
    "section 3; the two of section 4), --repeat rounds, medians reported.",
    "execute: POST /api/v1/tables/{t}/udfs/{name}/execute on uvicorn in this process, one client, sequential calls.",
    "peak RSS: this process + the shard hosts + their sandbox workers + this process's sandbox workers, sampled "
    "every 0.1 s, one figure per interleaved group.",
    "targets are set for 1,000,000 rows on 2 shards.",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5, help="runs per timing (interleaved rounds); the median is reported")
    p.add_argument("--calls", type=int, default=200, help="execute calls timed per UDF")
    p.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows per insert while generating")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "tessera-bench-udf"))
    p.add_argument("--keep", action="store_true", help="keep the generated table in --data-dir for the next run")
    p.add_argument("--json", help="also write the report to this file")


def run(args: argparse.Namespace) -> int:
    import ray

    import engine
    from sandbox.runner import SandboxRunner

    progress = Progress()
    store = Path(args.data_dir) / f"udf-r{args.rows}-s{args.shards}-seed{args.seed}"
    reused = (store / READY).exists()
    if not reused:
        shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {k: getattr(args, k) for k in ("rows", "shards", "seed", "repeat", "calls")}
    meta |= {"cpus": os.cpu_count(), "load_average_at_start": list(os.getloadavg())}
    db = engine.connect(data_dir=str(store / "engine"), shards=args.shards, maintenance_seconds=0)
    runner = SandboxRunner(**db.settings.udf_limits())
    figures: list[Figure] = []
    details: list[tuple[str, Measured]] = []
    try:
        table, meta["data"] = prepare(db, store, args, reused, progress)
        clean(table)
        register(table, progress)
        values = read_values(table)
        sections: list[Callable[[], list[Figure]]] = [
            lambda: python_figures(db, table, runner, values, args, details, progress),
            lambda: javascript_figures(db, table, runner, values, args, details, progress),
            lambda: inlined_figures(db, table, args, details, progress),
            lambda: memo_figures(db, table, args, details, progress),
            lambda: execute_figures(db, args, progress),
        ]
        for section in sections:
            figures += section()
        if args.keep:
            clean(table)
    finally:
        runner.close()
        db.close()
        ray.shutdown()
        if not (reused or args.keep):
            shutil.rmtree(store, ignore_errors=True)
    meta["load_average_at_end"] = list(os.getloadavg())
    print_details(details, args.rows)
    print_ratios(figures)
    print("\nnotes:\n" + "\n".join(f"  - {n}" for n in NOTES))
    report("udf", figures, meta | {"notes": NOTES})
    if args.json:
        Path(args.json).write_text((common.RESULTS / "udf.json").read_text())
        print(f"written {args.json}")
    return 0


# -- data ----------------------------------------------------------------------------------------------------
def make_chunk(start: int, rows: int, seed: int) -> pa.Table:
    """Rows ``start .. start + rows``: prices in [0, 200) (half of them take the ``if``), qty in 1..10."""
    rng = np.random.default_rng([seed, start])
    return pa.table(
        {
            "id": pa.array(np.arange(start, start + rows, dtype=np.int64)),
            "price": rng.random(rows) * 200,
            "qty": rng.integers(1, 11, rows),
        }
    )


def prepare(
    db: engine.Database, store: Path, args: argparse.Namespace, reused: bool, progress: Progress
) -> tuple[engine.Table, dict[str, Any]]:
    return generate(db, store, args, reused, progress, name=TABLE, columns=COLUMNS, make=make_chunk)


def clean(table: engine.Table) -> None:
    """No computed columns or UDFs left from an earlier run on a kept table (columns first: they call the UDFs)."""
    for column in reversed(table.computed_columns()):
        table.drop_computed_column(column["name"])
    for udf in table.udfs():
        table.drop_udf(udf["name"])


def register(table: engine.Table, progress: Progress) -> None:
    """Register every UDF; the engine must inline exactly the ones meant to be inlined."""
    with progress.step(f"registering {len(DEFINITIONS)} UDFs"):
        for d in DEFINITIONS:
            info = table.register_udf(
                d.name, d.language, d.code, d.parameters, d.return_type, deterministic=d.deterministic
            )
            if info["inlined"] is not d.inlined:
                raise RuntimeError(f"UDF {d.name} ({d.language}): inlined is {info['inlined']}, expected {d.inlined}")
    progress.say("  inlined: " + ", ".join(f"{d.name}={table.udf(d.name)['inlined']}" for d in DEFINITIONS))


@dataclass
class Values:
    """The table's price column (every row), as the runner and the plain loop get it."""

    price: pa.Array
    rate: pa.Array

    @property
    def rows(self) -> int:
        return len(self.price)


def read_values(table: engine.Table) -> Values:
    price = table.query(select=["price"]).rows.column("price").combine_chunks()
    return Values(price, pa.array(np.full(len(price), RATE)))


def plain_function(d: Definition) -> Callable[..., Any]:
    namespace: dict[str, Any] = {}
    exec(d.code, namespace)  # the benchmark's own code, as the baseline: no sandbox
    return namespace[d.name]


# -- measuring -----------------------------------------------------------------------------------------------
def engine_pids(db: engine.Database) -> list[int]:
    """This process, the shard hosts and their children (the hosts' sandbox workers)."""
    import psutil

    hosts = host_pids(db)
    children = [c.pid for h in hosts for c in psutil.Process(h).children()]
    return [os.getpid(), *hosts, *children]


def add_columns(table: engine.Table, columns: dict[str, tuple[str, str]], progress: Progress) -> dict[str, float]:
    """Add stored computed columns (name: (type, expression)); computing them warms the shards' sandbox workers."""
    seconds = {}
    for name, (kind, expression) in columns.items():
        with progress.step(f"add_computed_column {name} = {expression} (computes every row: warm-up)"):
            start = time.perf_counter()
            table.add_computed_column(name, kind, expression, cache_results=True)
            seconds[name] = time.perf_counter() - start
    return seconds


def interleaved(
    steps: dict[str, Callable[[], object]], rounds: int, pids: Sequence[int], progress: Progress
) -> dict[str, Measured]:
    """``rounds`` rounds of one run of each step, one after the other (a noisy neighbour slows them alike); a
    Measured per step, all with the peak RSS of ``pids`` over the whole group."""
    runs: dict[str, list[float]] = {label: [] for label in steps}
    with progress.step(f"{', '.join(steps)}: {rounds} rounds, interleaved"), PeakRss(pids) as mem:
        for _ in range(rounds):
            for label, step in steps.items():
                start = time.perf_counter()
                step()
                runs[label].append(time.perf_counter() - start)
    return {
        label: Measured(label, statistics.median(r), r, mem.peak_mb, mem.peak_mb - mem.start_mb)
        for label, r in runs.items()
    }


def recompute_step(table: engine.Table, column: str) -> Callable[[], None]:
    def step() -> None:
        result = table.recompute(column)
        if result["errors"]:
            raise RuntimeError(f"recompute of {column} reported {result['errors']} errors")

    return step


def recompute_rounds(
    db: engine.Database, table: engine.Table, columns: Sequence[str], rounds: int, progress: Progress
) -> dict[str, Measured]:
    return interleaved({c: recompute_step(table, c) for c in columns}, rounds, engine_pids(db), progress)


class RunnerStep:
    """``runner.run`` of a UDF over every row in this process; warm (a worker started, the UDF compiled) once built."""

    def __init__(self, runner: SandboxRunner, db: engine.Database, d: Definition, values: Values) -> None:
        udf = db.catalog.get_table(TABLE).schema.udf(d.name)
        assert udf is not None
        self.runner, self.udf, self.values = runner, udf, values
        self.arrays = [values.price, values.rate]
        runner.run(udf, [a.slice(0, 1000) for a in self.arrays], 1000)
        self.result: Any = None

    def __call__(self) -> None:
        self.result = self.runner.run(self.udf, self.arrays, self.values.rows)

    def check(self) -> None:
        """Every row computed, and the first ones equal to the plain function's."""
        name, rows = self.udf.name, self.values.rows
        if self.result.errors.null_count != rows:
            raise RuntimeError(f"runner {name}: {rows - self.result.errors.null_count} rows failed")
        f = plain_function(PYTHON)  # the JavaScript UDF is the Python one, translated
        got = self.result.values.slice(0, CHECK_ROWS).to_pylist()
        check_same(f"runner {name}", got, [f(p, RATE) for p in self.values.price.slice(0, CHECK_ROWS).to_pylist()])


def plain_loop(values: Values) -> Callable[[], object]:
    """The baseline: the function without a sandbox, over Python lists made beforehand."""
    f = plain_function(PYTHON)
    prices, rates = values.price.to_pylist(), values.rate.to_pylist()
    return lambda: [f(p, r) for p, r in zip(prices, rates, strict=True)]


def column_values(table: engine.Table, columns: Sequence[str]) -> pa.Table:
    return table.query(select=["id", "price", "qty", *columns], limit=CHECK_ROWS).rows


def check_same(what: str, got: list[Any], want: list[Any]) -> None:
    """A fast wrong answer is no figure."""
    if len(got) != len(want) or not got:
        raise RuntimeError(f"{what}: {len(got)} values to check against {len(want)}")
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        same = g is not None and w is not None and math.isclose(g, w, rel_tol=1e-12, abs_tol=1e-12)
        if not same:
            raise RuntimeError(f"{what}: wrong value at row {i}: {g!r}, expected {w!r}")


def check_column(table: engine.Table, d: Definition) -> None:
    rows = column_values(table, [d.column])
    f = plain_function(d if d.language == "python" else PYTHON)  # the JavaScript UDF is the Python one, translated
    if d.parameters == PRICE_RATE:
        want = [f(p, RATE) for p in rows.column("price").to_pylist()]
    else:
        want = [f(q) for q in rows.column("qty").to_pylist()]
    check_same(f"column {d.column}", rows.column(d.column).to_pylist(), want)


def drop_columns(table: engine.Table, columns: Sequence[str]) -> None:
    for column in columns:
        try:
            table.drop_computed_column(column)
        except Exception as exc:  # a column left behind would make the next add fail: say so, loudly
            print(f"warning: could not drop computed column {column!r}: {exc}")


def rows_figure(
    name: str, rows: int, m: Measured, baseline: Measured | None, baseline_name: str, target: str, min_ratio: float
) -> Figure:
    f = Figure(name, rows / m.seconds, "rows/s", rows / baseline.seconds if baseline else None, baseline_name, target)
    f.ok = f.value >= MIN_ROWS_PER_S and (not min_ratio or (f.ratio or 0) >= min_ratio)
    return f


# -- the sections ----------------------------------------------------------------------------------------------
def python_figures(
    db: engine.Database,
    table: engine.Table,
    runner: SandboxRunner,
    values: Values,
    args: argparse.Namespace,
    details: list[tuple[str, Measured]],
    progress: Progress,
) -> list[Figure]:
    progress.say(f"[1/5] Python row by row: {PYTHON.call}, the sandbox runner alone, a plain Python loop")
    recompute, alone, plain = "recompute", "runner alone", "plain Python loop"
    try:
        added = add_columns(table, {PYTHON.column: ("udf", PYTHON.call)}, progress)
        runner_step = RunnerStep(runner, db, PYTHON, values)
        steps: dict[str, Callable[[], object]] = {
            recompute: recompute_step(table, PYTHON.column),
            alone: runner_step,
            plain: plain_loop(values),
        }
        m = interleaved(steps, args.repeat, [*engine_pids(db), *runner.pool.pids()], progress)
        check_column(table, PYTHON)
        runner_step.check()
    finally:
        drop_columns(table, [PYTHON.column])
    details += [(f"python: {label}", m[label]) for label in steps]
    target = ">= 1M rows/s, >= 0.3x"
    figures = [
        rows_figure("Python UDF: recompute (row by row)", args.rows, m[recompute], m[plain], plain, target, 0.3),
        rows_figure("Python UDF: sandbox runner alone", values.rows, m[alone], m[plain], plain, target, 0.3),
    ]
    figures[0].extra = {
        "code": PYTHON.code,
        "add_computed_column_s": added[PYTHON.column],
        **_ms(m[recompute], m[plain]),
    }
    figures[1].extra = {"code": PYTHON.code, **_ms(m[alone], m[plain])}
    return figures


def javascript_figures(
    db: engine.Database,
    table: engine.Table,
    runner: SandboxRunner,
    values: Values,
    args: argparse.Namespace,
    details: list[tuple[str, Measured]],
    progress: Progress,
) -> list[Figure]:
    progress.say(f"[2/5] JavaScript row by row: {JAVASCRIPT.call}, the sandbox runner alone")
    recompute, alone = "recompute", "runner alone"
    try:
        added = add_columns(table, {JAVASCRIPT.column: ("udf", JAVASCRIPT.call)}, progress)
        runner_step = RunnerStep(runner, db, JAVASCRIPT, values)
        steps: dict[str, Callable[[], object]] = {
            recompute: recompute_step(table, JAVASCRIPT.column),
            alone: runner_step,
        }
        m = interleaved(steps, args.repeat, [*engine_pids(db), *runner.pool.pids()], progress)
        check_column(table, JAVASCRIPT)
        runner_step.check()
    finally:
        drop_columns(table, [JAVASCRIPT.column])
    details += [(f"javascript: {label}", m[label]) for label in steps]
    figures = [
        rows_figure("JS UDF: recompute (row by row)", args.rows, m[recompute], None, "", ">= 1M rows/s", 0),
        rows_figure("JS UDF: sandbox runner alone", values.rows, m[alone], None, "", ">= 1M rows/s", 0),
    ]
    figures[0].extra = {
        "code": JAVASCRIPT.code,
        "add_computed_column_s": added[JAVASCRIPT.column],
        **_ms(m[recompute]),
    }
    figures[1].extra = {"code": JAVASCRIPT.code, **_ms(m[alone])}
    return figures


def inlined_figures(
    db: engine.Database,
    table: engine.Table,
    args: argparse.Namespace,
    details: list[tuple[str, Measured]],
    progress: Progress,
) -> list[Figure]:
    progress.say(f"[3/5] SQL and inlined UDFs vs the expression column {EXPRESSION}")
    udfs = [SQL, PY_INLINE, JS_INLINE]
    columns = {EXPRESSION_COLUMN: ("expression", EXPRESSION)} | {d.column: ("udf", d.call) for d in udfs}
    try:
        added = add_columns(table, columns, progress)
        measured = recompute_rounds(db, table, list(columns), args.repeat, progress)
        rows = column_values(table, list(columns))
        want = rows.column(EXPRESSION_COLUMN).to_pylist()
        for d in udfs:
            check_same(f"column {d.column} vs {EXPRESSION_COLUMN}", rows.column(d.column).to_pylist(), want)
            if not table.udf(d.name)["inlined"]:
                raise RuntimeError(f"UDF {d.name} is no longer inlined")
    finally:
        drop_columns(table, list(columns))
    baseline = measured[EXPRESSION_COLUMN]
    details.append(("expression column: recompute", baseline))
    figures = []
    for d in udfs:
        m = measured[d.column]
        details.append((f"{INLINED[d.name]}: recompute", m))
        f = Figure(
            f"{INLINED[d.name]}: recompute",
            args.rows / m.seconds,
            "rows/s",
            args.rows / baseline.seconds,
            f"expression column {EXPRESSION}",
            ">= 0.5x",
        )
        f.ok = (f.ratio or 0) >= 0.5
        f.extra = {
            "code": d.code,
            "inlined": True,
            "expression": d.call,
            "add_computed_column_s": added[d.column],
            "baseline_add_computed_column_s": added[EXPRESSION_COLUMN],
            **_ms(m, baseline),
        }
        figures.append(f)
    return figures


def memo_figures(
    db: engine.Database,
    table: engine.Table,
    args: argparse.Namespace,
    details: list[tuple[str, Measured]],
    progress: Progress,
) -> list[Figure]:
    progress.say("[4/5] deterministic memoisation: a row-by-row UDF over qty (10 distinct values)")
    pair = [DETERMINISTIC, NOT_DETERMINISTIC]
    try:
        add_columns(table, {d.column: ("udf", d.call) for d in pair}, progress)
        measured = recompute_rounds(db, table, [d.column for d in pair], args.repeat, progress)
        for d in pair:
            check_column(table, d)
    finally:
        drop_columns(table, [d.column for d in pair])
    det, nd = measured[DETERMINISTIC.column], measured[NOT_DETERMINISTIC.column]
    details += [("deterministic: recompute", det), ("not deterministic: recompute", nd)]
    f = Figure(
        "deterministic UDF: recompute (memoised)",
        args.rows / det.seconds,
        "rows/s",
        args.rows / nd.seconds,
        "same UDF, not deterministic",
        "speed-up, reported",
    )
    f.extra = {"code": DETERMINISTIC.code, "speed_up": nd.seconds / det.seconds, **_ms(det, nd)}
    return [f]


def execute_figures(db: engine.Database, args: argparse.Namespace, progress: Progress) -> list[Figure]:
    from service import create_app
    from service.background import live_server

    progress.say(f"[5/5] execute endpoint: {args.calls} calls each, uvicorn on 127.0.0.1 in this process")
    bodies = [{"price": 150.0, "rate": RATE}, {"price": 50.0, "rate": RATE}]
    cases = {"Python UDF": PYTHON.name, "JS UDF": JAVASCRIPT.name, "inlined Python UDF": PY_INLINE.name}
    references = {
        d.name: plain_function(d if d.language == "python" else PYTHON) for d in (PYTHON, JAVASCRIPT, PY_INLINE)
    }
    want = {name: [f(b["price"], b["rate"]) for b in bodies] for name, f in references.items()}
    latencies: dict[str, list[float]] = {}
    reported: dict[str, list[float]] = {}
    with live_server(create_app(db, db.settings)) as url, httpx.Client(base_url=f"{url}/api/v1", timeout=60) as http:

        def health() -> None:
            http.get("/health").raise_for_status()

        def execute(name: str, i: int) -> float:
            r = http.post(f"/tables/{TABLE}/udfs/{name}/execute", json=bodies[i % 2])
            r.raise_for_status()
            answer = r.json()
            if not math.isclose(answer["result"], want[name][i % 2], rel_tol=1e-12):
                raise RuntimeError(f"execute {name}: {answer['result']!r}, expected {want[name][i % 2]!r}")
            return float(answer["execution_time_ms"])

        with progress.step(f"GET /health x{args.calls}"):
            latencies["health"] = timed_calls(lambda i: health(), args.calls)
        for label, name in cases.items():
            with progress.step(f"execute {name} x{args.calls}"):
                server_ms: list[float] = []
                call = functools.partial(lambda i, n, out: out.append(execute(n, i)), n=name, out=server_ms)
                latencies[label] = timed_calls(call, args.calls)
                reported[label] = server_ms[EXECUTE_WARMUP:]
    health_ms = statistics.median(latencies["health"])
    figures = []
    for label, name in cases.items():
        lat = latencies[label]
        f = Figure(f"execute {label}: median", statistics.median(lat), "ms", health_ms, "GET /health median", "< 10 ms")
        f.ok = f.value < 10
        f.extra = {
            "udf": name,
            "calls": len(lat),
            "p95_ms": percentile(lat, 95),
            "max_ms": max(lat),
            "server_execution_time_ms_median": statistics.median(reported[label]),
            "health_p95_ms": percentile(latencies["health"], 95),
        }
        figures.append(f)
    print(f"\n{'execute':22} {'median ms':>10} {'p95 ms':>8}  (server-side execution_time_ms median)")
    for label in ("health", *cases):
        lat = latencies[label]
        inner = f"  ({statistics.median(reported[label]):.3f})" if label in reported else ""
        print(f"{label:22} {statistics.median(lat):10.3f} {percentile(lat, 95):8.3f}{inner}")
    return figures


def timed_calls(call: Callable[[int], object], n: int) -> list[float]:
    """Milliseconds of each of ``n`` calls, after ``EXECUTE_WARMUP`` untimed ones."""
    for i in range(EXECUTE_WARMUP):
        call(i)
    out = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - start) * 1000)
    return out


def percentile(values: Sequence[float], p: float) -> float:
    return float(np.percentile(values, p))


# -- output ----------------------------------------------------------------------------------------------------
def _ms(m: Measured, baseline: Measured | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"measurement": asdict(m)}
    if baseline is not None:
        out["baseline_measurement"] = asdict(baseline)
    return out


def print_details(details: list[tuple[str, Measured]], rows: int) -> None:
    print(f"\n{'measurement':32} {'seconds':>9} {'rows/s':>14} {'peak RSS MB':>12} {'growth MB':>10}  runs")
    for label, m in details:
        runs = " ".join(f"{r:.3f}" for r in m.runs)
        print(
            f"{label:32} {m.seconds:9.3f} {rows / m.seconds:14,.0f} {m.peak_rss_mb:12,.0f} {m.rss_growth_mb:+10,.0f}"
            f"  {runs}"
        )


def print_ratios(figures: list[Figure]) -> None:
    print()
    for f in figures:
        if f.ratio is not None:
            print(f"{f.name}: {f.ratio:.3f}x {f.baseline_name}")
