"""The transfer benchmark harness: a tiny run reports every figure (never how large it is: no timing is asserted).

The run checks its own work (every import imported every row, the export holds every row, every stream sent
bytes), so a passing run measured what it says.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

EXPECTED = {
    "CSV import, 3,000 rows, rules on": "ms",
    "Parquet import, 3,000 rows": "ms",
    "Parquet export, 3,000 rows": "ms",
    "jsonl stream over HTTP, 3,000 rows": "ms",
    "Arrow IPC stream, 3,000 rows": "ms",
    "server RSS growth while streaming jsonl": "MB",
}


def test_tiny_run_reports_every_figure(tmp_path: Path, run_benchmark: Callable[..., str]) -> None:
    out = run_benchmark(tmp_path, "transfer", "--rows", "3000")
    assert "written" in out and "load average" in out
    figures = {f["name"]: f for f in json.loads((tmp_path / "transfer.json").read_text())["figures"]}
    assert {name: f["unit"] for name, f in figures.items()} == EXPECTED
    for name, figure in figures.items():
        assert figure["value"] >= 0 and figure["target"], name
        if figure["unit"] == "ms":
            assert figure["baseline"] > 0 and figure["ratio"] > 0, name
    assert figures["CSV import, 3,000 rows, rules on"]["extra"]["peak_rss_growth_mb"] >= 0
