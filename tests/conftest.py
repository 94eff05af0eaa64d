"""Shared fixtures: one real local Ray per test session, one engine Database on a temporary data directory."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

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
    database = engine.connect(
        data_dir=str(tmp_path_factory.mktemp("data")),
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
