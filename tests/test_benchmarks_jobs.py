"""The jobs benchmark harness: a tiny run reports every figure (never how large it is: no timing is asserted), and
its start-order check counts the inversions it says it counts.

The run goes in a subprocess (``run_benchmark``), with its results directory moved into the test's tmp dir. The
run itself checks that every job ended as it should (completed, or cancelled after its cancel), that every
recompute covered every row and that each lookup answered its key's row, so a passing run measured what it says.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from benchmarks.jobs import FIGURES, epoch, start_order
from engine.storage.jobs import JobRecord

BURST = 30
ROWS = 3000
EXPECTED = {
    "submit-to-start, server side, median": "ms",
    "submit-to-start, seen by the client, median": "ms",
    f"burst of {BURST:,} sleep-0 jobs, all finished": "s",
    f"burst of {BURST:,}: priority inversions": "pairs",
    f"recompute job, {ROWS:,} rows, median": "ms",
    "cancel of a running job, median": "ms",
    "point lookup p50 during a recompute job": "ms",
}
WITH_BASELINE = {
    "submit-to-start, server side, median",
    "submit-to-start, seen by the client, median",
    f"burst of {BURST:,} sleep-0 jobs, all finished",
    f"recompute job, {ROWS:,} rows, median",
    "point lookup p50 during a recompute job",
}


def test_tiny_run_reports_every_figure(tmp_path: Path, run_benchmark: Callable[..., str]) -> None:
    args = ["--latency-jobs", "5", "--gap", "0.01", "--burst", str(BURST), "--rows", str(ROWS), "--rounds", "1"]
    stdout = run_benchmark(
        tmp_path, "jobs", *args, "--cancel-runs", "1", "--lookups", "10", "--chunk-rows", "1000", "--shards", "1"
    )
    report = json.loads((tmp_path / "jobs.json").read_text())
    assert [f["name"] for f in report["figures"]] == list(EXPECTED)  # in the figures' numbered order
    for f in report["figures"]:
        name = f["name"]
        assert f["unit"] == EXPECTED[name], f
        assert name in stdout
        if name in WITH_BASELINE:
            assert f["value"] > 0 and f["baseline"] > 0 and f["ratio"] > 0, f
        if name != "point lookup p50 during a recompute job":
            assert isinstance(f["ok"], bool), f  # every figure with a target says whether it met it
    figures = {f["name"]: f for f in report["figures"]}
    inversions = figures[f"burst of {BURST:,}: priority inversions"]
    assert inversions["value"] == inversions["extra"]["priority_inversions"] >= 0
    assert inversions["extra"]["fifo_inversions"] >= 0
    assert figures["submit-to-start, server side, median"]["extra"]["jobs"] == 5
    assert figures[f"recompute job, {ROWS:,} rows, median"]["extra"]["rows"] == ROWS
    assert len(figures[f"recompute job, {ROWS:,} rows, median"]["extra"]["job_runs_s"]) == 1
    assert figures["cancel of a running job, median"]["value"] > 0
    lookups = figures["point lookup p50 during a recompute job"]["extra"]
    assert lookups["busy_lookups"] > 0 and lookups["idle_lookups"] >= 10
    assert report["meta"]["via"] and report["meta"]["table"]["rows"] == ROWS
    for i, name in enumerate(FIGURES, 1):  # a one-line summary and its command, per figure
        assert f"[{i}] " in stdout
        assert f"$ python3 -m benchmarks jobs --only {name} " in stdout
    assert len(report["meta"]["load_average_at_start"]) == len(report["meta"]["load_average_at_end"]) == 3
    assert "load average" in stdout


def record(seq: int, priority: int, claimed_at: float) -> JobRecord:
    return replace(_BASE, id=f"j{seq}", seq=seq, priority=priority, claimed_at=claimed_at)


_BASE = JobRecord(
    id="",
    seq=0,
    job_type="custom",
    parameters={"type": "sleep", "seconds": 0},
    priority=5,
    status="completed",
    progress=100.0,
    result=None,
    error=None,
    created_at="2026-01-01T00:00:00.000Z",
    started_at=None,
    completed_at=None,
    webhook_url=None,
    webhook_events=None,
    timeout_seconds=3600.0,
    owner_key=None,
    idempotency_key=None,
    attempts=1,
    max_attempts=3,
    retry_safe=True,
    cancel_requested=False,
    holder=None,
    lease=None,
    heartbeat_at=None,
    claimed_at=None,
)


def test_start_order_counts_only_jobs_that_were_waiting() -> None:
    # answered: when each submit returned. j1 (priority 1) starts at 10 while j2 (priority 9, queued at 5) waits:
    # an inversion. j3 (priority 9) was queued at 11, after j1 started: none. j4 and j5 share a claim step: none.
    records = [record(1, 1, 10.0), record(2, 9, 12.0), record(3, 9, 13.0), record(4, 2, 20.0), record(5, 8, 20.0)]
    order = start_order(records, [1.0, 5.0, 11.0, 15.0, 16.0])
    assert order["priority_inversions"] == 1
    assert order["examples"] == [{"started": "j1", "priority": 1, "waiting": "j2", "its_priority": 9}]
    assert order["fifo_inversions"] == 0
    assert order["claim_steps"] == 4


def test_start_order_counts_fifo_inversions_within_a_priority() -> None:
    records = [record(1, 5, 30.0), record(2, 5, 20.0), record(3, 5, 40.0)]  # j2 before j1, then j3: one swap
    order = start_order(records, [1.0, 2.0, 3.0])
    assert order["fifo_inversions"] == 1 and order["priority_inversions"] == 0


def test_in_order_starts_have_no_inversions() -> None:
    records = [record(i, 10 - i, 10.0 + i) for i in range(10)]  # all queued first, highest priority first
    order = start_order(records, [1.0] * 10)
    assert order["priority_inversions"] == order["fifo_inversions"] == 0


def test_epoch_reads_the_stores_iso_texts() -> None:
    assert epoch("1970-01-01T00:00:01.250Z") == 1.25
