"""Test-only fault points: ``TESSERA_FAULT=<step>`` kills this process with SIGKILL when it reaches ``step``.

Steps: ``after_stage_one``, ``after_stage_all``, ``before_commit``, ``after_commit``. Used by the crash tests
to stop a server at each point of a write and check that, after a restart, the write is all there or absent.
"""

from __future__ import annotations

import os
import signal

STEPS = ("after_stage_one", "after_stage_all", "before_commit", "after_commit")


def point(step: str) -> None:
    if os.environ.get("TESSERA_FAULT") == step:
        os.kill(os.getpid(), signal.SIGKILL)
