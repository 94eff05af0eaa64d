"""Issue 4's figures: recomputing a stored computed column over a large table, against Polars and Lance in the
same run on the same rows.

    python -m benchmarks recompute --rows 10000000 --shards 2                  # price * quantity
    python -m benchmarks recompute --rows 10000000 --shards 2 --suite --keep   # five cases, insert, PNG chart
    python -m benchmarks recompute --insert-only                               # the insert figure alone

Each case times the engine's ``add_computed_column`` (computes and stores the column) and then ``recompute``
(the headline), beside two baselines on a single Lance dataset holding the same rows:

- Polars in one process: read the input columns from Lance, compute, and store the column back in the same
  dataset with ``LanceDataset.add_columns(RecordBatchReader)``. The column ends up stored beside the rows, as
  the engine stores it; writing a separate one-column dataset would skip that work, so it would not be fair.
  ``polars one call`` is the compute step alone, on a frame already in memory (sorted by id for the window).
- Lance SQL: ``LanceDataset.add_columns({column: sql})`` (expression cases only; Lance has no SQL for
  aggregates or windows over the whole table).

Targets (10,000,000 rows, 2 shards): recompute of ``price * quantity`` >= 0.33x the rows/s of Lance
add_columns; insert into a table with 3 stored computed columns >= 0.33x the same insert without; aggregate
and moving window recomputes each under 10x the time of the one Polars call.

The generated table is kept in ``--data-dir`` with ``--keep`` and reused by runs with the same
``--rows/--shards/--seed``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import re
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks import common
from benchmarks.common import Figure, report

if TYPE_CHECKING:
    import engine

COLUMNS = {"id": "int", "price": "float", "quantity": "int", "name": "string", "category": "string", "ts": "timestamp"}
CATEGORIES = pa.array([f"cat-{i:03d}" for i in range(100)])
TABLE = "bench"
READY = "ready.json"  # written last: a data dir without it holds a half-generated table
CHECK_ROWS = 1000  # rows of each engine result compared with Polars

ENGINE_ADD = "engine add_computed_column"
ENGINE_RECOMPUTE = "engine recompute"
POLARS = "polars read+compute+write"
POLARS_CALL = "polars one call (in memory)"
LANCE = "lance add_columns SQL"
METHODS = (ENGINE_RECOMPUTE, ENGINE_ADD, POLARS, POLARS_CALL, LANCE)
NOTES = (
    f"{POLARS}: lance to_table(input columns) -> polars -> LanceDataset.add_columns(RecordBatchReader) on the "
    "same dataset, so the column is stored beside the rows as the engine stores it.",
    f"{POLARS_CALL}: df.with_columns(expr) alone, data already in memory (sort by id done beforehand).",
    f"{LANCE}: LanceDataset.add_columns({{column: sql}}); Lance's SQL has no CASE, so the conditional uses "
    "an equivalent branch-free CAST expression.",
    "peak RSS: engine = this process + the Ray shard-host processes; baselines = this process (sampled every "
    "0.1 s; RSS counts Ray's shared object store pages in each process that maps them).",
    "targets are set for 10,000,000 rows on 2 shards.",
)


@dataclass(frozen=True)
class Case:
    """One computed column, as the engine defines it and as each baseline computes it."""

    name: str
    column: str
    kind: Literal["expression", "aggregate", "window"]
    expression: str
    polars: pl.Expr
    sql: str | None = None  # Lance add_columns SQL; None where Lance has none
    parameters: dict[str, Any] | None = None
    min_ratio: float | None = None  # the target, as engine rows/s over the baseline's
    target: str = ""

    @property
    def inputs(self) -> list[str]:
        text = " ".join([self.expression, self.sql or "", json.dumps(self.parameters or {})])
        return [c for c in COLUMNS if re.search(rf"\b{c}\b", text)]


SUITE = (
    Case(
        "arithmetic",
        "total",
        "expression",
        "price * quantity",
        pl.col("price") * pl.col("quantity"),
        sql="price * quantity",
        min_ratio=0.33,
        target=">= 0.33x",
    ),
    Case("string", "name_upper", "expression", "upper(name)", pl.col("name").str.to_uppercase(), sql="upper(name)"),
    Case(
        "conditional",
        "price_adj",
        "expression",
        "price * 2 if quantity > 500 else price",
        pl.when(pl.col("quantity") > 500).then(pl.col("price") * 2).otherwise(pl.col("price")),
        sql="price * (1 + CAST(quantity > 500 AS DOUBLE))",
    ),
    Case(
        "aggregate",
        "cat_sum",
        "aggregate",
        "SUM(price)",
        pl.col("price").sum().over("category"),
        parameters={"group_by": ["category"]},
        min_ratio=0.1,
        target="> 0.1x (time < 10x)",
    ),
    Case(
        "window",
        "ma7",
        "window",
        "AVG(price)",
        pl.col("price").rolling_mean(7, min_samples=1).over("category"),
        parameters={
            "partition_by": ["category"],
            "order_by": [{"column": "id", "direction": "asc"}],
            "frame": {"preceding": 6, "following": 0},
        },
        min_ratio=0.1,
        target="> 0.1x (time < 10x)",
    ),
)
INSERT_COLUMNS = SUITE[:3]  # the insert figure's 3 stored computed columns


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--expr", default="price * quantity", help="engine expression of the column to recompute")
    p.add_argument("--sql", help="the same computation in SQL, for Lance and Polars (default: --expr)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--suite", action="store_true", dest="full_suite", help="the five fixed cases, the insert figure, a PNG chart"
    )
    mode.add_argument("--insert-only", action="store_true", help="only the insert figure (no large table)")
    p.add_argument("--insert-rows", type=int, default=1_000_000)
    p.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows per insert while generating")
    p.add_argument("--repeat", type=int, default=3, help="runs per timing; the median is reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "tessera-bench-recompute"))
    p.add_argument("--keep", action="store_true", help="keep the generated table in --data-dir for the next run")


def run(args: argparse.Namespace) -> int:
    import ray

    import engine

    cases = list(SUITE) if args.full_suite else [] if args.insert_only else [custom_case(args.expr, args.sql)]
    progress = Progress()
    store = data_store(args, bool(cases))
    reused = (store / READY).exists()
    if not reused:
        shutil.rmtree(store, ignore_errors=True)
    db = engine.connect(data_dir=str(store / "engine"), shards=args.shards, maintenance_seconds=0)
    meta: dict[str, Any] = {k: getattr(args, k) for k in ("rows", "shards", "seed", "repeat", "insert_rows")}
    figures: list[Figure] = []
    measured: dict[str, dict[str, Measured]] = {}
    try:
        pids = [os.getpid(), *host_pids(db)]
        if cases:
            table, meta["data"] = prepare(db, store, args, reused, progress)
            for i, case in enumerate(cases, 1):
                progress.say(f"[{i}/{len(cases)}] {case.name}: {case.column} = {case.expression}")
                measured[case.name] = measure_case(table, str(store / "input.lance"), case, args.repeat, pids, progress)
                figures.append(case_figure(case, args.rows, measured[case.name]))
        if args.full_suite or args.insert_only:
            figures.append(insert_figure(db, args, pids, progress))
    finally:
        db.close()
        ray.shutdown()
        if not (reused or (args.keep and cases)):
            shutil.rmtree(store, ignore_errors=True)
    suite = "recompute-suite" if args.full_suite else "recompute-insert" if args.insert_only else "recompute"
    if measured:
        print_details(measured, args.rows)
    if args.full_suite:
        meta["chart"] = str(write_chart(cases, measured, args.rows, args.shards, common.RESULTS / f"{suite}.png"))
    print("\nnotes:\n" + "\n".join(f"  - {n}" for n in NOTES))
    report(suite, figures, meta | {"notes": NOTES})
    return 0


def data_store(args: argparse.Namespace, cached: bool) -> Path:
    """Where the table lives: keyed on what its rows depend on; a throwaway directory for the insert figure."""
    root = Path(args.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    if not cached:
        return Path(tempfile.mkdtemp(dir=root))
    return root / f"recompute-r{args.rows}-s{args.shards}-seed{args.seed}"


def custom_case(expr: str, sql: str | None) -> Case:
    """The suite's case for ``expr`` when there is one (with its target), else an expression case."""
    for case in SUITE:
        if case.kind == "expression" and case.expression == expr and sql in (None, case.sql):
            return case
    return Case("expression", "value", "expression", expr, pl.sql_expr(sql or expr), sql=sql or expr)


