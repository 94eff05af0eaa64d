"""A string key past MAX_KEY_BYTES is a 400 ``key_too_long`` over REST, naming the column and the row, and
changes nothing: on insert, upsert, ``GET/PUT/DELETE /rows/{row_id}`` and a ``where`` that pins the key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from engine.model.coerce import MAX_KEY_BYTES

LONG = "k" * (MAX_KEY_BYTES + 1)


@pytest.fixture
def keyed(client: httpx.Client, name: str) -> str:
    schema = {"columns": {"id": "string", "note": "string"}}
    r = client.post("/tables", json={"name": name, "schema": schema, "primary_key": "id", "shards": 2})
    assert r.status_code == 200, r.text
    assert client.post(f"/tables/{name}/rows", json={"data": {"id": "a", "note": "n"}}).status_code == 200
    return name


def test_inserting_a_long_key_is_a_400_naming_column_and_row(
    client: httpx.Client, keyed: str, expect_error: Callable[..., dict[str, Any]], row_count: Callable[[str], int]
) -> None:
    rows = [{"id": "b", "note": "ok"}, {"id": LONG, "note": "too long"}]
    body = expect_error(
        client.post(f"/tables/{keyed}/rows/batch", json={"rows": rows}), 400, "key_too_long", "rows[1].id"
    )
    assert body["column"] == "id" and body["row"] == 1 and body["limit"] == MAX_KEY_BYTES
    expect_error(client.post(f"/tables/{keyed}/rows", json={"data": {"id": LONG}}), 400, "key_too_long", "'id'")
    assert row_count(keyed) == 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_a_long_row_id_is_a_400(
    client: httpx.Client, keyed: str, expect_error: Callable[..., dict[str, Any]], method: str
) -> None:
    body = {"data": {"note": "x"}} if method == "PUT" else None
    r = client.request(method, f"/tables/{keyed}/rows/{LONG}", json=body)
    assert expect_error(r, 400, "key_too_long", "row_id")["column"] == "id"


def test_a_where_pinning_a_long_key_is_a_400(
    client: httpx.Client, keyed: str, expect_error: Callable[..., dict[str, Any]]
) -> None:
    where = [{"column": "id", "operator": "in", "value": ["a", LONG]}]
    r = client.request("PATCH", f"/tables/{keyed}/rows", json={"where": where, "set": {"note": "changed"}})
    assert expect_error(r, 400, "key_too_long", "where[0].value[1]")["row"] == 1
    expect_error(client.post(f"/tables/{keyed}/query", json={"where": {"id": LONG}}), 400, "key_too_long")
    assert client.get(f"/tables/{keyed}/rows/a").json()["data"]["note"] == "n"
