"""SQL UDFs over a real server on 127.0.0.1: SQL's '+' adds numbers, so registering one that would join strings with
the engine's '+' is a 400 naming the '+', and nothing is registered; '||' joins them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest


@pytest.fixture
def labels(client: httpx.Client, name: str) -> str:
    schema = {"columns": {"id": "int", "label": "string", "n": "int"}}
    r = client.post("/tables", json={"name": name, "schema": schema, "primary_key": "id", "shards": 2})
    assert r.status_code == 200, r.text
    rows = [{"id": 1, "label": "abcdef", "n": 2}, {"id": 2, "label": None, "n": 3}]
    assert client.post(f"/tables/{name}/rows/batch", json={"rows": rows}).status_code == 200
    return name


def register(client: httpx.Client, table: str, code: str, return_type: str = "string") -> httpx.Response:
    body = {
        "name": "suffixed",
        "language": "sql",
        "code": code,
        "parameters": [{"name": "s", "type": "string"}, {"name": "k", "type": "int"}],
        "return_type": return_type,
    }
    return client.post(f"/tables/{table}/udfs", json=body)


def test_plus_of_strings_is_a_400_at_the_plus(
    client: httpx.Client, labels: str, expect_error: Callable[..., dict[str, Any]]
) -> None:
    r = register(client, labels, "s +\n  'x'")
    body = expect_error(r, 400, "udf_compile_error", "'+' adds numbers", "'||' joins strings")
    assert (body["line"], body["col"], body["language"], body["field"]) == (1, 3, "sql", "code"), body
    assert client.get(f"/tables/{labels}/udfs").json() == []
    expect_error(register(client, labels, "k + s"), 400, "udf_compile_error", "'+' adds numbers")


def test_concatenation_and_numeric_plus_still_register(client: httpx.Client, labels: str) -> None:
    assert register(client, labels, "s || 'x'").status_code == 200
    r = client.post(f"/tables/{labels}/udfs/suffixed/execute", json={"s": "abcdef", "k": 1})
    assert r.status_code == 200 and r.json()["result"] == "abcdefx", r.text
    r = client.delete(f"/tables/{labels}/udfs/suffixed")
    assert r.status_code == 200, r.text
    assert register(client, labels, "k + 1", "int").status_code == 200
    r = client.post(f"/tables/{labels}/udfs/suffixed/execute", json={"s": "", "k": 41})
    assert r.status_code == 200 and r.json()["result"] == 42, r.text