# -- progress and memory -------------------------------------------------------------------------------------
class Progress:
    """A line per step with the seconds since the start; a line every 10 s while a long step runs."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def say(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:8.1f}s] {message}", flush=True)

    @contextlib.contextmanager
    def step(self, message: str) -> Iterator[None]:
        began = time.perf_counter()
        self.say(f"  {message} ...")
        done = threading.Event()

        def tick() -> None:
            while not done.wait(10):
                self.say(f"    ... still running ({time.perf_counter() - began:.0f}s)")

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()
        self.say(f"    done in {time.perf_counter() - began:.2f}s")


class PeakRss:
    """Peak of the summed RSS of ``pids`` while the block runs, sampled in a background thread."""

    def __init__(self, pids: Sequence[int], interval: float = 0.1) -> None:
        import psutil

        self._psutil = psutil
        self._procs = [self._psutil.Process(p) for p in pids]
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.start_mb = self.peak_mb = 0.0

    def _rss_mb(self) -> float:
        total = 0
        for proc in self._procs:
            with contextlib.suppress(self._psutil.NoSuchProcess):  # a shard host that Ray is restarting
                total += proc.memory_info().rss
        return total / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __enter__(self) -> PeakRss:
        self.start_mb = self.peak_mb = self._rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())


def host_pids(db: engine.Database) -> list[int]:
    """The processes of the shard hosts (Ray actors) that serve ``db``: the engine's memory is theirs too."""
    import ray

    return sorted({ray.get(h.pid.remote()) for h in db.coordinator.hosts})


