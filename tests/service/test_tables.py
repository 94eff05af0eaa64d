"""``/tables``: list, create, describe, drop, and every way a create can be wrong."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import httpx
import pytest

ErrorCheck = Callable[..., dict[str, Any]]


def create(client: httpx.Client, name: str, columns: dict[str, Any], **extra: Any) -> httpx.Response:
    return client.post("/tables", json={"name": name, "schema": {"columns": columns}, **extra})


def test_create_describe_list_drop(client: httpx.Client, name: str) -> None:
    r = create(client, name, {"id": "int", "label": {"type": "string", "nullable": False}}, primary_key="id", shards=3)
    assert r.status_code == 200
    assert r.headers["x-request-id"]
    body = r.json()
    assert body["message"] == f"Table '{name}' created successfully"
    info = body["table"]
    assert set(info) == {
        "name",
        "column_count",
        "row_count",
        "columns",
        "created_at",
        "primary_key",
        "shards",
        "version",
    }
    assert info["name"] == name
    assert info["column_count"] == 2
    assert info["row_count"] == 0
    assert info["columns"] == [
        {"name": "id", "type": "int", "is_computed": False, "nullable": False},
        {"name": "label", "type": "string", "is_computed": False, "nullable": False},
    ]
    assert info["primary_key"] == ["id"]
    assert info["shards"] == 3
    assert isinstance(info["version"], int)
    assert info["created_at"].endswith("Z")
    dt.datetime.fromisoformat(info["created_at"])

    assert name in client.get("/tables").json()
    r = client.get(f"/tables/{name}")
    assert r.status_code == 200
    assert r.json() == info

    r = client.delete(f"/tables/{name}")
    assert r.status_code == 200
    assert r.json() == {"message": f"Table '{name}' dropped successfully"}
    assert name not in client.get("/tables").json()
    assert client.get(f"/tables/{name}").status_code == 404


def test_list_tables_is_a_list_of_names(client: httpx.Client, users: str) -> None:
    r = client.get("/tables")
    assert r.status_code == 200
    names = r.json()
    assert isinstance(names, list) and all(isinstance(n, str) for n in names)
    assert users in names


def test_row_count_in_info(client: httpx.Client, users: str) -> None:
    info = client.get(f"/tables/{users}").json()
    assert info["row_count"] == 3
    assert info["version"] >= 1


def test_create_without_primary_key_and_default_shards(client: httpx.Client, name: str) -> None:
    r = create(client, name, {"v": "float"})
    assert r.status_code == 200
    info = r.json()["table"]
    assert info["primary_key"] is None
    assert info["shards"] >= 1


def test_create_composite_key_all_types(client: httpx.Client, name: str) -> None:
    columns = {
        t: t
        for t in ("int", "float", "string", "bool", "json", "timestamp", "date", "image", "video", "audio", "document")
    }
    r = create(client, name, columns, primary_key=["string", "date"])
    assert r.status_code == 200, r.text
    info = r.json()["table"]
    assert info["primary_key"] == ["string", "date"]
    assert [c["type"] for c in info["columns"]] == list(columns)


def test_duplicate_table_is_409(client: httpx.Client, users: str, expect_error: ErrorCheck) -> None:
    body = expect_error(create(client, users, {"x": "int"}), 409, "table_exists", users)
    assert body["table"] == users
    assert client.get(f"/tables/{users}").json()["row_count"] == 3  # the existing table is untouched


@pytest.mark.parametrize("bad", ["1abc", "bad-name", "with space", "_under", "x" * 64, "drop;table", ""])
def test_invalid_table_name_is_400(client: httpx.Client, expect_error: ErrorCheck, bad: str) -> None:
    body = expect_error(create(client, bad, {"x": "int"}), 400, "invalid_name")
    assert repr(bad) in body["detail"]
    assert bad not in client.get("/tables").json()


@pytest.mark.parametrize("bad", ["1abc", "bad-name", "x.y"])
def test_invalid_column_name_is_400(client: httpx.Client, name: str, expect_error: ErrorCheck, bad: str) -> None:
    expect_error(create(client, name, {bad: "int"}), 400, "invalid_name", repr(bad))
    assert name not in client.get("/tables").json()


def test_unknown_type_is_400_naming_the_column(client: httpx.Client, name: str, expect_error: ErrorCheck) -> None:
    body = expect_error(create(client, name, {"id": "int", "blob": "varchar"}), 400, "invalid_type", "blob", "varchar")
    assert body["column"] == "blob"
    assert name not in client.get("/tables").json()


def test_unknown_primary_key_column_is_400(client: httpx.Client, name: str, expect_error: ErrorCheck) -> None:
    expect_error(create(client, name, {"id": "int"}, primary_key="nope"), 400, "column_not_found", "nope")
    assert name not in client.get("/tables").json()


def test_float_primary_key_is_400(client: httpx.Client, name: str, expect_error: ErrorCheck) -> None:
    expect_error(create(client, name, {"x": "float"}, primary_key="x"), 400, "invalid_type", "x")


@pytest.mark.parametrize("shards", [0, 10_000, -1])
def test_bad_shard_count_is_400(client: httpx.Client, name: str, expect_error: ErrorCheck, shards: int) -> None:
    expect_error(create(client, name, {"x": "int"}, shards=shards), 400, None, "shards")
    assert name not in client.get("/tables").json()


def test_empty_columns_is_400(client: httpx.Client, name: str, expect_error: ErrorCheck) -> None:
    expect_error(create(client, name, {}), 400, None, "schema.columns")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"schema": {"columns": {"x": "int"}}}, "name"),
        ({"name": "t_missing_schema"}, "schema"),
        ({"name": 5, "schema": {"columns": {"x": "int"}}}, "name"),
        ({"name": "t_x", "schema": {"columns": {"x": "int"}}, "shards": "2"}, "shards"),
        ({"name": "t_x", "schema": {"columns": {"x": "int"}}, "shards": 2.5}, "shards"),
        ({"name": "t_x", "schema": {"columns": {"x": "int"}}, "primary_key": 1}, "primary_key"),
        ({"name": "t_x", "schema": {"columns": {"x": 7}}}, "schema.columns.x"),
        ({"name": "t_x", "schema": {"columns": {"x": {"type": "int", "nullable": "no"}}}}, "schema.columns.x.nullable"),
        ({"name": "t_x", "schema": {"columns": {"x": {"type": "int", "unique": True}}}}, "schema.columns.x.unique"),
        ({"name": "t_x", "schema": {"columns": {"x": "int"}}, "owner": "me"}, "owner"),
        ({"name": "t_x", "schema": {"cols": {"x": "int"}}}, "schema.cols"),
        ({"name": "t_x", "schema": []}, "schema"),
    ],
)
def test_body_shape_errors_are_422(
    client: httpx.Client, expect_error: ErrorCheck, body: dict[str, Any], field: str
) -> None:
    before = client.get("/tables").json()
    result = expect_error(client.post("/tables", json=body), 422, "validation_error", field)
    assert field in [".".join(map(str, e["loc"])) for e in result["errors"]]
    assert all(set(e) == {"loc", "msg", "type"} for e in result["errors"])
    assert client.get("/tables").json() == before


def test_body_that_is_not_an_object_is_422(client: httpx.Client, expect_error: ErrorCheck) -> None:
    result = expect_error(client.post("/tables", json=[1, 2]), 422, "validation_error", "body")
    assert result["errors"][0]["loc"] == []


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_unknown_table_is_404(client: httpx.Client, name: str, expect_error: ErrorCheck, method: str) -> None:
    body = expect_error(client.request(method, f"/tables/{name}"), 404, "table_not_found", name)
    assert body["table"] == name


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_invalid_name_in_path_is_400(client: httpx.Client, expect_error: ErrorCheck, method: str) -> None:
    expect_error(client.request(method, "/tables/bad-name"), 400, "invalid_name", "bad-name")
