"""Benchmark harness: ``python -m benchmarks <suite> [options]``.

Suites:
  foundation   issue 2's figures: bulk insert, REST batch insert, full scan, REST point lookup,
               each with its ratio against the raw library in the same run.
  batch        issue 3's figures: one batch of upserts vs separate PUTs, small-batch latency, transfers/s.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import batch, foundation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = parser.add_subparsers(dest="suite", required=True)
    foundation.add_arguments(sub.add_parser("foundation", help="bulk insert, REST batch, scan, point lookup"))
    batch.add_arguments(sub.add_parser("batch", help="batch vs separate upserts, small batch latency, transfers"))
    args = parser.parse_args(argv)
    return {"foundation": foundation.run, "batch": batch.run}[args.suite](args)


if __name__ == "__main__":
    sys.exit(main())
