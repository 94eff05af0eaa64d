"""Helpers shared by the benchmark suites: data, timing, a server subprocess, the report."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa

RESULTS = Path(__file__).parent / "results"


def make_table(rows: int, seed: int = 0, start: int = 0) -> pa.Table:
    """(int id, float price, int quantity, string name): the shape every figure in the README uses."""
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + rows, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "price": rng.random(rows) * 100,
            "quantity": rng.integers(0, 1000, rows),
            "name": pa.array([f"item-{i}" for i in ids.tolist()]),
        }
    )


COLUMNS = {"id": "int", "price": "float", "quantity": "int", "name": "string"}


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, list[float]]:
    """Median seconds of ``repeat`` runs (these machines are noisy: medians and ratios, not single runs)."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), runs


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    ok: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return None if not self.baseline else self.value / self.baseline


def report(suite: str, figures: list[Figure], meta: dict[str, Any]) -> None:
    print()
    print(f"{'figure':44} {'value':>14} {'baseline':>14} {'ratio':>7}  target")
    for f in figures:
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else ""
        base = f"{f.baseline:,.1f}" if f.baseline is not None else ""
        verdict = "" if f.ok is None else ("  ok" if f.ok else "  MISSED")
        print(f"{f.name:44} {f.value:>14,.1f} {base:>14} {ratio:>7}  {f.target} ({f.unit}){verdict}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{suite}.json"
    out.write_text(
        json.dumps(
            {"suite": suite, "meta": meta, "figures": [asdict(f) | {"ratio": f.ratio} for f in figures]}, indent=2
        )
    )
    print(f"\nwritten {out}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``tessera serve`` in a subprocess on 127.0.0.1, waited for until /ready answers."""

    def __init__(self, data_dir: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        cmd = [sys.executable, "-m", "service", "serve", "--port", str(self.port), "--data-dir", data_dir, *args]
        self.proc = subprocess.Popen(
            cmd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self, timeout: float = 90) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited: {self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ''}"
                )
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("server did not become ready")

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
