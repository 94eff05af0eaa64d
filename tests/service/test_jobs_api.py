"""The job endpoints over real servers on 127.0.0.1: every job type run to its end, priority order, progress,
cancel (pending, running, finished, forced), timeout, Idempotency-Key, validation, listing, ownership and the
permissions of creating one.

Jobs run on the session database's scheduler (its Ray worker actors); nothing here sleeps to wait: every wait
polls the API with a deadline.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from auth_helpers import ADMIN, ADMIN_KEY, READ_ONLY, bearer, new_key

import engine
from engine import Database, Settings
from service import create_app

ErrorCheck = Callable[..., dict[str, Any]]
DEADLINE = 60.0  # seconds: far beyond what any wait here needs, so only a broken feature reaches it
FINISHED = ("completed", "failed", "cancelled")
JOB_TYPES = ["data_import", "data_export", "batch_operation", "media_processing", "table_recompute", "custom"]
STATUSES = ["pending", "running", "completed", "failed", "cancelled"]
INFO_FIELDS = {
    "job_id",
    "job_type",
    "status",
    "progress",
    "parameters",
    "result",
    "error",
    "created_at",
    "started_at",
    "completed_at",
    "webhook_url",
    "logs",
}


# -- helpers -------------------------------------------------------------------------------------------------------
def sleep(seconds: float = 0, **more: Any) -> dict[str, Any]:
    return {"type": "sleep", "seconds": seconds, **more}


def submit(http: httpx.Client, job_type: str = "custom", parameters: Any = None, **body: Any) -> dict[str, Any]:
    payload = {"job_type": job_type, "parameters": sleep() if parameters is None else parameters, **body}
    r = http.post("/batch/jobs", json=payload)
    assert r.status_code == 200, r.text
    info: dict[str, Any] = r.json()
    assert set(info) == INFO_FIELDS and info["status"] in ("pending", "running"), info
    return info


def job(http: httpx.Client, job_id: str) -> dict[str, Any]:
    r = http.get(f"/batch/jobs/{job_id}")
    assert r.status_code == 200, r.text
    info: dict[str, Any] = r.json()
    return info


def wait_until(http: httpx.Client, job_id: str, ok: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    while True:
        info = job(http, job_id)
        if ok(info):
            return info
        assert time.monotonic() < deadline, f"job {job_id} never {what}: {info}"
        time.sleep(0.02)


def finished(http: httpx.Client, job_id: str) -> dict[str, Any]:
    return wait_until(http, job_id, lambda i: i["status"] in FINISHED, "finished")


def running(http: httpx.Client, job_id: str) -> dict[str, Any]:
    return wait_until(http, job_id, lambda i: i["status"] == "running", "ran")


def listed(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = http.get("/batch/jobs", params=params)
    assert r.status_code == 200, r.text
    jobs: list[dict[str, Any]] = r.json()
    return jobs


def drain(http: httpx.Client) -> None:
    """No job of an earlier test still queued or running (``http`` must see every key's jobs)."""
    deadline = time.monotonic() + DEADLINE
    while listed(http, status="pending") or listed(http, status="running"):
        assert time.monotonic() < deadline, "the queue never emptied"
        time.sleep(0.05)


def occupy(http: httpx.Client, workers: int, seconds: float) -> list[str]:
    """Every worker busy sleeping (at the top priority), so what is queued next stays pending meanwhile."""
    drain(http)
    busy = [submit(http, parameters=sleep(seconds), priority=10)["job_id"] for _ in range(workers)]
    for job_id in busy:
        running(http, job_id)
    return busy


def cancel(http: httpx.Client, job_id: str) -> dict[str, Any]:
    r = http.post(f"/batch/jobs/{job_id}/cancel")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def keyed(api: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=api, headers=bearer(key), timeout=60)


# -- fixtures ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workers(db: Database) -> int:
    return db.settings.job_workers


@pytest.fixture(scope="module")
def api(serve: Callable[..., str]) -> str:
    """A required-mode server over the session database."""
    return serve(auth="required", admin_key=ADMIN_KEY) + "/api/v1"


@pytest.fixture(scope="module")
def admin(api: str) -> Iterator[httpx.Client]:
    with keyed(api, ADMIN_KEY) as http:
        yield http


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, serve: Callable[..., str]) -> Iterator[httpx.Client]:
    """A server over its own database, whose scheduler forces a job that ignores a cancel after 0.5 s."""
    database = engine.connect(
        data_dir=str(tmp_path_factory.mktemp("jobs_strict")),
        settings=Settings(),
        num_cpus=2,
        maintenance_seconds=0,
        job_cancel_grace_seconds=0.5,
    )
    with httpx.Client(base_url=serve(create_app(database, database.settings)) + "/api/v1", timeout=60) as http:
        yield http
    database.close()


