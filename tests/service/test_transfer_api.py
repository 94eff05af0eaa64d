"""Import, export and streaming over REST: real uvicorn, real job workers, real files, a real loopback file
server for ``source_url`` imports (SSRF refusals aimed only at loopback addresses off the allow-list)."""

from __future__ import annotations

import gzip
import http.server
import io
import json
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from auth_helpers import ADMIN_KEY, READ_ONLY, bearer, new_key

from engine import Database
from engine.transfer import exporter

FINISHED = ("completed", "failed", "cancelled")
SCHEMA = {"columns": {"id": {"type": "int", "nullable": False}, "name": "string", "age": "int", "meta": "json"}}
CSV = b'id,name,age,meta\n1,Ada,36,"{""a"": 1}"\n2,Bob,-4,\n3,Cy,40,[1]\n'


def finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        info = client.get(f"/batch/jobs/{job_id}").json()
        if info["status"] in FINISHED:
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.05)


@pytest.fixture
def table(client: httpx.Client, name: str) -> str:
    r = client.post("/tables", json={"name": name, "schema": SCHEMA, "primary_key": "id", "shards": 2})
    assert r.status_code == 200, r.text
    return name


@pytest.fixture(scope="module")
def files() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A loopback HTTP server of in-memory files."""
    served: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", served
    server.shutdown()


def _rows(client: httpx.Client, table: str) -> list[dict[str, Any]]:
    r = client.post(f"/tables/{table}/query", json={"order_by": ["id"], "limit": 1000})
    assert r.status_code == 200, r.text
    return r.json()["rows"]


# -- import -------------------------------------------------------------------------------------------------------
def test_multipart_upload_imports_with_rules(client: httpx.Client, table: str) -> None:
    fields = {
        "table_name": table,
        "format": "csv",
        "on_error": "skip",
        "validation_rules": json.dumps({"age": {"min": 0}}),
    }
    r = client.post("/batch/import", data=fields, files={"file": ("people.csv", CSV, "text/csv")})
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["job_type"] == "data_import" and info["parameters"]["table_name"] == table
    assert info["parameters"]["format"] == "csv" and info["parameters"]["source_url"].startswith("upload://")
    done = finished(client, info["job_id"])
    assert done["status"] == "completed", done
    result = done["result"]
    assert (result["rows_processed"], result["rows_imported"], result["rows_skipped"]) == (3, 2, 1)
    assert result["errors"] == [{"row": 3, "column": "age", "error": "age: '-4' is below the minimum 0"}]
    assert [r["meta"] for r in _rows(client, table)] == [{"a": 1}, [1]]


def test_fail_imports_nothing_and_keeps_the_bad_rows(client: httpx.Client, table: str) -> None:
    fields = {
        "table_name": table,
        "format": "csv",
        "on_error": "fail",
        "validation_rules": json.dumps({"age": {"min": 0}}),
    }
    info = client.post("/batch/import", data=fields, files={"file": ("p.csv", CSV)}).json()
    done = finished(client, info["job_id"])
    assert done["status"] == "failed" and "nothing was imported" in done["error"]
    assert done["result"]["errors"][0]["row"] == 3
    assert _rows(client, table) == []


def test_source_url_over_http(client: httpx.Client, table: str, files: tuple[str, dict[str, bytes]]) -> None:
    base, served = files
    served["/people.jsonl.gz"] = gzip.compress(b'{"id": 7, "name": "Gz"}\n{"id": 8, "name": "Zip"}\n')
    body = {"table_name": table, "format": "jsonl", "source_url": f"{base}/people.jsonl.gz"}
    info = client.post("/batch/import", json=body).json()
    assert finished(client, info["job_id"])["status"] == "completed"
    assert [r["name"] for r in _rows(client, table)] == ["Gz", "Zip"]


@pytest.mark.parametrize(
    ("path", "problem"), [("/missing.csv", "404"), ("/truncated.csv.gz", "truncated gzip"), ("/not.gz", "gzip")]
)
def test_sources_that_fail_fail_the_job(
    client: httpx.Client, table: str, files: tuple[str, dict[str, bytes]], path: str, problem: str
) -> None:
    """(Time-outs: tests/transfer/test_sources.py, with a short timeout.)"""
    base, served = files
    served["/truncated.csv.gz"] = gzip.compress(CSV)[:-20]
    served["/not.gz"] = CSV  # named gzip, but is not
    info = client.post("/batch/import", json={"table_name": table, "format": "csv", "source_url": base + path}).json()
    done = finished(client, info["job_id"])
    assert done["status"] == "failed" and problem in done["error"], done
    assert _rows(client, table) == []


@pytest.mark.parametrize("host", ["127.0.0.2", "2130706434", "0x7f000002", "0177.0.0.2", "[::ffff:127.0.0.2]"])
def test_loopback_off_the_allow_list_is_refused(client: httpx.Client, table: str, host: str) -> None:
    info = client.post(
        "/batch/import", json={"table_name": table, "format": "csv", "source_url": f"http://{host}:9/x.csv"}
    ).json()
    done = finished(client, info["job_id"])
    assert done["status"] == "failed", done
    assert "refused to fetch" in done["error"] and "loopback" in done["error"], done


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"format": "xml"}, 400, "format"),
        ({"table_name": "no_such_table"}, 404, None),
        ({"batch_size": 0}, 422, None),
        ({"batch_size": 10_001}, 422, None),
        ({"mapping": {"name": "nope"}}, 400, None),
        ({"validation_rules": {"name": {"pattern": "(a)\\1"}}}, 400, "validation_rules.name.pattern"),
        ({"validation_rules": {"name": {"between": 1}}}, 400, "validation_rules.name.between"),
        ({"on_error": "ignore"}, 422, None),
        ({"source_url": "ftp://127.0.0.1/x.csv"}, 400, None),
        ({"source_url": "file:///etc/passwd"}, 400, None),
    ],
)
def test_bad_import_bodies_are_refused_up_front(
    client: httpx.Client, table: str, body: dict[str, Any], status: int, field: str | None
) -> None:
    request = {"table_name": table, "format": "csv", "source_url": "http://127.0.0.1:9/x.csv", **body}
    r = client.post("/batch/import", json=request)
    assert r.status_code == status, r.text
    if field is not None:
        assert r.json().get("field") == field, r.text


def test_generic_jobs_check_import_parameters_when_they_run(client: httpx.Client, table: str) -> None:
    r = client.post(
        "/batch/jobs",
        json={
            "job_type": "data_import",
            "parameters": {"table_name": table, "format": "xml", "source_url": "http://127.0.0.1:9/x"},
        },
    )
    done = finished(client, r.json()["job_id"])
    assert done["status"] == "failed" and "format" in done["error"]


# -- export -------------------------------------------------------------------------------------------------------
def _fill(client: httpx.Client, table: str, n: int) -> None:
    rows = [{"id": i, "name": f"=cmd{i}" if i == 0 else f"n{i}", "age": i, "meta": {"i": i}} for i in range(n)]
    r = client.post(f"/tables/{table}/rows/batch", json={"rows": rows})
    assert r.status_code == 200, r.text


def test_export_download_with_range_then_expiry(client: httpx.Client, db: Database, table: str) -> None:
    _fill(client, table, 100)
    body = {
        "table_name": table,
        "format": "parquet",
        "where": [{"column": "age", "operator": ">=", "value": 10}],
        "order_by": ["id"],
    }
    info = client.post("/batch/export", json=body).json()
    assert info["job_type"] == "data_export" and info["parameters"]["format"] == "parquet"
    done = finished(client, info["job_id"])
    assert done["status"] == "completed", done
    result = done["result"]
    assert result["rows_exported"] == 90 and result["format"] == "parquet"
    assert result["download_url"] == f"/api/v1/batch/exports/{info['job_id']}/download"
    url = result["download_url"].removeprefix("/api/v1")
    whole = client.get(url)
    assert whole.status_code == 200 and len(whole.content) == result["file_size_bytes"]
    assert pq.read_table(io.BytesIO(whole.content))["id"].to_pylist() == list(range(10, 100))
    part = client.get(url, headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.content == b"PAR1"
    exporter.sweep(db.root, now=time.time() + 2 * 86_400)  # a day past its expires_at
    gone = client.get(url)
    assert gone.status_code == 410 and gone.json()["code"] == "export_expired"


def test_csv_export_escapes_formulas_and_compresses(client: httpx.Client, table: str) -> None:
    _fill(client, table, 3)
    info = client.post(
        "/batch/export", json={"table_name": table, "format": "csv", "compress": True, "order_by": ["id"]}
    ).json()
    result = finished(client, info["job_id"])["result"]
    text = gzip.decompress(client.get(result["download_url"].removeprefix("/api/v1")).content).decode()
    assert "'=cmd0" in text


def test_bad_exports(client: httpx.Client, table: str) -> None:
    assert client.post("/batch/export", json={"table_name": table, "format": "xml"}).status_code == 400
    assert client.post("/batch/export", json={"table_name": "nope_table", "format": "csv"}).status_code == 404
    assert (
        client.post("/batch/export", json={"table_name": table, "format": "csv", "columns": ["nope"]}).status_code
        == 400
    )
    empty = client.post("/batch/export", json={"table_name": table, "format": "csv"}).json()
    done = finished(client, empty["job_id"])
    assert done["status"] == "failed" and "0 rows" in done["error"]
    assert client.get("/batch/exports/0123456789abcdef/download").status_code == 404
    assert client.get(f"/batch/exports/{empty['job_id']}/download").status_code == 404


# -- streaming ----------------------------------------------------------------------------------------------------
def test_stream_formats(client: httpx.Client, table: str) -> None:
    _fill(client, table, 25)
    url = f"/batch/stream/{table}"
    jsonl = client.post(url, json={"format": "jsonl", "chunk_size": 10, "order_by": ["id"]})
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert [r["id"] for r in lines] == list(range(25)) and lines[1]["meta"] == {"i": 1}
    array = client.post(
        url, json={"config": {"format": "json"}, "where": [{"column": "id", "operator": "<", "value": 3}]}
    )
    assert sorted(r["id"] for r in array.json()) == [0, 1, 2]
    csv = client.post(
        url, json={"format": "csv", "columns": ["id", "name"], "order_by": ["id"], "include_headers": False}
    )
    assert csv.text.splitlines()[1] == '1,"n1"'
    arrow = client.post(url, json={"format": "arrow", "order_by": ["id"]})
    assert arrow.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert pa.ipc.open_stream(arrow.content).read_all()["id"].to_pylist() == list(range(25))
    with client.stream("POST", url, json={"format": "jsonl", "compression": "gzip", "chunk_size": 5}) as r:
        assert r.headers["content-encoding"] == "gzip"
        inflate, seen = zlib.decompressobj(wbits=31), b""
        for chunk in r.iter_raw():
            seen += inflate.decompress(chunk)
            assert seen.endswith(b"\n") or not seen  # every chunk decodes to whole lines
    assert len(seen.splitlines()) == 25
    bad = client.post(url, json={"format": "jsonl", "compression": "br"})
    assert bad.status_code == 422
    assert client.post(url, json={"chunk_size": 0}).status_code == 422


def test_a_large_stream_stays_bounded(client: httpx.Client, db: Database, name: str) -> None:
    """200,000 rows streamed 100 at a time: all arrive, in order, while this process's memory barely grows."""
    import psutil

    t = db.create_table(name, {"id": "int", "text": "string"}, primary_key="id", shards=2)
    n = 200_000
    t.insert(pa.table({"id": pa.array(range(n)), "text": pa.array(["x" * 100] * n)}))
    process = psutil.Process()
    before, peak, count = process.memory_info().rss, 0, 0
    with client.stream(
        "POST", f"/batch/stream/{name}", json={"format": "jsonl", "chunk_size": 100, "order_by": ["id"]}
    ) as r:
        for _line in r.iter_lines():
            count += 1
            if count % 20_000 == 0:
                peak = max(peak, process.memory_info().rss - before)
    assert count == n
    assert peak < 200 * 2**20, f"the server grew by {peak / 2**20:.0f} MB streaming {n} rows"


