"""The batch benchmark harness: a tiny run reports every figure (never how large it is: no timing is asserted).

It runs in a subprocess like the other benchmark tests, with its results directory moved into the test's tmp dir.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DRIVER = (
    "import sys; from pathlib import Path; import benchmarks.common as common; "
    "common.RESULTS = Path(sys.argv[1]); from benchmarks.__main__ import main; sys.exit(main(sys.argv[2:]))"
)
FIGURES = {
    "1000 upserts in one batch (4 shards)": "rows/s",
    "small transactional batch, median": "ms",
    "transfer batches, 1 client": "batches/s",
    "transfer batches, 8 clients": "batches/s",
    "small batch on 2,000-row shards, median": "ms",
}


def test_tiny_run_reports_every_figure(tmp_path: Path) -> None:
    args = ["batch", "--upserts", "1000", "--latency-samples", "5", "--transfer-seconds", "0.5", "--large-rows", "2000"]
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp_path), *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    report = json.loads((tmp_path / "batch.json").read_text())
    figures = {f["name"]: f for f in report["figures"]}
    assert set(figures) == set(FIGURES)
    for name, unit in FIGURES.items():
        assert figures[name]["unit"] == unit and figures[name]["value"] > 0, figures[name]
        assert name in done.stdout
    assert isinstance(figures["small transactional batch, median"]["ok"], bool)
    assert figures["small batch on 2,000-row shards, median"]["baseline"] > 0
    assert figures["small batch on 2,000-row shards, median"]["extra"]["p90_ms"] > 0
