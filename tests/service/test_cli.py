"""``tessera serve``: settings from flags and ``TESSERA_*``, the refusals, and a real start in a subprocess."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import ray

from engine import Database
from service.cli import _parser, is_loopback, main, settings_from

ROOT = Path(__file__).resolve().parents[2]


def args(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(["serve", *argv])


def test_defaults() -> None:
    s = settings_from(args(), env={})
    assert (s.host, s.port, s.data_dir, s.ray_address, s.auth) == ("127.0.0.1", 8000, "./tessera-data", None, "open")


def test_environment_then_flags() -> None:
    env = {"TESSERA_PORT": "9001", "TESSERA_DATA_DIR": "/tmp/from-env", "TESSERA_SHARDS": "3", "TESSERA_NUM_CPUS": "2"}
    s = settings_from(args(), env=env)
    assert (s.port, s.data_dir, s.shards, s.num_cpus) == (9001, "/tmp/from-env", 3, 2)
    s = settings_from(args("--port", "9002", "--data-dir", "/tmp/flag", "--ray-address", "auto"), env=env)
    assert (s.port, s.data_dir, s.shards, s.ray_address) == (9002, "/tmp/flag", 3, "auto")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.5"])
def test_open_mode_on_loopback_is_allowed(host: str) -> None:
    assert is_loopback(host)
    assert settings_from(args("--host", host), env={}).host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "example.com"])
def test_open_mode_elsewhere_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="refusing to serve without authentication"):
        settings_from(args("--host", host), env={})
    with pytest.raises(ValueError, match="refusing"):
        settings_from(args(), env={"TESSERA_HOST": host})


def test_required_mode_takes_an_administrator_key_or_makes_one() -> None:
    s = settings_from(args("--host", "0.0.0.0", "--auth", "required"), env={})  # the first start prints a key
    assert (s.auth, s.admin_key) == ("required", None)
    key = "k" * 32
    s = settings_from(args("--host", "0.0.0.0", "--auth", "required"), env={"TESSERA_ADMIN_KEY": key})
    assert (s.auth, s.admin_key) == ("required", key)
    assert settings_from(args("--auth", "required", "--admin-key", key), env={}).admin_key == key
    for weak in ("k", "short-key", "has a space in it 0123"):
        with pytest.raises(ValueError, match="16 to 256 printable"):
            settings_from(args("--auth", "required", "--admin-key", weak), env={})


def test_open_mode_on_a_remote_address_needs_the_operator_to_say_so() -> None:
    s = settings_from(args("--host", "0.0.0.0", "--allow-open-remote"), env={})
    assert (s.auth, s.host, s.allow_open_remote) == ("open", "0.0.0.0", True)
    assert settings_from(args("--host", "0.0.0.0"), env={"TESSERA_ALLOW_OPEN_REMOTE": "1"}).allow_open_remote
    with pytest.raises(ValueError, match="yes/no"):
        settings_from(args("--host", "0.0.0.0"), env={"TESSERA_ALLOW_OPEN_REMOTE": "perhaps"})


def test_rate_limits_can_be_turned_off() -> None:
    assert settings_from(args(), env={}).rate_limits == "on"
    assert settings_from(args("--rate-limits", "off"), env={}).rate_limits == "off"
    assert settings_from(args(), env={"TESSERA_RATE_LIMIT_BATCH_PER_MINUTE": "0"}).rate_limit_batch_per_minute == 0


def test_allowed_hosts_and_cors_origins() -> None:
    assert (settings_from(args(), env={}).allowed_hosts, settings_from(args(), env={}).cors_origins) == ((), ())
    env = {"TESSERA_ALLOWED_HOSTS": "tessera.local, *.corp.example", "TESSERA_CORS_ORIGINS": "http://localhost:3000"}
    s = settings_from(args(), env=env)
    assert s.allowed_hosts == ("tessera.local", "*.corp.example")
    assert s.cors_origins == ("http://localhost:3000",)
    s = settings_from(args("--allowed-hosts", "a.example,b.example", "--cors-origins", "https://x.example,"), env=env)
    assert (s.allowed_hosts, s.cors_origins) == (("a.example", "b.example"), ("https://x.example",))


@pytest.mark.parametrize("host", ["tessera.local:8000", "http://tessera.local", "a.*.example", "*example.com"])
def test_an_allowed_host_that_cannot_match_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="cannot match a Host header"):
        settings_from(args("--allowed-hosts", host), env={})


@pytest.mark.parametrize("origin", ["http://localhost:3000/", "localhost:3000", "https://app.example/path"])
def test_a_cors_origin_with_a_path_or_without_scheme_is_refused(origin: str) -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        settings_from(args(), env={"TESSERA_CORS_ORIGINS": origin})


def test_bad_environment_value() -> None:
    with pytest.raises(ValueError, match="TESSERA_PORT"):
        settings_from(args(), env={"TESSERA_PORT": "eighty"})


def test_main_exits_2_on_refusal(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESSERA_AUTH", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve without authentication on 0.0.0.0" in err


def test_bad_flag_exits_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--auth", "sometimes"])
    assert exc.value.code == 2


def test_plugins_lists_what_is_registered_per_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    headings = [line.split(" (")[0] for line in out.splitlines() if line and not line.startswith(" ")]
    assert headings == ["functions", "udf languages", "formats", "job types", "media operations"]
    assert re.search(r"^  json_get +tessera\.json +plugins\.functions\.json +tessera \S+$", out, re.MULTILINE)
    assert re.search(r"^  sql +tessera\.udf_languages +plugins\.udf_languages +tessera \S+$", out, re.MULTILINE)
    assert re.search(r"^  csv +tessera\.formats\.csv +plugins\.formats\.csv +tessera \S+$", out, re.MULTILINE)
    assert re.search(r"^  sleep +tessera\.jobs +plugins\.jobs +tessera \S+$", out, re.MULTILINE)


def test_plugins_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {e["name"] for e in listed["udf_languages"]} == {"javascript", "python", "sql"}
    upper = next(e for e in listed["functions"] if e["name"] == "upper")
    assert (upper["plugin"], upper["module"]) == ("tessera.text", "plugins.functions.text")
    assert upper["distribution"].startswith("tessera ")
    assert {e["name"] for e in listed["job_types"]} == {
        "batch_operation",
        "data_export",
        "data_import",
        "sleep",
        "table_recompute",
    }
    assert listed["media_operations"] == []


def test_plugins_names_a_plugin_that_does_not_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    info = tmp_path / "tessera_broken-1.0.dist-info"  # an installed distribution whose entry point does not import
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tessera-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[tessera]\nbroken = tessera_not_there\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["plugins"]) == 1
    err = capsys.readouterr().err
    assert "tessera: error: cannot load the tessera plugin broken = tessera_not_there (tessera-broken 1.0)" in err


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_python_m_service_refuses_open_mode_on_all_interfaces() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to serve without authentication" in result.stderr


def test_serve_starts_and_stops(tmp_path: Path, db: Database) -> None:
    """The whole command in a subprocess, joining this session's Ray cluster rather than starting another."""
    data = tmp_path / "data"
    command = [sys.executable, "-m", "service", "serve", "--port", "0", "--data-dir", str(data)]
    command += ["--ray-address", ray.get_runtime_context().gcs_address]
    proc = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # printed once the socket is bound; Ray may log a line or two before it
            seen.append(line)
            if line.startswith("Tessera listening on") or len(seen) > 50:
                break
        assert line.startswith("Tessera listening on http://127.0.0.1:"), (seen, proc.poll())
        assert line.rstrip().endswith(f"(data: {data})")
        url = line.split()[3]
        assert httpx.get(f"{url}/health", timeout=30).json()["status"] == "healthy"
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/api/v1/ready", timeout=30).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        r = httpx.post(f"{url}/api/v1/tables", json={"name": "cli", "schema": {"columns": {"x": "int"}}})
        assert r.status_code == 200
        assert (data / "catalog.db").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
