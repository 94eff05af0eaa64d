"""The recompute benchmark harness: its data is deterministic, and a tiny run writes a report of the right shape.

The end-to-end run goes in a subprocess: the harness shuts Ray down when it finishes, which would stop the
session's shared Ray if it ran in this process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from benchmarks.recompute import COLUMNS, SUITE, make_chunk


def test_chunks_are_deterministic_with_the_benchmark_columns() -> None:
    chunk = make_chunk(5, 2000, seed=1)
    assert chunk.equals(make_chunk(5, 2000, seed=1))
    assert not chunk.equals(make_chunk(5, 2000, seed=2))
    assert chunk.column_names == list(COLUMNS)
    assert chunk.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert chunk.column("id").to_pylist() == list(range(5, 2005))
    assert 90 <= len(chunk.column("category").unique()) <= 100


def test_cases_read_the_columns_they_use() -> None:
    inputs = {c.name: c.inputs for c in SUITE}
    assert inputs["arithmetic"] == ["price", "quantity"]
    assert inputs["aggregate"] == ["price", "category"]
    assert inputs["window"] == ["id", "price", "category"]


def test_tiny_suite_writes_report_and_chart_then_reuses_the_data(
    tmp_path: Path, run_benchmark: Callable[..., str]
) -> None:
    results, data = tmp_path / "results", tmp_path / "data"
    base = ["--rows", "2000", "--shards", "2", "--repeat", "1", "--data-dir", str(data)]
    out = run_benchmark(
        results, "recompute", *base, "--suite", "--insert-rows", "1500", "--chunk-rows", "700", "--keep"
    )
    assert "generating 2,000 rows" in out

    report = json.loads((results / "recompute-suite.json").read_text())
    assert report["suite"] == "recompute-suite"
    assert report["meta"]["rows"] == 2000 and report["meta"]["shards"] == 2
    figures = {f["name"].split(":")[0]: f for f in report["figures"]}
    assert set(figures) == {
        "arithmetic",
        "string",
        "conditional",
        "aggregate",
        "window",
        "insert 1,500 rows, 3 computed columns",
    }
    for f in report["figures"]:
        assert f["unit"] == "rows/s" and f["value"] > 0 and f["baseline"] > 0 and f["ratio"] > 0
    for name in ("arithmetic", "string", "conditional", "aggregate", "window"):
        measured = figures[name]["extra"]["measurements"]
        methods = {
            "engine recompute",
            "engine add_computed_column",
            "polars read+compute+write",
            "polars one call (in memory)",
        }
        assert methods <= set(measured)
        assert ("lance add_columns SQL" in measured) == (name in ("arithmetic", "string", "conditional"))
        for m in measured.values():
            assert all(isinstance(m[k], float) for k in ("seconds", "peak_rss_mb", "rows_per_s"))  # reported
    assert figures["arithmetic"]["target"] == ">= 0.33x" and isinstance(figures["arithmetic"]["ok"], bool)
    assert (results / "recompute-suite.png").read_bytes().startswith(b"\x89PNG")

    out = run_benchmark(results, "recompute", *base)  # the default single case, on the kept table
    assert "reusing 2,000 rows" in out
    single = json.loads((results / "recompute.json").read_text())
    assert [f["name"] for f in single["figures"]] == ["arithmetic: recompute total"]
