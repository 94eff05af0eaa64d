"""A third-party plugin installed for real: ``tests/fixtures/tessera_plugin_example`` built and installed by pip into a
directory that only ``PYTHONPATH`` names, then used in a stored computed column by a process with its own local Ray,
so its shard hosts have to find the plugin on their own. Without the plugin, a call of its function is a 400."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import engine
from service import create_app
from service.background import live_server

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tessera_plugin_example"

# Run in the subprocess: a table with a stored column computed by the plugin's reverse(), on the shard hosts.
SCRIPT = """
import json, sys
import ray
import engine

db = engine.connect(data_dir=sys.argv[1], num_cpus=1, maintenance_seconds=0)
try:
    words = db.create_table("words", {"id": "int", "word": "string"}, primary_key="id", shards=2)
    words.add_computed_column("backwards", "expression", "reverse(word)")  # stored: computed as rows are written
    words.insert([{"id": 1, "word": "tessera"}, {"id": 2, "word": "plugin"}, {"id": 3, "word": None}])
    words.add_computed_column("shout", "expression", "upper(reverse(word)) + '!'")  # computed over stored rows
    rows = words.query(order_by=[{"column": "id", "direction": "asc"}]).to_pylist()
    hosts = [ray.get(h.plugins.remote()) for h in db.coordinator.hosts]
    print(json.dumps({"rows": rows, "hosts": hosts}))
finally:
    db.close()
    ray.shutdown()
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture package installed by pip (offline: no index, no build isolation) into a directory of its own."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(FIXTURE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index"]
    command += ["--quiet", "--target", str(target), str(source)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (target / "tessera_plugin_example" / "__init__.py").exists()
    return target


def environment(plugin_dir: Path) -> dict[str, str]:
    """This environment with the plugin on PYTHONPATH, and no TESSERA_* or RAY_ADDRESS that would point elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_") and k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(plugin_dir)
    return env


def test_an_installed_plugins_function_computes_on_the_shard_hosts(installed: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "data")],
        cwd=tmp_path,
        env=environment(installed),
        capture_output=True,
        text=True,
        timeout=240,
        start_new_session=True,  # its Ray is its own: nothing of it outlives the session
    )
    assert done.returncode == 0, done.stderr[-5000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(r["word"], r["backwards"], r["shout"]) for r in result["rows"]] == [
        ("tessera", "aresset", "ARESSET!"),
        ("plugin", "nigulp", "NIGULP!"),
        (None, None, None),
    ]
    for host in result["hosts"]:  # each host loaded the plugin from the entry point PYTHONPATH made visible
        [entry] = [e for e in host["functions"] if e["name"] == "reverse"]
        assert entry == {
            "name": "reverse",
            "plugin": "example",
            "module": "tessera_plugin_example",
            "distribution": "tessera-plugin-example 0.1.0",
        }


def test_tessera_plugins_lists_the_installed_plugin(installed: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "service", "plugins"]
    listed = subprocess.run(
        [*command, "--json"], cwd=tmp_path, env=environment(installed), capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    functions = {e["name"]: e for e in json.loads(listed.stdout)["functions"]}
    assert functions["reverse"]["distribution"] == "tessera-plugin-example 0.1.0"
    assert functions["upper"]["plugin"] == "tessera.text"  # the built-ins beside it
    text = subprocess.run(command, cwd=tmp_path, env=environment(installed), capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    [line] = [line.split() for line in text.stdout.splitlines() if line.strip().startswith("reverse ")]
    assert line == ["reverse", "example", "tessera_plugin_example", "tessera-plugin-example", "0.1.0"]


@pytest.fixture
def client(db: engine.Database) -> Iterator[httpx.Client]:
    with live_server(create_app(db, db.settings)) as url, httpx.Client(base_url=f"{url}/api/v1", timeout=60) as c:
        yield c


def test_without_the_plugin_its_function_is_a_400_naming_it(client: httpx.Client, name: str) -> None:
    r = client.post(
        "/tables", json={"name": name, "schema": {"columns": {"id": "int", "word": "string"}}, "primary_key": "id"}
    )
    assert r.status_code == 200, r.text
    body = {"name": "backwards", "column_type": "expression", "expression": "upper(reverse(word))"}
    r = client.post(f"/tables/{name}/computed-columns", json=body)
    assert r.status_code == 400, r.text
    error = r.json()
    assert error["code"] == "invalid_expression"
    assert "'reverse' is not a known function" in error["detail"] and (error["line"], error["col"]) == (1, 7)
    assert client.get(f"/tables/{name}/computed-columns").json() in ([], {"computed_columns": []})
