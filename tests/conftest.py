"""Shared fixtures: one real local Ray per test session, one engine Database on a temporary data directory."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import engine

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
_names = itertools.count()


@pytest.fixture(scope="session")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[engine.Database]:
    """A Database on real Ray (num_cpus=2) and real Lance files; shared by the whole session.

    The UDF sandbox gets tight limits (the defaults are 2 s CPU, 5 s wall clock, 512 MB), so the tests that make
    UDFs overrun them stay quick.
    """
    imports = tmp_path_factory.mktemp("imports")
    database = engine.connect(
        data_dir=str(tmp_path_factory.mktemp("data")),
        import_dir=str(imports),  # file:// imports may read here (tests/transfer)
        fetch_allowed_hosts=("127.0.0.1",),  # imports from the tests' loopback file servers
        num_cpus=2,
        maintenance_seconds=0,
        udf_cpu_seconds=1.0,
        udf_wall_seconds=3.0,
        udf_memory_mb=384,
    )
    yield database
    database.close()


@pytest.fixture
def name() -> str:
    """A fresh table name per test, so tests sharing the session database never collide."""
    return f"t{next(_names)}_{os.getpid()}"


# Runs `python -m benchmarks` with the results directory moved to the given one.
_BENCHMARK = (
    "import sys; from pathlib import Path; import benchmarks.common as common; "
    "common.RESULTS = Path(sys.argv[1]); from benchmarks.__main__ import main; sys.exit(main(sys.argv[2:]))"
)


@pytest.fixture
def run_benchmark() -> Callable[..., str]:
    """``run_benchmark(results_dir, suite, *args)``: a benchmark suite in a subprocess (the harness shuts Ray down
    when it finishes, which would stop the session's shared Ray here); returns its standard output."""

    def run(results: Path, suite: str, *args: str) -> str:
        cmd = [sys.executable, "-c", _BENCHMARK, str(results), suite, *args]
        root = Path(__file__).resolve().parent.parent
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        return done.stdout

    return run
