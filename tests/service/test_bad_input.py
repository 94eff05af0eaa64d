"""Everything a client can get wrong, as data: each case names the request, the status, the error code and what
``detail`` must mention. After every case the table is exactly as before (same rows, same version)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import httpx
import pytest
from sample_tables import USERS_SCHEMA

T = "{t}"  # replaced by the table's name
ErrorCheck = Callable[..., dict[str, Any]]
BIG = 2**70
DEEP_VALUE: Any = 0
for _ in range(100):
    DEEP_VALUE = [DEEP_VALUE]


class Case(NamedTuple):
    id: str
    method: str
    path: str
    body: Any  # JSON value, raw bytes, or None for no body
    status: int
    code: str | None
    mentions: tuple[str, ...] = ()
    loc: tuple[Any, ...] | None = None  # for 422s: a location that must be in ``errors``


def ok_row(**changes: Any) -> dict[str, Any]:
    return {"id": 100, "name": "New", **changes}


ROWS = f"/tables/{T}/rows"
QUERY = f"/tables/{T}/query"

CASES = [
    # -- single insert: the engine's checks, reported at data.<column> --------------------------------------------
    Case("insert-unknown-column", "POST", ROWS, {"data": ok_row(nope=1)}, 400, "column_not_found", ("nope", "data")),
    Case(
        "insert-wrong-type",
        "POST",
        ROWS,
        {"data": ok_row(age="old")},
        422,
        "schema_mismatch",
        ("data.age",),
        ("data", "age"),
    ),
    Case(
        "insert-float-in-int",
        "POST",
        ROWS,
        {"data": ok_row(age=2.5)},
        422,
        "schema_mismatch",
        ("age",),
        ("data", "age"),
    ),
    Case(
        "insert-int-in-bool",
        "POST",
        ROWS,
        {"data": ok_row(active=1)},
        422,
        "schema_mismatch",
        ("active",),
        ("data", "active"),
    ),
    Case(
        "insert-bad-timestamp",
        "POST",
        ROWS,
        {"data": ok_row(seen="yesterday")},
        422,
        "schema_mismatch",
        ("seen",),
        ("data", "seen"),
    ),
    Case(
        "insert-null-not-null",
        "POST",
        ROWS,
        {"data": ok_row(name=None)},
        422,
        "schema_mismatch",
        ("name",),
        ("data", "name"),
    ),
    Case(
        "insert-missing-not-null",
        "POST",
        ROWS,
        {"data": {"id": 100}},
        422,
        "schema_mismatch",
        ("name",),
        ("data", "name"),
    ),
    Case(
        "insert-null-key",
        "POST",
        ROWS,
        {"data": {"id": None, "name": "x"}},
        422,
        "schema_mismatch",
        ("id",),
        ("data", "id"),
    ),
    Case(
        "insert-huge-int",
        "POST",
        ROWS,
        {"data": ok_row(age=BIG)},
        422,
        "schema_mismatch",
        ("age", "range"),
        ("data", "age"),
    ),
    Case("insert-huge-key", "POST", ROWS, {"data": ok_row(id=BIG)}, 422, "schema_mismatch", ("id",), ("data", "id")),
    Case(
        "insert-below-int64",
        "POST",
        ROWS,
        {"data": ok_row(age=-(2**63) - 1)},
        422,
        "schema_mismatch",
        ("age",),
        ("data", "age"),
    ),
    Case(
        "insert-deep-json-cell",
        "POST",
        ROWS,
        {"data": ok_row(meta=DEEP_VALUE)},
        422,
        "schema_mismatch",
        ("meta",),
        ("data", "meta"),
    ),
    Case("insert-row-id-in-keyed-table", "POST", ROWS, {"data": ok_row(_row_id=1)}, 400, None, ("_row_id",)),
    Case("insert-duplicate-key", "POST", ROWS, {"data": {"id": 1, "name": "Again"}}, 409, "duplicate_key", ("1",)),
    Case("insert-data-not-object", "POST", ROWS, {"data": [1]}, 422, "validation_error", ("data",), ("data",)),
    Case("insert-missing-data", "POST", ROWS, {}, 422, "validation_error", ("data",), ("data",)),
    Case(
        "insert-extra-field",
        "POST",
        ROWS,
        {"data": ok_row(), "upsert": True},
        422,
        "validation_error",
        ("upsert",),
        ("upsert",),
    ),
    # -- batch insert: all or nothing ------------------------------------------------------------------------------
    Case(
        "batch-wrong-type",
        "POST",
        f"{ROWS}/batch",
        {"rows": [ok_row(), ok_row(id=101, age="x")]},
        422,
        "schema_mismatch",
        ("rows.1.age",),
        ("rows", 1, "age"),
    ),
    Case(
        "batch-null-not-null",
        "POST",
        f"{ROWS}/batch",
        {"rows": [ok_row(), {"id": 101}]},
        422,
        "schema_mismatch",
        ("rows.1.name",),
        ("rows", 1, "name"),
    ),
    Case(
        "batch-unknown-column",
        "POST",
        f"{ROWS}/batch",
        {"rows": [ok_row(), ok_row(id=101, nope=1)]},
        400,
        "column_not_found",
        ("nope",),
    ),
    Case(
        "batch-duplicate-existing-key",
        "POST",
        f"{ROWS}/batch",
        {"rows": [ok_row(), ok_row(id=2)]},
        409,
        "duplicate_key",
        ("2",),
    ),
    Case(
        "batch-duplicate-within",
        "POST",
        f"{ROWS}/batch",
        {"rows": [ok_row(), ok_row()]},
        409,
        "duplicate_key",
        ("100",),
    ),
    Case(
        "batch-huge-int",
        "POST",
        f"{ROWS}/batch",
        {"rows": [ok_row(age=BIG)]},
        422,
        "schema_mismatch",
        ("rows.0.age",),
        ("rows", 0, "age"),
    ),
    Case(
        "batch-row-not-object",
        "POST",
        f"{ROWS}/batch",
        {"rows": [ok_row(), 5]},
        422,
        "schema_mismatch",
        ("rows.1",),
        ("rows", 1),
    ),
    Case(
        "batch-rows-not-list",
        "POST",
        f"{ROWS}/batch",
        {"rows": {"id": 1}},
        422,
        "validation_error",
        ("rows",),
        ("rows",),
    ),
    Case(
        "batch-size-zero",
        "POST",
        f"{ROWS}/batch",
        {"rows": [ok_row()], "batch_size": 0},
        422,
        "validation_error",
        ("batch_size",),
        ("batch_size",),
    ),
    Case(
        "batch-size-too-big",
        "POST",
        f"{ROWS}/batch",
        {"rows": [ok_row()], "batch_size": 10_001},
        422,
        "validation_error",
        ("batch_size",),
        ("batch_size",),
    ),
    # -- query -----------------------------------------------------------------------------------------------------
    Case("query-where-unknown-column", "POST", QUERY, {"where": {"nope": 1}}, 400, "column_not_found", ("nope",)),
    Case(
        "query-clause-unknown-column",
        "POST",
        QUERY,
        {"where": [{"column": "nope", "operator": "=", "value": 1}]},
        400,
        "column_not_found",
        ("nope",),
    ),
    Case("query-select-unknown", "POST", QUERY, {"select": ["id", "nope"]}, 400, "column_not_found", ("nope",)),
    Case(
        "query-order-unknown",
        "POST",
        QUERY,
        {"order_by": [{"column": "nope", "direction": "asc"}]},
        400,
        "column_not_found",
        ("nope",),
    ),
    Case("query-order-string-unknown", "POST", QUERY, {"order_by": ["nope:desc"]}, 400, "column_not_found", ("nope",)),
    Case(
        "query-order-bad-direction",
        "POST",
        QUERY,
        {"order_by": [{"column": "id", "direction": "sideways"}]},
        400,
        None,
        ("order_by[0]", "sideways"),
    ),
    Case("query-order-json-column", "POST", QUERY, {"order_by": ["meta"]}, 400, None, ("meta",)),
    Case(
        "query-order-not-list", "POST", QUERY, {"order_by": "id"}, 422, "validation_error", ("order_by",), ("order_by",)
    ),
    Case(
        "query-order-item-bad",
        "POST",
        QUERY,
        {"order_by": [5]},
        422,
        "validation_error",
        ("order_by.0",),
        ("order_by", 0),
    ),
    Case(
        "query-unknown-operator",
        "POST",
        QUERY,
        {"where": [{"column": "age", "operator": "~=", "value": 1}]},
        400,
        "invalid_operator",
        ("~=", "where[0]"),
    ),
    Case(
        "query-in-not-list",
        "POST",
        QUERY,
        {"where": [{"column": "age", "operator": "in", "value": 5}]},
        400,
        None,
        ("in", "list", "where[0]"),
    ),
    Case(
        "query-like-on-int",
        "POST",
        QUERY,
        {"where": [{"column": "age", "operator": "like", "value": "%1"}]},
        400,
        "invalid_operator",
        ("like", "age"),
    ),
    Case(
        "query-gt-on-bool",
        "POST",
        QUERY,
        {"where": [{"column": "active", "operator": ">", "value": True}]},
        400,
        "invalid_operator",
        ("active",),
    ),
    Case(
        "query-missing-value", "POST", QUERY, {"where": [{"column": "age", "operator": ">"}]}, 400, None, ("where[0]",)
    ),
    Case(
        "query-clause-missing-operator",
        "POST",
        QUERY,
        {"where": [{"column": "age", "value": 1}]},
        400,
        None,
        ("where[0]",),
    ),
    Case(
        "query-where-value-wrong-type",
        "POST",
        QUERY,
        {"where": {"age": "old"}},
        422,
        "schema_mismatch",
        ("where[0].value",),
    ),
    Case(
        "query-where-huge-int",
        "POST",
        QUERY,
        {"where": [{"column": "age", "operator": "<", "value": BIG}]},
        422,
        "schema_mismatch",
        ("where[0].value", "range"),
    ),
    Case(
        "query-in-huge-int",
        "POST",
        QUERY,
        {"where": [{"column": "id", "operator": "in", "value": [1, BIG]}]},
        422,
        "schema_mismatch",
        ("where[0]",),
    ),
    Case("query-where-not-object", "POST", QUERY, {"where": 5}, 422, "validation_error", ("where",), ("where",)),
    Case("query-select-string", "POST", QUERY, {"select": "id"}, 422, "validation_error", ("select",), ("select",)),
    Case("query-limit-negative", "POST", QUERY, {"limit": -1}, 422, "validation_error", ("limit",), ("limit",)),
    Case("query-limit-too-big", "POST", QUERY, {"limit": 10_001}, 422, "validation_error", ("limit",), ("limit",)),
    Case("query-limit-string", "POST", QUERY, {"limit": "5"}, 422, "validation_error", ("limit",), ("limit",)),
    Case("query-limit-huge", "POST", QUERY, {"limit": BIG}, 422, "validation_error", ("limit",), ("limit",)),
    Case("query-offset-huge", "POST", QUERY, {"offset": BIG}, 422, "validation_error", ("offset",), ("offset",)),
    Case(
        "query-offset-int64-max",
        "POST",
        QUERY,
        {"offset": 2**63 - 1},
        422,
        "validation_error",
        ("offset",),
        ("offset",),
    ),
    Case("query-unknown-field", "POST", QUERY, {"filter": {}}, 422, "validation_error", ("filter",), ("filter",)),
    # -- update many -----------------------------------------------------------------------------------------------
    Case(
        "update-set-unknown-column",
        "PATCH",
        ROWS,
        {"where": {}, "set": {"nope": 1}},
        400,
        "column_not_found",
        ("nope",),
    ),
    Case(
        "update-set-wrong-type",
        "PATCH",
        ROWS,
        {"where": {}, "set": {"age": "x"}},
        422,
        "schema_mismatch",
        ("set.age",),
        ("set", "age"),
    ),
    Case(
        "update-set-huge-int",
        "PATCH",
        ROWS,
        {"where": {}, "set": {"age": BIG}},
        422,
        "schema_mismatch",
        ("set.age",),
        ("set", "age"),
    ),
    Case("update-set-key", "PATCH", ROWS, {"where": {"id": 1}, "set": {"id": 5}}, 400, None, ("set.id", "primary key")),
    Case("update-set-null-not-null", "PATCH", ROWS, {"where": {}, "set": {"name": None}}, 400, None, ("set.name",)),
    Case("update-set-empty", "PATCH", ROWS, {"where": {}, "set": {}}, 400, None, ("set",)),
    Case(
        "update-where-unknown-column",
        "PATCH",
        ROWS,
        {"where": {"nope": 1}, "set": {"age": 1}},
        400,
        "column_not_found",
        ("nope",),
    ),
    Case(
        "update-unknown-operator",
        "PATCH",
        ROWS,
        {"where": [{"column": "id", "operator": "===", "value": 1}], "set": {"age": 1}},
        400,
        "invalid_operator",
        ("===",),
    ),
    Case("update-missing-where", "PATCH", ROWS, {"set": {"age": 1}}, 422, "validation_error", ("where",), ("where",)),
    Case("update-missing-set", "PATCH", ROWS, {"where": {}}, 422, "validation_error", ("set",), ("set",)),
    # -- delete many -----------------------------------------------------------------------------------------------
    Case("delete-where-unknown-column", "DELETE", ROWS, {"where": {"nope": 1}}, 400, "column_not_found", ("nope",)),
    Case(
        "delete-in-not-list",
        "DELETE",
        ROWS,
        {"where": [{"column": "id", "operator": "not_in", "value": "1"}]},
        400,
        None,
        ("not_in", "where[0]"),
    ),
    Case("delete-where-not-object", "DELETE", ROWS, {"where": "all"}, 422, "validation_error", ("where",), ("where",)),
    Case("delete-unknown-field", "DELETE", ROWS, {"filter": {}}, 422, "validation_error", ("filter",), ("filter",)),
    Case("delete-malformed", "DELETE", ROWS, b"{where", 400, "malformed_json"),
    # -- one row by id ---------------------------------------------------------------------------------------------
    Case("get-row-not-int", "GET", f"{ROWS}/abc", None, 400, None, ("row_id", "abc")),
    Case("get-row-missing", "GET", f"{ROWS}/99", None, 404, "row_not_found", ("99",)),
    Case("get-row-huge", "GET", f"{ROWS}/{BIG}", None, 422, "schema_mismatch", ("range",)),
    Case("put-row-missing", "PUT", f"{ROWS}/99", {"data": {"age": 1}}, 404, "row_not_found", ("99",)),
    Case("put-row-change-key", "PUT", f"{ROWS}/1", {"data": {"id": 2}}, 400, None, ("id", "primary key")),
    Case("put-row-id-mismatch", "PUT", f"{ROWS}/1", {"row_id": 2, "data": {"age": 1}}, 400, None, ("row_id",)),
    Case("put-row-empty-data", "PUT", f"{ROWS}/1", {"data": {}}, 400, None, ("data",)),
    Case("put-row-wrong-type", "PUT", f"{ROWS}/1", {"data": {"age": "x"}}, 422, "schema_mismatch", ("age",)),
    Case("put-row-unknown-column", "PUT", f"{ROWS}/1", {"data": {"nope": 1}}, 400, "column_not_found", ("nope",)),
    Case("put-row-not-int", "PUT", f"{ROWS}/abc", {"data": {"age": 1}}, 400, None, ("row_id",)),
    Case("put-row-missing-data", "PUT", f"{ROWS}/1", {"row_id": 1}, 422, "validation_error", ("data",), ("data",)),
    Case("delete-row-missing", "DELETE", f"{ROWS}/99", None, 404, "row_not_found", ("99",)),
    Case("delete-row-not-int", "DELETE", f"{ROWS}/1.5", None, 400, None, ("row_id",)),
    # -- query string of GET /rows ---------------------------------------------------------------------------------
    Case("list-limit-abc", "GET", f"{ROWS}?limit=abc", None, 400, "invalid_parameter", ("limit", "abc")),
    Case("list-limit-too-big", "GET", f"{ROWS}?limit=10001", None, 400, "invalid_parameter", ("limit", "10000")),
    Case("list-limit-negative", "GET", f"{ROWS}?limit=-1", None, 400, "invalid_parameter", ("limit",)),
    Case("list-limit-superscript", "GET", f"{ROWS}?limit=%C2%B2", None, 400, "invalid_parameter", ("limit",)),
    Case("list-limit-twice", "GET", f"{ROWS}?limit=1&limit=2", None, 400, "invalid_parameter", ("limit",)),
    Case("list-offset-abc", "GET", f"{ROWS}?offset=x", None, 400, "invalid_parameter", ("offset",)),
    Case("list-offset-huge", "GET", f"{ROWS}?offset={BIG}", None, 400, "invalid_parameter", ("offset",)),
    Case("list-offset-int64-max", "GET", f"{ROWS}?offset={2**63 - 1}", None, 400, "invalid_parameter", ("offset",)),
    Case("list-where-param", "GET", f"{ROWS}?where=id%3D1", None, 400, "invalid_parameter", ("where",)),
    Case("list-select-unknown", "GET", f"{ROWS}?select=id,nope", None, 400, "column_not_found", ("nope",)),
    Case("list-select-empty-item", "GET", f"{ROWS}?select=id,,name", None, 400, "invalid_parameter", ("select",)),
    Case("list-order-unknown", "GET", f"{ROWS}?order_by=nope:desc", None, 400, "column_not_found", ("nope",)),
    Case("list-order-bad-direction", "GET", f"{ROWS}?order_by=id:up", None, 400, None, ("order_by[0]", "up")),
    # -- JSON that is not JSON -------------------------------------------------------------------------------------
    Case("json-truncated", "POST", ROWS, b'{"data": {"id": 1', 400, "malformed_json", ("Malformed JSON",)),
    Case("json-single-quotes", "POST", ROWS, b"{'data': {}}", 400, "malformed_json"),
    Case("json-trailing-comma", "POST", ROWS, b'{"data": {"id": 100,}}', 400, "malformed_json"),
    Case("json-trailing-garbage", "POST", ROWS, b'{"data": {"id": 100, "name": "x"}} x', 400, "malformed_json"),
    Case("json-nan", "POST", ROWS, b'{"data": {"id": 100, "name": "x", "score": NaN}}', 400, "malformed_json"),
    Case(
        "json-infinity", "POST", ROWS, b'{"data": {"id": 100, "name": "x", "score": Infinity}}', 400, "malformed_json"
    ),
    Case(
        "json-minus-infinity",
        "POST",
        f"{ROWS}/batch",
        b'{"rows": [{"id": 100, "name": "x", "score": -Infinity}]}',
        400,
        "malformed_json",
    ),
    Case(
        "json-overflowing-float",
        "POST",
        ROWS,
        b'{"data": {"id": 100, "name": "x", "score": 1e400}}',
        400,
        "malformed_json",
    ),
    Case("json-nan-in-query", "POST", QUERY, b'{"where": {"score": NaN}}', 400, "malformed_json"),
    Case("json-deeply-nested", "POST", ROWS, b"[" * 100_000, 400, "malformed_json", ("nested too deeply",)),
    Case(
        "json-deeply-nested-valid",
        "POST",
        QUERY,
        b"[" * 2000 + b"]" * 2000,
        400,
        "malformed_json",
        ("nested too deeply",),
    ),
    Case("json-invalid-utf8", "POST", ROWS, b'{"data": {"id": 100, "name": "\xff"}}', 400, "malformed_json"),
    Case("json-empty-body", "POST", ROWS, b"", 400, "malformed_json", ("empty",)),
    Case("json-empty-body-patch", "PATCH", ROWS, b"   ", 400, "malformed_json"),
    Case("json-empty-body-batch", "POST", f"{ROWS}/batch", None, 400, "malformed_json"),
    Case("json-not-an-object", "POST", f"{ROWS}/batch", b"[1, 2]", 422, "validation_error", ("body",), ()),
    Case("json-null", "POST", QUERY, b"null", 422, "validation_error", ("body",), ()),
]


@pytest.fixture(scope="module")
def table(client: httpx.Client) -> Iterator[str]:
    name = f"bad_{uuid.uuid4().hex[:12]}"
    schema = USERS_SCHEMA
    assert (
        client.post("/tables", json={"name": name, "schema": schema, "primary_key": "id", "shards": 2}).status_code
        == 200
    )
    rows = [
        {"id": 1, "name": "Ada", "age": 36, "score": 9.5, "active": True, "meta": {"lang": "en"}},
        {"id": 2, "name": "Grace", "age": 45, "seen": "2024-05-01T12:00:00Z"},
    ]
    assert client.post(f"/tables/{name}/rows/batch", json={"rows": rows}).status_code == 200
    yield name
    client.delete(f"/tables/{name}")


def snapshot(client: httpx.Client, table: str) -> tuple[Any, Any]:
    info = client.get(f"/tables/{table}").json()
    return client.get(f"/tables/{table}/rows").json(), (info["row_count"], info["version"])


def send(client: httpx.Client, method: str, path: str, body: Any) -> httpx.Response:
    if body is None:
        return client.request(method, path)
    if isinstance(body, bytes):
        return client.request(method, path, content=body, headers={"content-type": "application/json"})
    return client.request(method, path, json=body)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_request(client: httpx.Client, table: str, case: Case, expect_error: ErrorCheck) -> None:
    before = snapshot(client, table)
    r = send(client, case.method, case.path.replace(T, table), case.body)
    body = expect_error(r, case.status, case.code, *case.mentions)
    if case.status == 422:
        assert body["errors"], body
        assert all(set(e) == {"loc", "msg", "type"} for e in body["errors"])
        if case.loc is not None:
            assert list(case.loc) in [e["loc"] for e in body["errors"]], body["errors"]
    assert snapshot(client, table) == before


ENDPOINTS = [
    ("GET", f"/tables/{T}", None),
    ("DELETE", f"/tables/{T}", None),
    ("GET", ROWS, None),
    ("POST", ROWS, {"data": {"id": 1}}),
    ("POST", f"{ROWS}/batch", {"rows": [{"id": 1}]}),
    ("PATCH", ROWS, {"where": {}, "set": {"a": 1}}),
    ("DELETE", ROWS, None),
    ("GET", f"{ROWS}/count", None),
    ("POST", QUERY, {}),
    ("GET", f"{ROWS}/1", None),
    ("PUT", f"{ROWS}/1", {"data": {"a": 1}}),
    ("DELETE", f"{ROWS}/1", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_unknown_table_is_404_everywhere(
    client: httpx.Client, method: str, path: str, body: Any, expect_error: ErrorCheck
) -> None:
    name = f"missing_{uuid.uuid4().hex[:8]}"
    result = expect_error(send(client, method, path.replace(T, name), body), 404, "table_not_found", name)
    assert result["table"] == name
    assert name not in client.get("/tables").json()


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_invalid_table_name_is_400_everywhere(
    client: httpx.Client, method: str, path: str, body: Any, expect_error: ErrorCheck
) -> None:
    expect_error(send(client, method, path.replace(T, "no-such%20table"), body), 400, "invalid_name", "no-such table")


def test_composite_key_row_by_id_is_400(client: httpx.Client, name: str, expect_error: ErrorCheck) -> None:
    schema = {"columns": {"a": "int", "b": "string"}}
    assert client.post("/tables", json={"name": name, "schema": schema, "primary_key": ["a", "b"]}).status_code == 200
    client.post(f"/tables/{name}/rows", json={"data": {"a": 1, "b": "x"}})
    for method in ("GET", "DELETE"):
        expect_error(client.request(method, f"/tables/{name}/rows/1"), 400, None, "composite")
    expect_error(client.put(f"/tables/{name}/rows/1", json={"data": {"b": "y"}}), 400, None, "composite")
    assert client.get(f"/tables/{name}/rows/count").json()["row_count"] == 1


def test_upsert_of_row_id_is_refused_in_keyless_table(
    client: httpx.Client, name: str, expect_error: ErrorCheck
) -> None:
    assert client.post("/tables", json={"name": name, "schema": {"columns": {"v": "int"}}}).status_code == 200
    expect_error(client.post(f"/tables/{name}/rows", json={"data": {"v": 1, "_row_id": 5}}), 400, None, "_row_id")
    assert client.get(f"/tables/{name}/rows/count").json()["row_count"] == 0


def test_many_bad_values_are_all_reported(client: httpx.Client, table: str, expect_error: ErrorCheck) -> None:
    rows = [{"id": 1000 + i, "name": "x", "age": "bad"} for i in range(8)]
    body = expect_error(
        client.post(f"/tables/{table}/rows/batch", json={"rows": rows}), 422, "schema_mismatch", "rows.0.age"
    )
    assert [e["loc"] for e in body["errors"]] == [["rows", i, "age"] for i in range(8)]
    assert "more" in body["detail"]


def test_big_integer_digits_in_strings_are_kept(client: httpx.Client, name: str) -> None:
    """A long digit run sends the body through the exact-integer parser; strings and floats must survive it."""
    schema = {"columns": {"id": "string", "n": "int", "f": "float"}}
    assert client.post("/tables", json={"name": name, "schema": schema, "primary_key": "id"}).status_code == 200
    row = {"id": "12345678901234567890123", "n": 2**63 - 1, "f": 1.5e300}
    r = client.post(f"/tables/{name}/rows", json={"data": row})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == row
    r = client.post(f"/tables/{name}/rows", json={"data": {"id": "x", "n": -(2**63)}})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["n"] == -(2**63)