# -- data ----------------------------------------------------------------------------------------------------
def make_chunk(start: int, rows: int, seed: int) -> pa.Table:
    """Rows ``start .. start + rows`` of the benchmark table; the same rows for the same (start, seed)."""
    rng = np.random.default_rng([seed, start])
    ids = pa.array(np.arange(start, start + rows, dtype=np.int64))
    ts = np.datetime64("2024-01-01T00:00:00", "us") + np.arange(start, start + rows) * np.timedelta64(1, "s")
    return pa.table(
        {
            "id": ids,
            "price": rng.random(rows) * 100,
            "quantity": rng.integers(0, 1000, rows),
            "name": pc.binary_join_element_wise("item-", ids.cast(pa.string()), ""),
            "category": CATEGORIES.take(rng.integers(0, len(CATEGORIES), rows)),
            "ts": pa.array(ts).cast(pa.timestamp("us", tz="UTC")),
        }
    )


def prepare(
    db: engine.Database, store: Path, args: argparse.Namespace, reused: bool, progress: Progress
) -> tuple[engine.Table, dict[str, Any]]:
    """The engine table and its Lance copy (``store/input.lance``): reused when ``store`` is complete."""
    import lance

    def copy(start: int, chunk: pa.Table) -> None:
        # written in id order: the baselines rely on the dataset's row order being the id order
        lance.write_dataset(chunk, str(store / "input.lance"), mode="create" if start == 0 else "append")

    return generate(
        db,
        store,
        args,
        reused,
        progress,
        name=TABLE,
        columns=COLUMNS,
        make=make_chunk,
        each=copy,
        also="and a Lance copy, ",
    )


