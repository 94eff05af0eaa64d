"""Keys across real server processes: the first start in required mode prints an administrator key once, two
``tessera serve`` processes on one data directory see each other's revocations at once, and usage counted in a
process reaches the catalog when it stops."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import ray
from auth_helpers import READ_ONLY, bearer

from engine import Database

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def server(data: Path, *flags: str) -> Iterator[tuple[str, list[str]]]:
    """``tessera serve --auth required`` in a subprocess joining this session's Ray; yields its API URL and the
    lines it printed before listening. Stopped with Ctrl-C (SIGINT), as an operator would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "service", "serve", "--port", "0", "--data-dir", str(data), "--auth", "required"]
    command += ["--ray-address", ray.get_runtime_context().gcs_address, *flags]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line.rstrip("\n"))
            if line.startswith("Tessera listening on") or len(seen) > 50:
                break
        assert seen and seen[-1].startswith("Tessera listening on"), (seen, proc.poll())
        yield seen[-1].split()[3] + "/api/v1", seen
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        assert code == 0, proc.stderr.read() if proc.stderr else ""


def _printed_key(lines: list[str]) -> str | None:
    for i, line in enumerate(lines):
        if "administrator API key, shown once" in line:
            return lines[i + 1].strip()
    return None


def test_first_start_key_and_revocation_across_processes(tmp_path: Path, db: Database) -> None:
    data = tmp_path / "data"
    with server(data) as (first, lines):
        admin = _printed_key(lines)
        assert admin is not None and admin.startswith("pxt_live_"), lines
        with server(data) as (second, again):
            assert _printed_key(again) is None  # only the first start makes one
            r = httpx.post(
                f"{second}/auth/api-keys", json={"name": "reader", "permissions": READ_ONLY}, headers=bearer(admin)
            )
            assert r.status_code == 200, r.text
            key, key_id = r.json()["api_key"], r.json()["key_info"]["id"]
            assert httpx.get(f"{first}/tables", headers=bearer(key)).status_code == 200
            r = httpx.post(f"{second}/auth/api-keys/revoke", json={"key_id": key_id}, headers=bearer(admin))
            assert r.status_code == 200, r.text
            r = httpx.get(f"{first}/tables", headers=bearer(key))  # the other process, at once
            assert (r.status_code, r.json()["reason"]) == (401, "revoked")
        assert httpx.get(f"{first}/tables").status_code == 401  # required mode: no key, no entry
    with sqlite3.connect(data / "catalog.db") as conn:  # both stopped: their usage counts were written
        counted = dict(conn.execute("SELECT endpoint, SUM(requests) FROM api_key_usage GROUP BY endpoint"))
    assert counted["POST /api/v1/auth/api-keys"] == 1 and counted["GET /api/v1/tables"] == 1
