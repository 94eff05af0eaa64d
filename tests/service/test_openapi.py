"""The OpenAPI document (``GET /openapi.json``) and the offline docs page (``GET /docs``), over real servers.

The document is checked against the routes the real app serves.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from auth_helpers import ADMIN_KEY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from engine import Database
from service import create_app
from service.openapi import UndocumentedRoute, document_bytes, openapi_document

PUBLIC = {"/health", "/ready", "/api/v1/health", "/api/v1/ready", "/openapi.json", "/docs", "/docs/assets/{path}"}
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
OPTIONAL_BODIES = {
    ("delete", "/api/v1/tables/{table}/rows"),  # no body: every row
    ("post", "/api/v1/tables/{table}/computed-columns/{column}/recompute"),
}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


# -- helpers -------------------------------------------------------------------------------------------------------
def served(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every (method, path template) the routes answer, mounts included (HEAD goes with GET)."""
    for route in routes:
        if isinstance(route, Mount):
            if route.routes:
                yield from served(route.routes, prefix + route.path)
            else:  # an ASGI app of its own (static files)
                yield "GET", f"{prefix}{route.path}/{{path}}"
        else:
            assert isinstance(route, Route) and route.methods, route
            for method in route.methods - {"HEAD"}:
                yield method, prefix + route.path


def serves_docs(app: Starlette) -> bool:
    return ("GET", "/docs") in set(served(app.routes))


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, op in item.items():
            yield method, path, op


def json_schema(operation: dict[str, Any], part: str = "response") -> dict[str, Any]:
    if part == "body":
        schema: dict[str, Any] = operation["requestBody"]["content"]["application/json"]["schema"]
    else:
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    return schema


def validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A JSON Schema validator for ``schema`` whose ``#/components/...`` references resolve in ``document``."""
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


# -- fixtures ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_app(db: Database) -> Iterator[Starlette]:
    app = create_app(db, db.settings.with_(auth="open"))
    yield app
    gate = getattr(app.state, "gate", None)
    if gate is not None:  # the key store's usage recorder
        gate.close()


@pytest.fixture(scope="module")
def docs_app(real_app: Starlette) -> Starlette:
    return real_app


@pytest.fixture(scope="module")
def docs_url(serve: Callable[..., str], docs_app: Starlette) -> str:
    return serve(docs_app)


@pytest.fixture(scope="module")
def document(docs_url: str) -> dict[str, Any]:
    r = httpx.get(f"{docs_url}/openapi.json")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    return body


# -- the document --------------------------------------------------------------------------------------------------
def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] and document["info"]["version"]
    try:
        from openapi_spec_validator import validate
    except ImportError:  # not installed: the structural checks below still run
        pass
    else:
        validate(document)
    for method, path, op in operations(document):
        assert method in METHODS and path.startswith("/"), (method, path)
        assert "200" in op["responses"] and op["operationId"], (method, path)
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids))
    for ref in refs(document):
        assert resolve(document, ref) is not None, ref


def test_every_served_route_is_documented(docs_app: Starlette, document: dict[str, Any]) -> None:
    endpoints = set(served(docs_app.routes))
    assert ("POST", "/api/v1/tables") in endpoints and ("GET", "/docs") in endpoints
    missing = [f"{m} {p}" for m, p in endpoints if m.lower() not in document["paths"].get(p, {})]
    assert not missing
    documented = {(m.upper(), p) for m, p, _ in operations(document)}
    assert documented == endpoints  # and nothing that is not served


def test_an_undocumented_route_is_a_loud_error(docs_app: Starlette) -> None:
    async def endpoint(request: Request) -> Response:
        return Response()

    extra = Mount("/api/v1", routes=[Route("/tables/{table}/secret", endpoint, methods=["GET", "POST"])])
    with pytest.raises(UndocumentedRoute) as raised:
        openapi_document([*docs_app.routes, extra])
    assert sorted(raised.value.missing) == ["GET /api/v1/tables/{table}/secret", "POST /api/v1/tables/{table}/secret"]
    assert "POST /api/v1/tables/{table}/secret" in str(raised.value)
    assert "OPERATIONS" in str(raised.value)


