"""The auth benchmark harness: a tiny run reports every figure (never how large it is: no timing is asserted).

It runs in a subprocess (``run_benchmark``), with its results directory moved into the test's tmp dir. The run
itself checks that the key side refuses a request without a key and answers as the key, and that every row it
posted arrived, so a passing run measured what it says.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

FIGURES = {
    "GET /health with a key, median": "ms",
    "GET /auth/verify with a key, median": "ms",
    "GET /tables with a key, median": "ms",
    "REST batch insert with a key, 2 clients": "rows/s",
}


def test_tiny_run_reports_every_figure(tmp_path: Path, run_benchmark: Callable[..., str]) -> None:
    args = ["--requests", "20", "--rounds", "2", "--batch", "50", "--batch-requests", "2", "--batch-rounds", "2"]
    stdout = run_benchmark(tmp_path, "auth", *args, "--clients", "2", "--shards", "1")
    report = json.loads((tmp_path / "auth.json").read_text())
    figures = {f["name"]: f for f in report["figures"]}
    assert set(figures) == set(FIGURES)
    for name, unit in FIGURES.items():
        f = figures[name]
        assert f["unit"] == unit and f["value"] > 0 and f["baseline"] > 0, f
        assert f["baseline_name"] == "open mode, no key"
        assert name in stdout
    for name in ("GET /auth/verify with a key, median", "GET /tables with a key, median"):
        assert isinstance(figures[name]["ok"], bool)
        assert figures[name]["extra"]["requests_per_side"] == 20
        assert "difference_ms" in figures[name]["extra"]
    assert figures["GET /health with a key, median"]["ok"] is None  # public: a reference, no target
    batch = figures["REST batch insert with a key, 2 clients"]
    assert isinstance(batch["ok"], bool)
    assert len(batch["extra"]["open_rounds_rows_per_s"]) == len(batch["extra"]["key_rounds_rows_per_s"]) == 2
    assert len(report["meta"]["load_average_at_start"]) == len(report["meta"]["load_average_at_end"]) == 3
    assert "load average" in stdout
