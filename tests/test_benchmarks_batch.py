"""The batch benchmark harness: a tiny run reports every figure (never how large it is: no timing is asserted).

It runs in a subprocess (``run_benchmark``), with its results directory moved into the test's tmp dir.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

FIGURES = {
    "1000 upserts in one batch (4 shards)": "rows/s",
    "small transactional batch, median": "ms",
    "transfer batches, 1 client": "batches/s",
    "transfer batches, 8 clients": "batches/s",
    "small batch on 2,000-row shards, median": "ms",
}


def test_tiny_run_reports_every_figure(tmp_path: Path, run_benchmark: Callable[..., str]) -> None:
    args = ["--upserts", "1000", "--latency-samples", "5", "--transfer-seconds", "0.5", "--large-rows", "2000"]
    stdout = run_benchmark(tmp_path, "batch", *args)
    report = json.loads((tmp_path / "batch.json").read_text())
    figures = {f["name"]: f for f in report["figures"]}
    assert set(figures) == set(FIGURES)
    for name, unit in FIGURES.items():
        assert figures[name]["unit"] == unit and figures[name]["value"] > 0, figures[name]
        assert name in stdout
    assert isinstance(figures["small transactional batch, median"]["ok"], bool)
    assert figures["small batch on 2,000-row shards, median"]["baseline"] > 0
    assert figures["small batch on 2,000-row shards, median"]["extra"]["p90_ms"] > 0