def test_the_document_is_built_once_per_app(docs_app: Starlette, docs_url: str) -> None:
    assert document_bytes(docs_app) is document_bytes(docs_app)
    assert httpx.get(f"{docs_url}/openapi.json").content == document_bytes(docs_app)


@pytest.mark.parametrize(
    ("method", "path", "body", "response"),
    [
        ("post", "/api/v1/tables", "CreateTable", "TableCreated"),
        ("post", "/api/v1/tables/{table}/rows", "InsertRow", "RowData"),
        ("post", "/api/v1/tables/{table}/rows/batch", "InsertBatch", "RowCount"),
        ("post", "/api/v1/tables/{table}/query", "Query", "QueryResponse"),
        ("patch", "/api/v1/tables/{table}/rows", "UpdateRows", "RowsUpdated"),
        ("delete", "/api/v1/tables/{table}/rows", "DeleteRows", "RowCount"),
        ("put", "/api/v1/tables/{table}/rows/{row_id}", "UpdateRow", "RowData"),
        ("post", "/api/v1/tables/{table}/computed-columns", "AddComputedColumn", "ComputedColumnInfo"),
        ("post", "/api/v1/tables/{table}/computed-columns/{column}/recompute", "Recompute", "RecomputeResult"),
        ("post", "/api/v1/tables/{table}/udfs", "RegisterUdf", "UDFInfo"),
        ("put", "/api/v1/tables/{table}/udfs/{name}", "ReplaceUdf", "UDFInfo"),
        ("post", "/api/v1/batch/operations", "BatchRequest", "BatchResponse"),
    ],
)
def test_bodies_and_responses_reference_their_schemas(
    document: dict[str, Any], method: str, path: str, body: str, response: str
) -> None:
    op = document["paths"][path][method]
    assert json_schema(op, "body") == {"$ref": f"#/components/schemas/{body}"}
    assert json_schema(op) == {"$ref": f"#/components/schemas/{response}"}
    for name in (body, response):
        assert document["components"]["schemas"][name]["type"] == "object"
    assert op["requestBody"]["required"] is ((method, path) not in OPTIONAL_BODIES)