def generate(
    db: engine.Database,
    store: Path,
    args: argparse.Namespace,
    reused: bool,
    progress: Progress,
    *,
    name: str,
    columns: dict[str, Any],
    make: Callable[[int, int, int], pa.Table],
    each: Callable[[int, pa.Table], None] | None = None,
    also: str = "",
) -> tuple[engine.Table, dict[str, Any]]:
    """Table ``name`` with ``args.rows`` rows from ``make(start, rows, seed)``, reused when ``store`` holds a
    complete one (``READY`` is written last); ``each(start, chunk)`` also sees every chunk."""
    if reused:
        progress.say(f"reusing {args.rows:,} rows in {store}")
        return db.table(name), json.loads((store / READY).read_text())
    created = db.create_table(name, columns, primary_key="id", shards=args.shards)
    began = time.perf_counter()
    with progress.step(f"generating {args.rows:,} rows into {args.shards} shards {also}in {store}"):
        for start in range(0, args.rows, args.chunk_rows):
            chunk = make(start, min(args.chunk_rows, args.rows - start), args.seed)
            created.insert(chunk)
            if each is not None:
                each(start, chunk)
            done = start + chunk.num_rows
            progress.say(f"    {done:,}/{args.rows:,} rows ({done / args.rows:.0%})")
    info = {"rows": args.rows, "shards": args.shards, "seed": args.seed, "generate_s": time.perf_counter() - began}
    (store / READY).write_text(json.dumps(info))
    return created, info


# -- measuring -----------------------------------------------------------------------------------------------
@dataclass
class Measured:
    method: str
    seconds: float  # median of runs
    runs: list[float]
    peak_rss_mb: float
    rss_growth_mb: float
    parts: dict[str, float] = field(default_factory=dict)  # medians of a run's steps (Polars: read/compute/write)


def measure(
    method: str,
    run: Callable[[], object],
    repeat: int,
    pids: Sequence[int],
    reset: Callable[[], Any] | None = None,
) -> Measured:
    """Time ``run`` ``repeat`` times (``reset`` after each, untimed) while sampling the memory of ``pids``.

    A ``run`` that returns a dict of step timings gets their medians in ``Measured.parts``.
    """
    runs: list[float] = []
    parts: list[dict[str, float]] = []
    with PeakRss(pids) as mem:
        for _ in range(repeat):
            start = time.perf_counter()
            result = run()
            runs.append(time.perf_counter() - start)
            parts.append(result if isinstance(result, dict) else {})
            if reset is not None:
                reset()
    medians = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
    return Measured(method, statistics.median(runs), runs, mem.peak_mb, mem.peak_mb - mem.start_mb, medians)


def measure_case(
    table: engine.Table, uri: str, case: Case, repeat: int, pids: Sequence[int], progress: Progress
) -> dict[str, Measured]:
    import lance

    driver = [os.getpid()]
    dataset = lance.dataset(uri)
    out: dict[str, Measured] = {}
    if (sql := case.sql) is not None:
        with progress.step(f"{LANCE}: add_columns({{{case.column!r}: {sql!r}}}) x{repeat}"):
            out[LANCE] = measure(
                LANCE,
                lambda: dataset.add_columns({case.column: sql}),
                repeat,
                driver,
                reset=lambda: dataset.drop_columns([case.column]),
            )
    expected: list[pa.Array] = []
    with progress.step(f"{POLARS} x{repeat}"):
        out[POLARS] = measure(
            POLARS,
            lambda: polars_pipeline(dataset, case, expected),
            repeat,
            driver,
            reset=lambda: dataset.drop_columns([case.column]),
        )
    with progress.step(f"{POLARS_CALL} x{repeat}"):
        out[POLARS_CALL] = polars_call(dataset, case, repeat)
    out |= measure_engine(table, case, repeat, pids, expected[-1], progress)
    return out


def read_frame(dataset: Any, case: Case) -> pl.DataFrame:
    frame = pl.from_arrow(dataset.to_table(columns=case.inputs))
    assert isinstance(frame, pl.DataFrame)
    return frame.sort("id") if case.kind == "window" else frame


