"""Test-only fault points: ``TESSERA_FAULT=<step>`` kills this process with SIGKILL when it reaches ``step``.

Steps: ``after_stage_one``, ``after_stage_all``, ``before_commit``, ``after_commit``. Used by the crash tests
to stop a server at each point of a write and check that, after a restart, the write is all there or absent.

``Holds`` pauses a write instead, at those steps or at a shard host's ``before_lance_commit``: the fencing tests
hold a stage there past its lease, let another writer take the shard, then let it go on.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

STEPS = ("after_stage_one", "after_stage_all", "before_commit", "after_commit")


def point(step: str) -> None:
    if os.environ.get("TESSERA_FAULT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


class Holds:
    """One-shot pauses, armed by a test: the next writer to reach an armed step writes ``<path>.reached`` and
    waits while the file ``path`` exists (a file, so a test can hold a shard host in another process).

    The wait has a deadline, so a test that forgets to let go cannot wedge a shard for good.
    """

    def __init__(self, deadline_seconds: float = 120.0) -> None:
        self._armed: dict[str, str] = {}
        self._lock = threading.Lock()
        self._deadline = deadline_seconds

    def arm(self, step: str, path: str) -> None:
        with self._lock:
            self._armed[step] = path

    def reach(self, step: str) -> None:
        """A fault point: SIGKILL if ``TESSERA_FAULT`` names ``step``; wait here if a test armed it."""
        point(step)
        if not self._armed:  # the writes' path: one dict lookup when nothing is armed
            return
        with self._lock:
            path = self._armed.pop(step, None)
        if path is None:
            return
        Path(f"{path}.reached").touch()
        deadline = time.monotonic() + self._deadline
        while os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