def test_component_schemas_follow_the_models(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    create = schemas["CreateTable"]
    assert set(create["required"]) == {"name", "schema"}  # the field's alias, as clients send it
    assert create["properties"]["schema"] == {"$ref": "#/components/schemas/SchemaSpec"}
    assert create["additionalProperties"] is False  # unknown fields are a 422
    assert "column_type" in schemas["ColumnInfo"]["properties"]
    assert "column_type" not in schemas["ColumnInfo"]["required"]  # NotRequired, even on Python 3.11
    tables = document["paths"]["/api/v1/tables"]["get"]
    assert json_schema(tables) == {"type": "array", "items": {"type": "string"}}
    udfs = document["paths"]["/api/v1/tables/{table}/udfs"]["get"]
    assert json_schema(udfs) == {"type": "array", "items": {"$ref": "#/components/schemas/UDFInfo"}}


def test_query_path_and_header_parameters(document: dict[str, Any]) -> None:
    rows = document["paths"]["/api/v1/tables/{table}/rows"]["get"]
    params = {(p["in"], p["name"]): p for p in rows["parameters"]}
    assert set(params) == {("path", "table"), *(("query", n) for n in ("limit", "offset", "select", "order_by"))}
    assert params[("path", "table")]["required"] is True
    assert params[("query", "limit")]["schema"] == {"type": "integer", "minimum": 0, "maximum": 10_000, "default": 100}
    assert "requestBody" not in rows
    row = document["paths"]["/api/v1/tables/{table}/rows/{row_id}"]["delete"]
    assert [p["name"] for p in row["parameters"]] == ["table", "row_id"]
    batch = document["paths"]["/api/v1/batch/operations"]["post"]
    assert [(p["in"], p["name"]) for p in batch["parameters"]] == [("header", "Idempotency-Key")]


def test_security_is_on_every_operation_but_the_public_ones(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <key>`"},
        "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    assert "security" not in document  # no global requirement that public operations would inherit
    seen_public = set()
    for method, path, op in operations(document):
        if path in PUBLIC:
            seen_public.add(path)
            assert "security" not in op, (method, path)
            assert "401" not in op["responses"], (method, path)
        else:
            assert op["security"] == SECURITY, (method, path)
            assert {"401", "403", "429"} <= set(op["responses"]), (method, path)
    assert {"/api/v1/health", "/api/v1/ready", "/openapi.json", "/docs"} <= seen_public


def test_error_responses_follow_the_operation(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        statuses = set(op["responses"]) - {"200"}
        assert "400" in statuses, (method, path)
        if path in PUBLIC:
            continue
        if "{" in path:
            assert "404" in statuses, (method, path)
        if "requestBody" in op:
            assert {"413", "415", "422"} <= statuses, (method, path)
        for status in statuses:
            response = resolve(document, op["responses"][status]["$ref"])
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
            assert "X-Request-ID" in response["headers"]
    assert "409" in document["paths"]["/api/v1/tables"]["post"]["responses"]
    assert "Retry-After" in document["components"]["responses"]["RateLimited"]["headers"]
    assert set(document["components"]["schemas"]["Error"]["required"]) == {"detail", "code"}


def test_responses_match_their_schemas(document: dict[str, Any], client: httpx.Client, users: str) -> None:
    """Real answers of the API validate against the documented schemas (the TypedDicts are what is sent)."""
    paths = document["paths"]
    cases = [
        (paths["/api/v1/tables/{table}"]["get"], client.get(f"/tables/{users}")),
        (paths["/api/v1/tables/{table}/rows"]["get"], client.get(f"/tables/{users}/rows", params={"limit": 2})),
        (paths["/api/v1/tables/{table}/rows/count"]["get"], client.get(f"/tables/{users}/rows/count")),
        (paths["/api/v1/tables"]["get"], client.get("/tables")),
        (paths["/api/v1/health"]["get"], client.get("/health")),
        (paths["/api/v1/ready"]["get"], client.get("/ready")),
    ]
    for op, r in cases:
        assert r.status_code == 200, r.text
        validator(document, json_schema(op)).validate(r.json())
    r = client.post(f"/tables/{users}/rows", json={"data": {"id": 10, "name": "Edsger"}})
    assert r.status_code == 200, r.text
    validator(document, json_schema(paths["/api/v1/tables/{table}/rows"]["post"])).validate(r.json())
    missing = client.get("/tables/no_such_table_here")
    assert missing.status_code == 404
    validator(document, {"$ref": "#/components/schemas/Error"}).validate(missing.json())


# -- permissions and the auth endpoints ------------------------------------------------------------------------------
async def _unused(request: Request) -> Response:
    raise AssertionError("not served")


AUTH_ROUTES: list[BaseRoute] = [
    Mount(
        "/api/v1",
        routes=[
            Route("/auth/api-keys", _unused, methods=["GET", "POST"]),
            Route("/auth/api-keys/revoke", _unused, methods=["POST"]),
            Route("/auth/api-keys/{key_id}", _unused, methods=["GET"]),
            Route("/auth/api-keys/{key_id}/rotate", _unused, methods=["POST"]),
            Route("/auth/api-keys/{key_id}/usage", _unused, methods=["GET"]),
            Route("/auth/verify", _unused, methods=["GET"]),
        ],
    )
]


def test_auth_endpoints_are_documented() -> None:
    doc = openapi_document(AUTH_ROUTES, needs=None)
    keys = doc["paths"]["/api/v1/auth/api-keys"]
    assert json_schema(keys["post"], "body") == {"$ref": "#/components/schemas/CreateApiKey"}
    assert json_schema(keys["post"]) == {"$ref": "#/components/schemas/ApiKeyCreated"}
    assert json_schema(keys["get"]) == {"type": "array", "items": {"$ref": "#/components/schemas/ApiKeyInfo"}}
    revoke = doc["paths"]["/api/v1/auth/api-keys/revoke"]["post"]
    assert json_schema(revoke, "body") == {"$ref": "#/components/schemas/RevokeApiKey"}
    rotate = doc["paths"]["/api/v1/auth/api-keys/{key_id}/rotate"]["post"]
    assert "requestBody" not in rotate and "404" in rotate["responses"]
    usage = doc["paths"]["/api/v1/auth/api-keys/{key_id}/usage"]["get"]
    assert [(p["in"], p["name"], p["schema"]["type"]) for p in usage["parameters"]] == [
        ("path", "key_id", "string"),
        ("query", "hours", "integer"),
    ]
    assert json_schema(usage) == {"$ref": "#/components/schemas/ApiKeyUsage"}
    verify = doc["paths"]["/api/v1/auth/verify"]["get"]
    assert json_schema(verify) == {"$ref": "#/components/schemas/Verified"}
    assert all(op["security"] == SECURITY for _, _, op in operations(doc))
    permission = doc["components"]["schemas"]["PermissionSpec"]["properties"]["resource"]
    assert set(permission["enum"]) == {"tables", "data", "media", "admin"}
    try:
        from openapi_spec_validator import validate
    except ImportError:
        return
    validate(doc)


def test_descriptions_say_what_permission_is_needed(docs_app: Starlette) -> None:
    asked: list[tuple[str, str]] = []

    def needs(method: str, template: str) -> str:
        asked.append((method, template))
        return "data:read"

    doc = openapi_document(docs_app.routes, needs=needs)
    rows = doc["paths"]["/api/v1/tables/{table}/rows"]["get"]
    assert "Needs: data:read." in rows["description"]
    assert ("GET", "/tables/{table}/rows") in asked  # the template inside its mount, as the policy names it
    assert all(path not in PUBLIC for _, path in asked)  # public operations need nothing
    assert "description" not in doc["paths"]["/docs"]["get"]


def test_descriptions_come_from_the_policy(document: dict[str, Any]) -> None:
    rows = document["paths"]["/api/v1/tables/{table}/rows"]
    assert "Needs: data:read" in rows["get"]["description"]
    assert "Needs: data:write" in rows["post"]["description"]


# -- the docs page ---------------------------------------------------------------------------------------------------
_CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


def test_docs_page_uses_only_local_assets(docs_url: str) -> None:
    r = httpx.get(f"{docs_url}/docs")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    policy = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'none'"
    assert "unsafe" not in r.headers["content-security-policy"]
    assert "http:" not in r.text and "https:" not in r.text and "//" not in r.text
    assert "<b>open</b> mode" in r.text  # the note on how keys work, and what open mode does
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", r.text)
    assert len(urls) >= 4, urls
    kinds = set()
    for url in urls:
        assert not re.match(r"^([a-z][a-z0-9+.-]*:|/)", url, re.I), f"not a relative URL: {url}"
        asset = httpx.get(str(r.url.join(url)))
        assert asset.status_code == 200, (url, asset.status_code)
        kind = next(v for k, v in _CONTENT_TYPES.items() if url.endswith(k))
        assert kind in asset.headers["content-type"], (url, asset.headers["content-type"])
        kinds.add(kind)
    assert {"javascript", "text/css"} <= kinds
    scripts = re.findall(r"""<script[^>]*src=["']([^"']+)["']""", r.text)
    own = [u for u in scripts if "swagger-ui-bundle" not in u]
    assert own, scripts
    for url in own:
        code = httpx.get(str(r.url.join(url))).text
        assert "://" not in code and "openapi.json" not in code, code  # the document's URL is on the page


def test_docs_page_runs_no_inline_script(docs_url: str) -> None:
    page = httpx.get(f"{docs_url}/docs").text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), page
    assert not re.search(r"\son[a-z]+\s*=", page), page  # no inline event handlers either


@pytest.mark.parametrize(
    "path", ["swagger-initializer.js", "swagger-editor-bundle.js", "../__init__.py", "index.html", "nope.js"]
)
def test_docs_assets_serve_only_the_page_files(docs_url: str, path: str) -> None:
    r = httpx.get(f"{docs_url}/docs/assets/{path}")
    assert r.status_code == 404, (path, r.status_code)


def test_docs_and_document_need_no_key_in_required_mode(real_app: Starlette, serve: Callable[..., str]) -> None:
    assert serves_docs(real_app)
    url = serve(auth="required", admin_key=ADMIN_KEY)
    assert httpx.get(f"{url}/api/v1/tables").status_code == 401  # the mode is on
    assert "runs in <b>required</b> mode" in httpx.get(f"{url}/docs").text
    for path in ("/openapi.json", "/docs", "/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
        r = httpx.get(url + path)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
