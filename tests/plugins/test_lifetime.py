"""A Database's registry lives as long as the Database: installed when it opens, put back and closed (its sandbox
workers stopped) when it closes, while another Database of the same process keeps its own."""

from __future__ import annotations

import os
import time

import engine
from engine.registry import current
from plugins.udf_languages import SandboxLanguage


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_closing_a_database_closes_its_registry_and_restores_the_one_before(db: engine.Database, name: str) -> None:
    before = current()  # the session database's, unless a test left another open
    again = engine.connect(settings=db.settings, maintenance_seconds=0)
    try:
        assert current() is again.registry and again.registry is not before
        table = again.create_table(name, {"id": "int"}, primary_key="id")
        code = "def twice(x):\n    y = x * 2\n    return y"  # a statement: runs in a sandbox worker
        table.register_udf("twice", "python", code, [{"name": "x", "type": "int"}], "int")
        assert table.execute_udf("twice", {"x": 21}) == 42
        python = again.registry.language("python")
        assert isinstance(python, SandboxLanguage)
        workers = python.runner.pool.pids()
        assert workers and all(alive(pid) for pid in workers)
    finally:
        again.close()
    assert current() is before
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "the closed registry's sandbox workers are still running"
        time.sleep(0.05)