def test_streams_per_key_are_capped(serve: Callable[..., str], table: str, client: httpx.Client) -> None:
    _fill(client, table, 10)
    api = serve(auth="required", admin_key=ADMIN_KEY, max_concurrent_streams=1) + "/api/v1"
    key, _ = new_key(api, READ_ONLY)
    with httpx.Client(base_url=api, headers=bearer(key), timeout=30) as c:
        with c.stream("POST", f"/batch/stream/{table}", json={"chunk_size": 1}) as first:
            assert first.status_code == 200
            second = c.post(f"/batch/stream/{table}", json={})
            assert second.status_code == 429, second.text
        deadline = time.monotonic() + 10  # the server sees the first client go when it next sends or listens
        while (again := c.post(f"/batch/stream/{table}", json={})).status_code == 429 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert again.status_code == 200, again.text  # the first one's slot is free again


def test_a_cancelled_import_imports_nothing(client: httpx.Client, db: Database, table: str) -> None:
    body = b"id,name,age\n" + b"".join(b"%d,n%d,%d\n" % (i, i, i % 90) for i in range(300_000))
    fields = {"table_name": table, "format": "csv", "batch_size": "100"}
    info = client.post("/batch/import", data=fields, files={"file": ("big.csv", body)}).json()
    deadline = time.monotonic() + 60
    while client.get(f"/batch/jobs/{info['job_id']}").json()["status"] == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert client.post(f"/batch/jobs/{info['job_id']}/cancel").status_code == 200
    done = finished(client, info["job_id"])
    assert done["status"] == "cancelled", done
    assert client.get(f"/tables/{table}/rows/count").json()["row_count"] == 0
    assert not os.path.exists(os.path.join(db.root, "imports", info["job_id"]))  # its spool is gone