def polars_call(dataset: Any, case: Case, repeat: int) -> Measured:
    """The one Polars call alone, on the input columns already in memory (the frame is freed on return)."""
    frame = read_frame(dataset, case)
    return measure(POLARS_CALL, lambda: frame.with_columns(case.polars.alias(case.column)), repeat, [os.getpid()])


def polars_pipeline(dataset: Any, case: Case, expected: list[pa.Array]) -> dict[str, float]:
    """Read the inputs from Lance, compute with Polars, store the column back into the same dataset."""
    t0 = time.perf_counter()
    frame = read_frame(dataset, case)
    t1 = time.perf_counter()
    values = frame.with_columns(case.polars.alias(case.column)).select(case.column)
    t2 = time.perf_counter()
    # rows are in id order, which is the dataset's row order (see prepare), as add_columns(reader) requires
    column = values.to_arrow(compat_level=pl.CompatLevel.oldest())
    dataset.add_columns(pa.RecordBatchReader.from_batches(column.schema, column.to_batches()))
    t3 = time.perf_counter()
    expected[:] = [column.column(0).combine_chunks()]
    return {"read_s": t1 - t0, "compute_s": t2 - t1, "write_s": t3 - t2}


def add_column(table: engine.Table, case: Case) -> dict[str, Any]:
    """The engine computes and stores the column for every row."""
    return table.add_computed_column(
        case.column, case.kind, case.expression, parameters=case.parameters, cache_results=True
    )


def recompute(table: engine.Table, case: Case) -> dict[str, Any]:
    result = table.recompute(case.column)
    if result["errors"]:
        raise RuntimeError(f"recompute of {case.column} reported errors: {result['errors'][:3]}")
    return result


def measure_engine(
    table: engine.Table, case: Case, repeat: int, pids: Sequence[int], expected: pa.Array, progress: Progress
) -> dict[str, Measured]:
    results: list[dict[str, Any]] = []
    try:
        with progress.step(ENGINE_ADD):
            add = measure(ENGINE_ADD, lambda: results.append(add_column(table, case)), 1, pids)
        with progress.step(f"{ENGINE_RECOMPUTE} x{repeat}"):
            recomputes = measure(ENGINE_RECOMPUTE, lambda: results.append(recompute(table, case)), repeat, pids)
        rows = table.query(select=["id", case.column], limit=CHECK_ROWS).rows
        check_same(case, rows.column(case.column).to_pylist(), expected.slice(0, rows.num_rows).to_pylist())
    finally:
        drop_column(table, case.column)
    add.parts = {"computation_time_ms": float(results[0].get("computation_time_ms") or 0)}
    recomputes.parts = {
        "computation_time_ms": statistics.median(float(r["computation_time_ms"] or 0) for r in results[1:]),
        "rows_recomputed": float(results[-1]["rows_recomputed"]),
    }
    return {ENGINE_ADD: add, ENGINE_RECOMPUTE: recomputes}


def drop_column(table: engine.Table, column: str) -> None:
    try:
        table.drop_computed_column(column)
    except Exception as exc:  # a column left behind would make the next run's add fail: say so, loudly
        print(f"warning: could not drop computed column {column!r}: {exc}")


def check_same(case: Case, got: list[Any], want: list[Any]) -> None:
    """A fast wrong answer is no figure: the engine's first rows must match Polars'."""
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        same = math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-9) if isinstance(w, float) and g is not None else g == w
        if not same:
            raise RuntimeError(f"{case.name}: engine and Polars disagree at id {i}: {g!r} != {w!r}")


