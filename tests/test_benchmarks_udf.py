"""The UDF benchmark harness: a tiny run reports every figure (never how large it is: no timing is asserted).

The run goes in a subprocess, as in ``test_benchmarks_recompute``: the harness shuts Ray down when it finishes, which
would stop the session's shared Ray if it ran in this process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from benchmarks.udf import DEFINITIONS, make_chunk

FIGURES = {
    "Python UDF: recompute (row by row)": "rows/s",
    "Python UDF: sandbox runner alone": "rows/s",
    "JS UDF: recompute (row by row)": "rows/s",
    "JS UDF: sandbox runner alone": "rows/s",
    "SQL UDF: recompute": "rows/s",
    "inlined Python UDF: recompute": "rows/s",
    "inlined JS UDF: recompute": "rows/s",
    "deterministic UDF: recompute (memoised)": "rows/s",
    "execute Python UDF: median": "ms",
    "execute JS UDF: median": "ms",
    "execute inlined Python UDF: median": "ms",
}
NO_BASELINE = {"JS UDF: recompute (row by row)", "JS UDF: sandbox runner alone"}


def test_chunks_are_deterministic() -> None:
    chunk = make_chunk(5, 2000, seed=1)
    assert chunk.equals(make_chunk(5, 2000, seed=1))
    assert not chunk.equals(make_chunk(5, 2000, seed=2))
    assert chunk.column_names == ["id", "price", "qty"]
    assert chunk.column("id").to_pylist() == list(range(5, 2005))
    assert len(chunk.column("qty").unique()) == 10  # few distinct values: the memoisation figure relies on it


def test_udf_names_are_their_functions_names() -> None:
    for d in DEFINITIONS:
        if d.language != "sql":
            assert f"function {d.name}(" in d.code or f"def {d.name}(" in d.code


def test_tiny_run_reports_every_figure(tmp_path: Path, run_benchmark: Callable[..., str]) -> None:
    results, data, out = tmp_path / "results", tmp_path / "data", tmp_path / "out.json"
    args = ["--rows", "20000", "--repeat", "1", "--calls", "5", "--data-dir", str(data), "--json", str(out)]
    stdout = run_benchmark(results, "udf", *args)
    assert "generating 20,000 rows" in stdout

    report = json.loads((results / "udf.json").read_text())
    assert json.loads(out.read_text()) == report
    assert report["suite"] == "udf"
    assert report["meta"]["rows"] == 20000 and report["meta"]["shards"] == 2
    figures = {f["name"]: f for f in report["figures"]}
    assert set(figures) == set(FIGURES)
    for name, unit in FIGURES.items():
        f = figures[name]
        assert f["unit"] == unit and isinstance(f["value"], float) and f["value"] > 0, f
        if name in NO_BASELINE:
            assert f["baseline"] is None and f["ratio"] is None
        else:
            assert f["baseline"] > 0 and f["ratio"] > 0, f
        if name != "deterministic UDF: recompute (memoised)":
            assert f["target"] and isinstance(f["ok"], bool), f
        assert name in stdout
    for name in ("SQL UDF: recompute", "inlined Python UDF: recompute", "inlined JS UDF: recompute"):
        assert figures[name]["extra"]["inlined"] is True
    assert figures["deterministic UDF: recompute (memoised)"]["extra"]["speed_up"] > 0
    for name in FIGURES:
        if FIGURES[name] == "ms":
            extra = figures[name]["extra"]
            assert extra["calls"] == 5
            # Each call's server-side time lies inside its round trip, so the medians keep that order; then p95, max.
            server, median = extra["server_execution_time_ms_median"], figures[name]["value"]
            assert 0 < server < median <= extra["p95_ms"] <= extra["max_ms"], extra
        else:
            measurement = figures[name]["extra"]["measurement"]
            assert all(isinstance(measurement[k], float) for k in ("seconds", "peak_rss_mb"))
    assert not data.joinpath("udf-r20000-s2-seed0").exists()  # not kept without --keep
