"""UDF endpoints over a real server on 127.0.0.1: the seed example in three languages, every status, execute."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

JSON = {"content-type": "application/json"}  # raw bodies need it; httpx sets it only for json=

ErrorCheck = Callable[..., dict[str, Any]]
PARAMS = [{"name": "price", "type": "float"}, {"name": "discount_rate", "type": "float"}]
SEED = {
    "python": "def calculate_discount(price, discount_rate):\n    return price * (1 - discount_rate)",
    "sql": "price * (1 - discount_rate)",
    "javascript": "function calculate_discount(price, discount_rate) { return price * (1 - discount_rate); }",
}
ROW_BY_ROW = {
    "python": "def calculate_discount(price, discount_rate):\n    d = price * discount_rate\n    return price - d",
    "javascript": "function calculate_discount(price, discount_rate) { let d = price * discount_rate; return price - d }",
}
INFO_FIELDS = {
    "id",
    "name",
    "language",
    "code",
    "parameters",
    "return_type",
    "description",
    "deterministic",
    "created_at",
    "updated_at",
    "usage_count",
    "inlined",
    "used_by",
}


@pytest.fixture
def products(client: httpx.Client, name: str) -> str:
    schema = {"columns": {"id": "int", "price": "float", "label": "string"}}
    r = client.post("/tables", json={"name": name, "schema": schema, "primary_key": "id", "shards": 2})
    assert r.status_code == 200, r.text
    rows = [{"id": i, "price": i * 10.0, "label": f"p{i}"} for i in range(1, 11)]
    assert client.post(f"/tables/{name}/rows/batch", json={"rows": rows}).status_code == 200
    return name


def register(client: httpx.Client, table: str, **body: Any) -> httpx.Response:
    return client.post(f"/tables/{table}/udfs", json=body)


def registered(client: httpx.Client, table: str, language: str, code: str | None = None, **more: Any) -> dict[str, Any]:
    body = {
        "name": "calculate_discount",
        "language": language,
        "code": code or SEED[language],
        "parameters": PARAMS,
        "return_type": "float",
        **more,
    }
    r = register(client, table, **body)
    assert r.status_code == 200, r.text
    info: dict[str, Any] = r.json()
    return info


def column(client: httpx.Client, table: str, name: str) -> dict[int, Any]:
    r = client.post(f"/tables/{table}/query", json={"limit": 1000})
    assert r.status_code == 200, r.text
    return {row["id"]: row[name] for row in r.json()["rows"]}


@pytest.mark.parametrize("language", ["python", "sql", "javascript"])
def test_seed_example(client: httpx.Client, products: str, language: str) -> None:
    info = registered(client, products, language, description="10% off", deterministic=True)
    assert set(info) == INFO_FIELDS
    assert info["name"] == "calculate_discount" and info["language"] == language and info["inlined"] is True
    assert info["parameters"] == PARAMS and info["return_type"] == "float" and info["usage_count"] == 0
    assert info["description"] == "10% off" and info["deterministic"] is True
    assert info["created_at"].endswith("Z") and info["created_at"] == info["updated_at"]
    r = client.post(
        f"/tables/{products}/computed-columns",
        json={"name": "discounted", "column_type": "udf", "expression": "calculate_discount(price, 0.2)"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "float"
    assert column(client, products, "discounted") == pytest.approx({i: i * 10.0 * 0.8 for i in range(1, 11)})
    sent = time.perf_counter()
    r = client.post(f"/tables/{products}/udfs/calculate_discount/execute", json={"price": 100, "discount_rate": 0.2})
    round_trip_ms = (time.perf_counter() - sent) * 1000
    assert r.status_code == 200, r.text
    assert r.json()["result"] == pytest.approx(80.0)
    # Timed by the server inside this request (same process, same clock): never nothing, never the whole round trip.
    assert 0 < r.json()["execution_time_ms"] < round_trip_ms
    assert client.get(f"/tables/{products}/udfs/calculate_discount").json()["usage_count"] == 1


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_row_by_row_in_the_sandbox(client: httpx.Client, products: str, language: str) -> None:
    info = registered(client, products, language, ROW_BY_ROW[language])
    assert info["inlined"] is False
    r = client.post(
        f"/tables/{products}/computed-columns",
        json={"name": "d", "column_type": "udf", "expression": "calculate_discount(price, 0.5)"},
    )
    assert r.status_code == 200, r.text
    assert column(client, products, "d") == pytest.approx({i: i * 5.0 for i in range(1, 11)})
    r = client.post(f"/tables/{products}/rows", json={"data": {"id": 99, "price": 8.0, "label": "new"}})
    assert r.status_code == 200, r.text
    assert client.get(f"/tables/{products}/rows/99").json()["data"]["d"] == 4.0


def test_list_get_replace_delete(client: httpx.Client, products: str, expect_error: ErrorCheck) -> None:
    registered(client, products, "sql")
    r = client.get(f"/tables/{products}/udfs")
    assert r.status_code == 200 and [u["name"] for u in r.json()] == ["calculate_discount"]
    r = client.post(
        f"/tables/{products}/computed-columns",
        json={"name": "d", "column_type": "udf", "expression": "calculate_discount(price, 0.5)"},
    )
    assert r.status_code == 200, r.text
    # Replace the code: the stored column that calls it is marked stale until it is recomputed.
    body = {"language": "python", "code": ROW_BY_ROW["python"], "parameters": PARAMS, "return_type": "float"}
    r = client.put(f"/tables/{products}/udfs/calculate_discount", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["language"] == "python" and r.json()["used_by"] == ["d"]
    assert client.get(f"/tables/{products}/computed-columns/d").json()["stale"] is True
    r = client.post(f"/tables/{products}/computed-columns/d/recompute")
    assert r.status_code == 200, r.text
    assert client.get(f"/tables/{products}/computed-columns/d").json()["stale"] is False
    r = client.put(f"/tables/{products}/udfs/calculate_discount", json={**body, "return_type": "int"})
    expect_error(r, 409, "udf_in_use", "d")
    r = client.put(f"/tables/{products}/udfs/calculate_discount", json={**body, "name": "other"})
    expect_error(r, 400, "invalid_udf", "other")
    expect_error(client.delete(f"/tables/{products}/udfs/calculate_discount"), 409, "udf_in_use", "d")
    assert client.delete(f"/tables/{products}/computed-columns/d").status_code == 200
    r = client.delete(f"/tables/{products}/udfs/calculate_discount")
    assert r.status_code == 200 and r.json() == {"message": "UDF 'calculate_discount' deleted successfully"}
    assert client.get(f"/tables/{products}/udfs").json() == []
    expect_error(client.get(f"/tables/{products}/udfs/calculate_discount"), 404, "udf_not_found", "calculate_discount")
    expect_error(client.put(f"/tables/{products}/udfs/nope", json=body), 404, "udf_not_found", "nope")


def test_errors(client: httpx.Client, products: str, expect_error: ErrorCheck) -> None:
    registered(client, products, "python")
    base = {"name": "f", "language": "python", "parameters": [{"name": "x", "type": "int"}], "return_type": "int"}
    expect_error(register(client, products, **{**base, "name": "calculate_discount", "code": "x"}), 409, "udf_exists")
    r = register(client, products, **{**base, "code": "def f(x):\n    return x +"})
    body = expect_error(r, 400, "udf_compile_error", "line 2")
    assert (body["line"], body["field"]) == (2, "code")
    expect_error(register(client, products, **{**base, "code": "x", "language": "cobol"}), 400, "invalid_udf")
    expect_error(register(client, products, **{**base, "code": "x", "return_type": "money"}), 400, "invalid_udf")
    expect_error(register(client, products, **{**base, "code": "x", "name": "bad name"}), 400, "invalid_name")
    expect_error(register(client, products, **{k: v for k, v in base.items() if k != "name"}), 422)
    expect_error(register(client, products, **{**base, "code": 5}), 422)
    expect_error(register(client, products, **{**base, "code": "x", "extra": 1}), 422)
    expect_error(client.post("/tables/nope/udfs", json={**base, "code": "x"}), 404, "table_not_found")
    # execute: arguments by name, every problem listed
    url = f"/tables/{products}/udfs/calculate_discount/execute"
    r = client.post(url, json={"price": "cheap", "extra": 1})
    body = expect_error(r, 422)
    assert {tuple(e["loc"]) for e in body["errors"]} == {
        ("body", "price"),
        ("body", "extra"),
        ("body", "discount_rate"),
    }
    expect_error(client.post(url, json=[1, 2]), 422)
    expect_error(client.post(url, content=b"{nope", headers=JSON), 400, "malformed_json")
    expect_error(client.post(f"/tables/{products}/udfs/nope/execute", json={}), 404, "udf_not_found")


def test_runtime_error_and_limit_on_execute(client: httpx.Client, products: str, expect_error: ErrorCheck) -> None:
    code = "def f(x):\n    y = 1\n    return y / x"
    x = [{"name": "x", "type": "float"}]
    r = register(client, products, name="f", language="python", code=code, parameters=x)
    assert r.status_code == 422  # return_type is required
    r = register(client, products, name="f", language="python", code=code, parameters=x, return_type="float")
    assert r.status_code == 200, r.text
    body = expect_error(client.post(f"/tables/{products}/udfs/f/execute", json={"x": 0}), 400, "udf_error")
    assert "ZeroDivisionError" in body["detail"] and "line 3" in body["detail"]
    spin = "function spin(x) { for (;;) {} }"
    r = register(client, products, name="spin", language="javascript", code=spin, parameters=x, return_type="float")
    assert r.status_code == 200, r.text
    body = expect_error(client.post(f"/tables/{products}/udfs/spin/execute", json={"x": 1}), 400, "udf_limit_exceeded")
    assert body["limit"] == "cpu_time"
    r = client.post(f"/tables/{products}/udfs/f/execute", json={"x": 4})
    assert r.status_code == 200 and r.json()["result"] == 0.25