# -- figures -------------------------------------------------------------------------------------------------
def case_figure(case: Case, rows: int, m: dict[str, Measured]) -> Figure:
    baseline = LANCE if LANCE in m else POLARS_CALL
    figure = Figure(
        f"{case.name}: recompute {case.column}",
        rows / m[ENGINE_RECOMPUTE].seconds,
        "rows/s",
        rows / m[baseline].seconds,
        baseline,
        case.target,
    )
    if case.min_ratio is not None:
        figure.ok = (figure.ratio or 0) >= case.min_ratio
    figure.extra = {
        "expression": case.expression,
        "column_type": case.kind,
        "parameters": case.parameters,
        "sql": case.sql,
        "rows": rows,
        "measurements": {k: asdict(v) | {"rows_per_s": rows / v.seconds} for k, v in m.items()},
    }
    return figure


def insert_figure(db: engine.Database, args: argparse.Namespace, pids: Sequence[int], progress: Progress) -> Figure:
    """Insert of ``--insert-rows`` rows into a table with 3 stored computed columns vs one without."""
    progress.say(f"insert of {args.insert_rows:,} rows: 3 stored computed columns vs none")
    data = make_chunk(0, args.insert_rows, args.seed)
    names = (f"insert_{os.getpid()}_{i}" for i in itertools.count())
    made: list[str] = []

    def fresh(computed: bool) -> engine.Table:
        made.append(next(names))
        table = db.create_table(made[-1], COLUMNS, primary_key="id", shards=args.shards)
        for case in INSERT_COLUMNS if computed else ():
            add_column(table, case)
        return table

    def timed_insert(computed: bool) -> Measured:
        fresh(computed).insert(data.slice(0, 1000))  # warm up: first-call costs on the hosts
        tables = iter([fresh(computed) for _ in range(args.repeat)])  # created before timing
        label = "with 3 computed columns" if computed else "without computed columns"
        with progress.step(f"insert {label} x{args.repeat}"):
            return measure(label, lambda: next(tables).insert(data), args.repeat, pids)

    try:
        plain, computed = timed_insert(False), timed_insert(True)
    finally:
        for name in made:
            db.drop_table(name)
    figure = Figure(
        f"insert {args.insert_rows:,} rows, 3 computed columns",
        args.insert_rows / computed.seconds,
        "rows/s",
        args.insert_rows / plain.seconds,
        "same insert, no computed columns",
        ">= 0.33x",
    )
    figure.ok = (figure.ratio or 0) >= 0.33
    figure.extra = {
        "computed_columns": {c.column: c.expression for c in INSERT_COLUMNS},
        "measurements": {m.method: asdict(m) for m in (plain, computed)},
    }
    return figure


def print_details(measured: dict[str, dict[str, Measured]], rows: int) -> None:
    print(f"\n{'case':12} {'method':30} {'seconds':>9} {'rows/s':>14} {'peak RSS MB':>12} {'growth MB':>10}  steps")
    for case, by_method in measured.items():
        for method in METHODS:
            if (m := by_method.get(method)) is not None:
                steps = " ".join(f"{k}={v:.3g}" for k, v in m.parts.items())
                print(
                    f"{case:12} {method:30} {m.seconds:9.3f} {rows / m.seconds:14,.0f} {m.peak_rss_mb:12,.0f} "
                    f"{m.rss_growth_mb:+10,.0f}  {steps}"
                )


def write_chart(
    cases: Sequence[Case], measured: dict[str, dict[str, Measured]], rows: int, shards: int, path: Path
) -> Path:
    """Grouped bars of rows/s per case (log scale): the engine's recompute beside each baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = (ENGINE_RECOMPUTE, POLARS, POLARS_CALL, LANCE)
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(10, 5))
    for j, method in enumerate(methods):
        present = [(i, measured[c.name][method]) for i, c in enumerate(cases) if method in measured[c.name]]
        offset = (j - (len(methods) - 1) / 2) * width
        ax.bar([i + offset for i, _ in present], [rows / m.seconds for _, m in present], width, label=method)
    ax.set_xticks(range(len(cases)), [f"{c.name}\n{c.expression}" for c in cases], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("rows/s (log scale)")
    ax.set_title(f"Recompute of a stored computed column: {rows:,} rows, {shards} shards")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
