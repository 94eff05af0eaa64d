"""Row endpoints, the paths that succeed: insert, list, query, count, update, delete, one row by id."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

import httpx
import pyarrow as pa
import pytest

import engine

JSON = {"content-type": "application/json"}  # raw bodies need it; httpx sets it only for json=

Count = Callable[[str], int]


def ids(body: dict[str, Any]) -> list[int]:
    return [r["id"] for r in body["rows"]]


def test_insert_one_returns_the_stored_row(client: httpx.Client, users: str, row_count: Count) -> None:
    row = {"id": 10, "name": "Barbara", "age": 40, "meta": {"a": [1, {"b": None}]}, "seen": "2024-01-02T03:04:05+02:00"}
    r = client.post(f"/tables/{users}/rows", json={"data": row})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"]
    body = r.json()
    assert body["message"] == "Row inserted successfully"
    assert body["data"] == {
        "id": 10,
        "name": "Barbara",
        "age": 40,
        "score": None,
        "active": None,
        "meta": {"a": [1, {"b": None}]},
        "seen": "2024-01-02T01:04:05Z",
    }
    assert row_count(users) == 4


def test_insert_one_without_primary_key_gets_a_row_id(client: httpx.Client, name: str) -> None:
    assert client.post("/tables", json={"name": name, "schema": {"columns": {"v": "string"}}}).status_code == 200
    r = client.post(f"/tables/{name}/rows", json={"data": {"v": "x"}})
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["v"] == "x"
    assert isinstance(data["_row_id"], int)
    row_id = data["_row_id"]

    assert client.get(f"/tables/{name}/rows/{row_id}").json()["data"] == data
    r = client.put(f"/tables/{name}/rows/{row_id}", json={"data": {"v": "y"}})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"v": "y", "_row_id": row_id}
    assert client.delete(f"/tables/{name}/rows/{row_id}").json() == {"message": "Row deleted successfully"}
    assert client.get(f"/tables/{name}/rows/count").json()["row_count"] == 0


def test_insert_batch(client: httpx.Client, users: str, row_count: Count) -> None:
    rows = [{"id": i, "name": f"n{i}", "age": i % 90} for i in range(100, 1100)]
    r = client.post(f"/tables/{users}/rows/batch", json={"rows": rows, "batch_size": 250})
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "1000 rows inserted successfully", "row_count": 1000}
    assert row_count(users) == 1003


def test_insert_empty_batch(client: httpx.Client, users: str, row_count: Count) -> None:
    r = client.post(f"/tables/{users}/rows/batch", json={"rows": []})
    assert r.status_code == 200, r.text
    assert r.json()["row_count"] == 0
    assert row_count(users) == 3


def test_list_rows_defaults(client: httpx.Client, users: str) -> None:
    r = client.get(f"/tables/{users}/rows")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"rows", "total_count", "has_more", "next_offset"}
    assert body["total_count"] == 3
    assert body["has_more"] is False
    assert body["next_offset"] is None
    assert ids(body) == [1, 2, 3]  # ordered by the key when paging
    first = body["rows"][0]
    assert first == {
        "id": 1,
        "name": "Ada",
        "age": 36,
        "score": 9.5,
        "active": True,
        "meta": {"lang": "en"},
        "seen": None,
    }
    assert body["rows"][1]["seen"] == "2024-05-01T12:00:00Z"
    assert body["rows"][2]["meta"] == [1, 2]


def test_list_rows_pages(client: httpx.Client, users: str) -> None:
    r = client.get(f"/tables/{users}/rows", params={"limit": 2})
    body = r.json()
    assert ids(body) == [1, 2]
    assert body["has_more"] is True
    assert body["next_offset"] == 2
    body = client.get(f"/tables/{users}/rows", params={"limit": 2, "offset": body["next_offset"]}).json()
    assert ids(body) == [3]
    assert body["has_more"] is False
    assert body["next_offset"] is None
    assert body["total_count"] == 3
    body = client.get(f"/tables/{users}/rows", params={"limit": 0}).json()
    assert body["rows"] == [] and body["total_count"] == 3


def test_list_rows_select_and_order(client: httpx.Client, users: str) -> None:
    body = client.get(f"/tables/{users}/rows", params={"select": "id,name", "order_by": "id:desc"}).json()
    assert body["rows"] == [{"id": 3, "name": "Linus"}, {"id": 2, "name": "Grace"}, {"id": 1, "name": "Ada"}]
    body = client.get(f"/tables/{users}/rows", params={"select": "name", "order_by": "active:desc,id"}).json()
    assert [r["name"] for r in body["rows"]] == ["Ada", "Linus", "Grace"]
    assert list(body["rows"][0]) == ["name"]


def test_query(client: httpx.Client, users: str) -> None:
    url = f"/tables/{users}/query"
    assert ids(client.post(url, json={}).json()) == [1, 2, 3]
    body = client.post(url, json={"where": {"active": True}, "order_by": [{"column": "id", "direction": "desc"}]})
    assert body.status_code == 200
    assert ids(body.json()) == [3, 1]
    clauses = [{"column": "age", "operator": ">=", "value": 36}, {"column": "name", "operator": "like", "value": "%a%"}]
    body = client.post(url, json={"where": clauses, "select": ["id"]}).json()
    assert body == {"rows": [{"id": 1}, {"id": 2}], "total_count": 2, "has_more": False, "next_offset": None}
    body = client.post(url, json={"where": [{"column": "id", "operator": "in", "value": [3, 1, 99]}]}).json()
    assert ids(body) == [1, 3]
    body = client.post(url, json={"where": [{"column": "age", "operator": "is_null"}]}).json()
    assert ids(body) == [3]
    body = client.post(url, json={"where": [{"column": "seen", "operator": "is_not_null"}]}).json()
    assert ids(body) == [2]
    body = client.post(url, json={"where": [{"column": "id", "operator": "not_in", "value": [1]}]}).json()
    assert ids(body) == [2, 3]
    body = client.post(url, json={"where": {"column": "score", "operator": "<", "value": 8}}).json()
    assert ids(body) == [2]
    body = client.post(url, json={"where": [{"column": "seen", "operator": ">", "value": "2024-01-01T00:00:00Z"}]})
    assert ids(body.json()) == [2]
    body = client.post(url, json={"order_by": ["score:desc"], "limit": 1, "offset": 1}).json()
    assert ids(body) == [2]
    assert body["has_more"] is True and body["next_offset"] == 2 and body["total_count"] == 3


def test_count(client: httpx.Client, users: str) -> None:
    r = client.get(f"/tables/{users}/rows/count")
    assert r.status_code == 200
    assert r.json() == {"table_name": users, "row_count": 3}


def test_update_rows(client: httpx.Client, users: str) -> None:
    r = client.patch(f"/tables/{users}/rows", json={"where": {"active": True}, "set": {"age": 50, "score": None}})
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "2 rows updated successfully", "updated_fields": ["age", "score"], "row_count": 2}
    rows = client.get(f"/tables/{users}/rows").json()["rows"]
    assert [(x["age"], x["score"]) for x in rows] == [(50, None), (45, 7.25), (50, None)]
    r = client.patch(
        f"/tables/{users}/rows", json={"where": [{"column": "id", "operator": "=", "value": 99}], "set": {"age": 1}}
    )
    assert r.json()["row_count"] == 0
    assert r.json()["message"] == "0 rows updated successfully"


def test_update_all_rows_with_empty_where(client: httpx.Client, users: str) -> None:
    r = client.patch(f"/tables/{users}/rows", json={"where": {}, "set": {"meta": {"k": 1}}})
    assert r.json()["row_count"] == 3
    assert {str(x["meta"]) for x in client.get(f"/tables/{users}/rows").json()["rows"]} == {"{'k': 1}"}


def test_delete_rows_with_where(client: httpx.Client, users: str, row_count: Count) -> None:
    r = client.request(
        "DELETE", f"/tables/{users}/rows", json={"where": [{"column": "age", "operator": ">", "value": 40}]}
    )
    assert r.status_code == 200
    assert r.json() == {"message": "1 rows deleted successfully", "row_count": 1}
    assert row_count(users) == 2


@pytest.mark.parametrize("content", [None, b"", b"{}", b"null", b'{"where": null}'])
def test_delete_rows_without_where_deletes_all(
    client: httpx.Client, users: str, row_count: Count, content: bytes | None
) -> None:
    r = client.request("DELETE", f"/tables/{users}/rows", content=content, headers=JSON if content else {})
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "3 rows deleted successfully", "row_count": 3}
    assert row_count(users) == 0


def test_get_row(client: httpx.Client, users: str) -> None:
    r = client.get(f"/tables/{users}/rows/2")
    assert r.status_code == 200
    assert r.json() == {
        "data": {
            "id": 2,
            "name": "Grace",
            "age": 45,
            "score": 7.25,
            "active": False,
            "meta": None,
            "seen": "2024-05-01T12:00:00Z",
        }
    }


def test_put_row(client: httpx.Client, users: str, row_count: Count) -> None:
    r = client.put(f"/tables/{users}/rows/1", json={"data": {"id": 1, "age": 37, "meta": {"x": True}}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["message"] == "Row updated successfully"
    assert body["data"]["age"] == 37 and body["data"]["meta"] == {"x": True} and body["data"]["name"] == "Ada"
    assert client.get(f"/tables/{users}/rows/1").json()["data"] == body["data"]
    r = client.put(f"/tables/{users}/rows/1", json={"row_id": 1, "data": {"name": "Ada L."}})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["name"] == "Ada L."
    assert row_count(users) == 3


def test_delete_row(client: httpx.Client, users: str, row_count: Count) -> None:
    r = client.delete(f"/tables/{users}/rows/3")
    assert r.status_code == 200
    assert r.json() == {"message": "Row deleted successfully"}
    assert row_count(users) == 2
    assert client.get(f"/tables/{users}/rows/3").status_code == 404


def test_string_and_date_keys_in_the_path(client: httpx.Client, name: str) -> None:
    schema = {"columns": {"code": "string", "day": "date", "n": "int"}}
    assert client.post("/tables", json={"name": name, "schema": schema, "primary_key": "code"}).status_code == 200
    client.post(f"/tables/{name}/rows/batch", json={"rows": [{"code": "a b;é", "day": "2024-02-29", "n": 1}]})
    r = client.get(f"/tables/{name}/rows/a%20b%3B%C3%A9")
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"code": "a b;é", "day": "2024-02-29", "n": 1}
    other = f"{name}_d"
    assert client.post("/tables", json={"name": other, "schema": schema, "primary_key": "day"}).status_code == 200
    client.post(f"/tables/{other}/rows", json={"data": {"code": "x", "day": "2024-02-29", "n": 2}})
    assert client.get(f"/tables/{other}/rows/2024-02-29").json()["data"]["n"] == 2
    assert client.put(f"/tables/{other}/rows/2024-02-29", json={"data": {"n": 3}}).json()["data"]["n"] == 3
    assert client.delete(f"/tables/{other}/rows/2024-02-29").status_code == 200


def test_concurrent_requests(client: httpx.Client, name: str, row_count: Count, base_url: str) -> None:
    # One shard: concurrent batches that span several shards of one table wait on each other in the engine.
    schema = {"columns": {"id": "int", "name": "string"}}
    assert (
        client.post("/tables", json={"name": name, "schema": schema, "primary_key": "id", "shards": 1}).status_code
        == 200
    )

    def insert(start: int) -> int:
        rows = [{"id": i, "name": "c"} for i in range(start, start + 50)]
        with httpx.Client(base_url=f"{base_url}/api/v1", timeout=60) as c:
            status = c.post(f"/tables/{name}/rows/batch", json={"rows": rows}).status_code
            assert c.get("/health").status_code == 200
            return status

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(insert, range(0, 400, 50)))
    assert statuses == [200] * 8
    assert row_count(name) == 400


def test_deep_pages(
    client: httpx.Client, db: engine.Database, name: str, expect_error: Callable[..., dict[str, Any]]
) -> None:
    """A page that ends past TESSERA_MAX_QUERY_WINDOW (100,000) is refused: every shard would send that many rows
    to find it. A page past the end is empty, whatever its offset."""
    table = db.create_table(name, {"id": "int"}, primary_key="id", shards=2)
    table.insert(pa.table({"id": pa.array(range(100_001), pa.int64())}))
    last = client.get(f"/tables/{name}/rows", params={"limit": 5, "offset": 99_995})
    assert last.status_code == 200, last.text
    assert [r["id"] for r in last.json()["rows"]] == list(range(99_995, 100_000))
    for r in (
        client.get(f"/tables/{name}/rows", params={"limit": 10, "offset": 99_995}),
        client.post(f"/tables/{name}/query", json={"limit": 1, "offset": 100_000}),
    ):
        body = expect_error(r, 400, "offset_too_deep", "TESSERA_MAX_QUERY_WINDOW", '"operator": ">"')
        assert body["field"] == "offset" and body["max_query_window"] == 100_000
    past = client.get(f"/tables/{name}/rows", params={"limit": 10, "offset": 500_000}).json()
    assert past == {"rows": [], "total_count": 100_001, "has_more": False, "next_offset": None}


def test_query_on_aggregate_and_window_values(client: httpx.Client, users: str) -> None:
    rank = {"name": "by_age", "column_type": "window", "expression": "RANK()", "parameters": {"order_by": ["age"]}}
    total = {"name": "actives", "column_type": "aggregate", "expression": "COUNT(*)"}
    total["parameters"] = {"group_by": ["active"]}
    for column in (rank, total):
        assert client.post(f"/tables/{users}/computed-columns", json=column).status_code == 200
    where = [{"column": "by_age", "operator": "in", "value": [1, 3]}]
    body = client.post(
        f"/tables/{users}/query", json={"where": where, "order_by": ["actives:desc", "id"], "select": ["id", "by_age"]}
    ).json()
    assert body["rows"] == [{"id": 1, "by_age": 1}, {"id": 3, "by_age": 3}] and body["total_count"] == 2
