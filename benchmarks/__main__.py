"""Benchmark harness: ``python -m benchmarks <suite> [options]``.

Suites:
  foundation   issue 2's figures: bulk insert, REST batch insert, full scan, REST point lookup,
               each with its ratio against the raw library in the same run.
  batch        issue 3's figures: one batch of upserts vs separate PUTs, small-batch latency, transfers/s.
  recompute    issue 4's figures: recompute of a stored computed column vs Polars and Lance add_columns,
               insert with 3 computed columns vs without; ``--suite`` adds a PNG chart.
  udf          issue 5's figures: row-by-row Python and JavaScript UDFs (recompute, sandbox alone) vs a plain
               Python loop, SQL and inlined UDFs vs an expression column, memoisation, the execute endpoint.
  auth         issue 12's figures: API-key overhead on GET /auth/verify, /tables (and /health for reference)
               and REST batch-insert throughput, key vs open mode in one run.
  jobs         issue 13's figures: submit-to-start latency, a 1,000-job burst in priority order, a recompute
               job vs the same recompute in-process, cancel of a running job, point lookups during a job.
  transfer     issue 14's figures: CSV and Parquet imports vs polars/pyarrow + lance.write_dataset, Parquet
               export vs pq.write_table, jsonl and Arrow streams over HTTP vs a bare Starlette stream.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import auth, batch, foundation, jobs, recompute, transfer, udf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = parser.add_subparsers(dest="suite", required=True)
    foundation.add_arguments(sub.add_parser("foundation", help="bulk insert, REST batch, scan, point lookup"))
    batch.add_arguments(sub.add_parser("batch", help="batch vs separate upserts, small batch latency, transfers"))
    recompute.add_arguments(
        sub.add_parser("recompute", help="computed-column recompute and insert, vs Polars and Lance")
    )
    udf.add_arguments(sub.add_parser("udf", help="UDFs: sandbox, inlined, memoised, execute endpoint"))
    auth.add_arguments(sub.add_parser("auth", help="API-key overhead: latency and batch throughput, key vs open"))
    jobs.add_arguments(sub.add_parser("jobs", help="job queue: start latency, burst order, recompute job, cancel"))
    transfer.add_arguments(sub.add_parser("transfer", help="imports, exports and streams vs the best readers"))
    args = parser.parse_args(argv)
    suites = {
        "foundation": foundation.run,
        "batch": batch.run,
        "recompute": recompute.run,
        "udf": udf.run,
        "auth": auth.run,
        "jobs": jobs.run,
        "transfer": transfer.run,
    }
    return suites[args.suite](args)


if __name__ == "__main__":
    sys.exit(main())