@pytest.fixture(scope="module")
def schemas(base_url: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{base_url}/openapi.json").json()
    return document


def conforms(schemas: dict[str, Any], name: str, value: Any) -> None:
    """``value`` matches the OpenAPI document's ``name`` schema (the TypedDicts are what is sent)."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": schemas["components"]}
    jsonschema.Draft202012Validator(schema).validate(value)


@pytest.fixture
def priced(client: httpx.Client, name: str) -> str:
    """A table of 10 rows ``id, price`` and a computed column ``d = f(price)``, ``f`` a SQL UDF ``price * 2``."""
    schema = {"columns": {"id": "int", "price": "float"}}
    assert client.post("/tables", json={"name": name, "schema": schema, "primary_key": "id", "shards": 2}).is_success
    rows = [{"id": i, "price": float(i)} for i in range(1, 11)]
    assert client.post(f"/tables/{name}/rows/batch", json={"rows": rows}).status_code == 200
    udf = {"name": "f", "language": "sql", "code": "price * 2", "parameters": [{"name": "price", "type": "float"}]}
    r = client.post(f"/tables/{name}/udfs", json={**udf, "return_type": "float"})
    assert r.status_code == 200, r.text
    r = client.post(
        f"/tables/{name}/computed-columns", json={"name": "d", "column_type": "udf", "expression": "f(price)"}
    )
    assert r.status_code == 200, r.text
    return name


def column(client: httpx.Client, table: str, name: str) -> dict[int, Any]:
    r = client.post(f"/tables/{table}/query", json={"limit": 1000})
    assert r.status_code == 200, r.text
    return {row["id"]: row[name] for row in r.json()["rows"]}


# -- each job type -------------------------------------------------------------------------------------------------
def test_a_sleep_job_runs_to_its_end(client: httpx.Client, schemas: dict[str, Any]) -> None:
    created = submit(client, parameters=sleep(0.05), priority=7)
    conforms(schemas, "JobInfo", created)
    assert created["job_type"] == "custom" and created["parameters"] == sleep(0.05)
    assert created["result"] is None and created["error"] is None and created["webhook_url"] is None
    done = finished(client, created["job_id"])
    conforms(schemas, "JobInfo", done)
    assert done["status"] == "completed", done
    assert done["result"] == {"slept": 0.05} and done["progress"] == 100 and done["error"] is None
    assert done["created_at"] <= done["started_at"] <= done["completed_at"]
    assert done["created_at"].endswith("Z")


def test_a_table_recompute_job_updates_the_column(client: httpx.Client, priced: str) -> None:
    assert column(client, priced, "d") == {i: i * 2.0 for i in range(1, 11)}
    body = {"language": "sql", "code": "price * 3", "parameters": [{"name": "price", "type": "float"}]}
    assert client.put(f"/tables/{priced}/udfs/f", json={**body, "return_type": "float"}).status_code == 200
    assert client.get(f"/tables/{priced}/computed-columns/d").json()["stale"] is True
    created = submit(client, "table_recompute", {"table_name": priced, "column": "d"})
    done = finished(client, created["job_id"])
    assert done["status"] == "completed", done
    assert done["result"]["table_name"] == priced and done["result"]["rows_recomputed"] == 10, done
    assert column(client, priced, "d") == {i: i * 3.0 for i in range(1, 11)}
    assert client.get(f"/tables/{priced}/computed-columns/d").json()["stale"] is False
    assert any(f"recomputing {priced}.d" in line for line in done["logs"]), done["logs"]


def test_a_batch_operation_job_answers_the_batch_response(client: httpx.Client, users: str) -> None:
    def operations(row_id: int) -> list[dict[str, Any]]:
        return [
            {"operation": "insert", "table": users, "data": {"id": row_id, "name": "Job"}},
            {"operation": "update", "table": users, "where": {"id": 1}, "set": {"age": 37}, "expect_rows": 1},
        ]

    created = submit(client, "batch_operation", {"operations": operations(50)})
    done = finished(client, created["job_id"])
    assert done["status"] == "completed", done
    direct = client.post("/batch/operations", json={"operations": operations(51)})
    assert direct.status_code == 200, direct.text
    expected = direct.json()
    result = done["result"]
    assert set(result) == set(expected)
    assert {k: v for k, v in result.items() if k != "execution_time_ms"} == {
        k: v for k, v in expected.items() if k != "execution_time_ms"
    }
    assert result["committed"] is True and result["successful"] == 2
    assert client.get(f"/tables/{users}/rows/50").json()["data"]["name"] == "Job"
    failing = submit(client, "batch_operation", {"operations": [{"operation": "insert", "table": users, "data": {}}]})
    outcome = finished(client, failing["job_id"])
    assert outcome["status"] == "completed" and outcome["result"]["failed"] == 1, outcome  # as the batch answers


@pytest.mark.parametrize("job_type", ["media_processing"])
def test_types_without_a_handler_yet_are_queued_then_fail_saying_so(client: httpx.Client, job_type: str) -> None:
    done = finished(client, submit(client, job_type, {"table_name": "anything"})["job_id"])
    assert done["status"] == "failed", done
    assert f"the handler for job type '{job_type}' is missing" in done["error"]


def test_bad_parameters_create_a_job_that_fails_naming_them(client: httpx.Client) -> None:
    for job_type, parameters, named in [
        ("custom", sleep("long"), "seconds"),
        ("table_recompute", {}, "table_name"),
        ("batch_operation", {"operations": "all of them"}, "operations"),
    ]:
        done = finished(client, submit(client, job_type, parameters)["job_id"])
        assert done["status"] == "failed" and named in done["error"], done


# -- order, progress, cancel, timeout ------------------------------------------------------------------------------
def test_higher_priority_runs_first_then_first_in_first_out(client: httpx.Client, workers: int) -> None:
    busy = occupy(client, workers, 1.0)
    priorities = [2, 9, 5, 9, 1, 7, 5, 10]
    queued = [submit(client, priority=p)["job_id"] for p in priorities]
    assert all(job(client, j)["status"] == "pending" for j in queued)
    started = {j: finished(client, j)["started_at"] for j in queued}
    for j in busy:
        assert finished(client, j)["status"] == "completed"
    expected = [j for _, _, j in sorted(zip([-p for p in priorities], itertools.count(), queued, strict=False))]
    # Jobs claimed in one scheduler step may share a millisecond, so the order is checked pair by pair.
    for first, then in itertools.combinations(expected, 2):
        assert started[first] <= started[then], (priorities[queued.index(first)], priorities[queued.index(then)])


def test_progress_shows_while_running_and_cancel_stops_pending_running_and_finished(
    client: httpx.Client, workers: int
) -> None:
    busy = occupy(client, workers, 30.0)
    first = wait_until(client, busy[0], lambda i: i["progress"] > 0, "made progress")
    assert first["status"] == "running" and first["started_at"] is not None
    later = wait_until(client, busy[0], lambda i: i["progress"] > first["progress"], "made more progress")
    assert later["status"] == "running" and later["progress"] < 100
    pending = submit(client)["job_id"]
    assert job(client, pending)["status"] == "pending"
    assert cancel(client, pending) == {"message": f"Job {pending} cancelled", "cancelled": True}
    gone = job(client, pending)  # a pending job is cancelled at once
    assert gone["status"] == "cancelled" and gone["started_at"] is None and gone["completed_at"] is not None
    for job_id in busy:
        assert cancel(client, job_id) == {"message": f"Job {job_id} cancelled", "cancelled": True}
    for job_id in busy:
        assert finished(client, job_id)["status"] == "cancelled"
    again = cancel(client, busy[0])  # idempotent
    assert again == {
        "message": f"Job {busy[0]} was not cancelled: it had already been cancelled",
        "status": "cancelled",
        "cancelled": False,
    }
    done = submit(client)["job_id"]
    assert finished(client, done)["status"] == "completed"
    assert cancel(client, done) == {
        "message": f"Job {done} was not cancelled: it had already completed",
        "status": "completed",
        "cancelled": False,
    }
    assert job(client, done)["status"] == "completed"


def test_a_job_past_its_timeout_fails(client: httpx.Client) -> None:
    created = submit(client, parameters=sleep(30), timeout_seconds=1)
    done = finished(client, created["job_id"])
    assert done["status"] == "failed" and done["error"] == "timeout after 1 s", done


def test_a_job_that_ignores_a_cancel_is_stopped_by_force(strict: httpx.Client) -> None:
    stubborn = submit(strict, parameters=sleep(30, ignore_cancel=True))["job_id"]
    running(strict, stubborn)
    assert cancel(strict, stubborn)["cancelled"] is True
    assert finished(strict, stubborn)["status"] == "cancelled"
    after = submit(strict, parameters=sleep(0))["job_id"]  # the pool got a new worker for the one it stopped
    assert finished(strict, after)["status"] == "completed"


# -- the request ---------------------------------------------------------------------------------------------------
def test_an_idempotency_key_returns_the_first_job(
    client: httpx.Client, api: str, admin: httpx.Client, name: str, expect_error: ErrorCheck
) -> None:
    headers = {"Idempotency-Key": f"jobs-{name}"}
    body = {"job_type": "custom", "parameters": sleep(0)}
    first = client.post("/batch/jobs", json=body, headers=headers)
    assert first.status_code == 200, first.text
    again = client.post("/batch/jobs", json={**body, "priority": 9}, headers=headers)
    assert again.status_code == 200 and again.json()["job_id"] == first.json()["job_id"], again.text
    other = client.post("/batch/jobs", json=body, headers={"Idempotency-Key": f"jobs-{name}-2"})
    assert other.json()["job_id"] != first.json()["job_id"]
    key, _ = new_key(api, [{"resource": "data", "actions": ["read"]}])
    with keyed(api, key) as mine:  # the same key from another owner is another job
        theirs = mine.post("/batch/jobs", json=body, headers=headers)
        assert theirs.status_code == 200 and theirs.json()["job_id"] != first.json()["job_id"]
        assert mine.post("/batch/jobs", json=body, headers=headers).json()["job_id"] == theirs.json()["job_id"]
    r = client.post("/batch/jobs", json=body, headers={"Idempotency-Key": "k" * 256})
    assert expect_error(r, 400, "invalid_request", "Idempotency-Key", "255")["field"] == "Idempotency-Key"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"parameters": {}}, "job_type"),
        ({"job_type": 3}, "job_type"),
        ({"job_type": "custom", "priority": 0}, "priority"),
        ({"job_type": "custom", "priority": 11}, "priority"),
        ({"job_type": "custom", "priority": "5"}, "priority"),
        ({"job_type": "custom", "priority": 5.5}, "priority"),
        ({"job_type": "custom", "timeout_seconds": 0}, "timeout_seconds"),
        ({"job_type": "custom", "timeout_seconds": -1.5}, "timeout_seconds"),
        ({"job_type": "custom", "parameters": [1]}, "parameters"),
        ({"job_type": "custom", "webhook_events": ["finished"]}, "webhook_events"),
        ({"job_type": "custom", "webhook_url": 7}, "webhook_url"),
        ({"job_type": "custom", "colour": "blue"}, "colour"),
    ],
)
def test_a_body_of_the_wrong_shape_is_422_naming_the_field(
    client: httpx.Client, body: dict[str, Any], field: str, expect_error: ErrorCheck
) -> None:
    payload = {"parameters": sleep(), **body} if "parameters" not in body and body.get("job_type") else body
    errors = expect_error(client.post("/batch/jobs", json=payload), 422, "validation_error", field)["errors"]
    assert any(e["loc"][0] == field for e in errors), errors


def test_unknown_types_are_400_with_the_allowed_values(client: httpx.Client, expect_error: ErrorCheck) -> None:
    r = client.post("/batch/jobs", json={"job_type": "teleport", "parameters": {}})
    body = expect_error(r, 400, "invalid_request", "teleport")
    assert body["field"] == "job_type" and body["allowed"] == JOB_TYPES
    for parameters in ({"type": "teleport"}, {}, {"type": "custom"}):
        r = client.post("/batch/jobs", json={"job_type": "custom", "parameters": parameters})
        body = expect_error(r, 400, "invalid_request", "type")
        assert body["field"] == "parameters.type" and "sleep" in body["allowed"], body
    r = client.post("/batch/jobs", json={"job_type": "custom", "parameters": sleep(), "webhook_url": "ftp://x/y"})
    assert expect_error(r, 400, "invalid_request", "webhook_url")["field"] == "webhook_url"
    r = client.post(
        "/batch/jobs", json={"job_type": "custom", "parameters": sleep(), "webhook_url": "http://127.0.0.1:9/hook"}
    )
    assert r.status_code == 200 and r.json()["webhook_url"] == "http://127.0.0.1:9/hook", r.text


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("colour=red", "colour"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("status=pending&status=running", "status"),
    ],
)
def test_bad_list_parameters_are_400_naming_them(
    client: httpx.Client, query: str, parameter: str, expect_error: ErrorCheck
) -> None:
    body = expect_error(client.get(f"/batch/jobs?{query}"), 400, "invalid_parameter", parameter)
    assert body["field"] == parameter


def test_an_unknown_status_or_type_filter_is_400_with_the_allowed_values(
    client: httpx.Client, expect_error: ErrorCheck
) -> None:
    body = expect_error(client.get("/batch/jobs?status=done"), 400, "invalid_request", "done")
    assert body["field"] == "status" and body["allowed"] == STATUSES
    body = expect_error(client.get("/batch/jobs?job_type=sleep"), 400, "invalid_request", "sleep")
    assert body["field"] == "job_type" and body["allowed"] == JOB_TYPES


# -- listing, ownership, deleting ----------------------------------------------------------------------------------
def test_list_filters_and_pages_newest_first(api: str, admin: httpx.Client) -> None:
    key, _ = new_key(api, [{"resource": "data", "actions": ["read"]}])
    with keyed(api, key) as mine:
        ids = [submit(mine)["job_id"] for _ in range(3)]
        bad = submit(mine, parameters=sleep(-1))["job_id"]
        for job_id in [*ids, bad]:
            finished(mine, job_id)
        newest_first = [bad, *reversed(ids)]
        assert [j["job_id"] for j in listed(mine)] == newest_first
        assert [j["job_id"] for j in listed(mine, limit=2)] == newest_first[:2]
        assert [j["job_id"] for j in listed(mine, limit=2, offset=2)] == newest_first[2:]
        assert listed(mine, offset=4) == []
        assert [j["job_id"] for j in listed(mine, status="failed")] == [bad]
        assert [j["job_id"] for j in listed(mine, status="completed", job_type="custom")] == list(reversed(ids))
        assert listed(mine, job_type="table_recompute") == []
        assert [j["job_id"] for j in listed(mine, status="", job_type="")] == newest_first  # empty: no filter
    everyone = [j["job_id"] for j in listed(admin, limit=100)]
    assert set(newest_first) <= set(everyone)


def test_a_key_sees_and_acts_on_its_own_jobs_only(api: str, admin: httpx.Client, expect_error: ErrorCheck) -> None:
    perms = [{"resource": "data", "actions": ["read"]}]
    alice, bob = new_key(api, perms, "alice")[0], new_key(api, perms, "bob")[0]
    reader = new_key(api, [{"resource": "admin", "actions": ["read"]}], "auditor")[0]
    with keyed(api, alice) as a, keyed(api, bob) as b, keyed(api, reader) as r:
        hers = submit(a, parameters=sleep(30))["job_id"]
        assert hers not in [j["job_id"] for j in listed(b)]
        assert hers in [j["job_id"] for j in listed(a)] and hers in [j["job_id"] for j in listed(admin)]
        assert hers in [j["job_id"] for j in listed(r)]  # admin read sees every key's jobs
        for response, action in [
            (b.get(f"/batch/jobs/{hers}"), "read"),
            (b.post(f"/batch/jobs/{hers}/cancel"), "write"),
            (b.delete(f"/batch/jobs/{hers}"), "delete"),
            (r.post(f"/batch/jobs/{hers}/cancel"), "write"),  # reading another's is not cancelling it
        ]:
            body = expect_error(response, 403, "insufficient_permissions", "Insufficient permissions", hers)
            assert (body["resource"], body["action"]) == ("admin", action)
        assert job(r, hers)["status"] in ("pending", "running")
        assert cancel(admin, hers)["cancelled"] is True  # an administrator may
        assert finished(a, hers)["status"] == "cancelled"
        assert a.delete(f"/batch/jobs/{hers}").status_code == 200  # and so may its owner
    anonymous = httpx.get(f"{api}/batch/jobs")
    expect_error(anonymous, 401, "unauthorized")


def test_delete_is_409_while_the_job_runs_then_200_then_404(client: httpx.Client, expect_error: ErrorCheck) -> None:
    job_id = submit(client, parameters=sleep(30))["job_id"]
    body = expect_error(client.delete(f"/batch/jobs/{job_id}"), 409, "job_not_finished", job_id)
    assert body["status"] in ("pending", "running")
    cancel(client, job_id)
    finished(client, job_id)
    r = client.delete(f"/batch/jobs/{job_id}")
    assert r.status_code == 200 and r.json() == {"message": f"Job {job_id} deleted", "job_id": job_id}, r.text
    for response in (
        client.get(f"/batch/jobs/{job_id}"),
        client.delete(f"/batch/jobs/{job_id}"),
        client.post(f"/batch/jobs/{job_id}/cancel"),
    ):
        expect_error(response, 404, "job_not_found", job_id)
    assert job_id not in [j["job_id"] for j in listed(client, limit=100)]


# -- permissions and the rate limit of creating one ----------------------------------------------------------------
def test_creating_a_job_needs_what_the_job_does(api: str, users: str, expect_error: ErrorCheck) -> None:
    writes_users, _ = new_key(
        api, [{"resource": "data", "actions": ["write"], "constraints": {"table_names": [users]}}]
    )
    readers, _ = new_key(api, READ_ONLY)
    media, _ = new_key(api, [{"resource": "media", "actions": ["write"]}])
    insert = {"operation": "insert", "table": users, "data": {"id": 70, "name": "x"}}
    elsewhere = {**insert, "table": "some_other_table"}
    cases: list[tuple[str, str, dict[str, Any], bool]] = [
        (writes_users, "table_recompute", {"table_name": users}, True),
        (writes_users, "table_recompute", {"table_name": "some_other_table"}, False),
        (writes_users, "table_recompute", {}, False),  # no table named: a key limited to tables may not
        (writes_users, "data_import", {"table_name": users}, True),
        (writes_users, "data_export", {"table_name": users}, False),
        (readers, "data_export", {"table_name": users}, True),
        (readers, "data_import", {"table_name": users}, False),
        (writes_users, "batch_operation", {"operations": [insert]}, True),
        (writes_users, "batch_operation", {"operations": [insert, elsewhere]}, False),
        (writes_users, "batch_operation", {"operations": [{**insert, "operation": "delete", "where": {}}]}, False),
        (readers, "media_processing", {}, False),
        (media, "media_processing", {}, True),
        (media, "custom", sleep(), True),  # any valid key
    ]
    for key, job_type, parameters, allowed in cases:
        r = httpx.post(f"{api}/batch/jobs", json={"job_type": job_type, "parameters": parameters}, headers=bearer(key))
        if allowed:
            assert r.status_code == 200, (job_type, parameters, r.text)
        else:
            expect_error(r, 403, "insufficient_permissions", "Insufficient permissions")
    with keyed(api, writes_users) as mine:
        assert len(listed(mine)) == 3  # the refused ones were never queued


def test_job_creation_has_its_own_rate_limit(serve: Callable[..., str], expect_error: ErrorCheck) -> None:
    api = serve(auth="required", admin_key=ADMIN_KEY, rate_limit_jobs_per_hour=2) + "/api/v1"
    key, _ = new_key(api, [{"resource": "data", "actions": ["read"]}])
    with keyed(api, key) as mine:
        for _ in range(2):
            submit(mine)
        r = mine.post("/batch/jobs", json={"job_type": "custom", "parameters": sleep()})
        body = expect_error(r, 429, "rate_limited", "2 job creations per hour")
        assert body["limit"] == "jobs" and int(r.headers["retry-after"]) > 0
        assert len(listed(mine)) == 2  # listing is not creating
    assert httpx.get(f"{api}/batch/jobs", headers=ADMIN).status_code == 200
