"""``tessera jobs list|show|watch|cancel`` against a real server on 127.0.0.1 over the session's database.

Jobs are submitted through ``db.jobs`` (which runs them on this process's worker pool); the CLI sees them only
through the REST API, as it would a remote server's.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest
from auth_helpers import ADMIN_KEY  # every required-mode server of the session uses this one
from rich.console import Console

from engine import Database
from engine.client.jobs import Job
from service.cli import main
from service.jobs_cli import JobsApi, new_lines, snippet, watch, when

DEADLINE = 60.0


def sleeping(db: Database, seconds: float) -> Job:
    return db.jobs.submit("custom", {"type": "sleep", "seconds": seconds})


def logging_job(db: Database) -> Job:
    """A batch job that logs two lines ("running 1 operations ...", "0 succeeded, 1 failed") and completes."""
    operations = [{"operation": "update", "table": "jobs_cli_no_such_table", "where": {}, "set": {"v": 1}}]
    return db.jobs.submit("batch_operation", {"operations": operations}).wait(DEADLINE)


def no_sleep_expected(seconds: float) -> None:
    raise AssertionError(f"watch polled again ({seconds} s) after the job had finished")


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- list ---------------------------------------------------------------------------------------------------------
def test_list_shows_a_table_and_json(db: Database, base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    job = sleeping(db, 0).wait(DEADLINE)
    assert main(["jobs", "list", "--url", base_url, "--type", "custom", "--status", "completed"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if job.id[:8] in line)
    assert job.id not in out  # the table shows the first 8 characters of an id
    for cell in ("custom/sleep", "completed", "100%", job.info["created_at"][:10]):
        assert cell in row, (cell, row)

    assert main(["jobs", "list", "--url", base_url, "--type", "custom", "--limit", "50", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    mine = next(info for info in listed if info["job_id"] == job.id)
    assert (mine["status"], mine["progress"], mine["result"]) == ("completed", 100, {"slept": 0.0})


def test_list_filters_reach_the_server(
    db: Database, base_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # rich's width when stdout is no terminal: room for the error column
    failed = db.jobs.submit("custom", {"type": "sleep", "seconds": "soon"}).wait(DEADLINE)
    assert main(["jobs", "list", "--url", base_url, "--status", "completed", "--limit", "50", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {info["status"] for info in listed} == {"completed"}
    assert failed.id not in {info["job_id"] for info in listed}
    assert main(["jobs", "list", "--url", base_url, "--status", "failed"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if failed.id[:8] in line)
    assert "failed" in row and "seconds" in row  # the error snippet names the bad parameter


def test_list_with_an_unknown_status_says_what_is_allowed(base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "list", "--url", base_url, "--status", "sleeping"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("tessera: error:") and len(captured.err.strip().splitlines()) == 1
    assert "sleeping" in captured.err and "pending" in captured.err, captured.err


# -- show ---------------------------------------------------------------------------------------------------------
def test_show_prints_every_field_and_the_log(db: Database, base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    job = logging_job(db)
    logs = job.info["logs"]
    assert len(logs) == 2, logs
    assert main(["jobs", "show", job.id, "--url", base_url]) == 0
    out = capsys.readouterr().out
    for field in ("job_id", "job_type", "status", "progress", "created_at", "started_at", "completed_at", "result"):
        assert field in out, field
    assert job.id in out and "batch_operation" in out and "completed" in out
    assert '"committed": false' in out  # the result, as JSON
    assert "log (2 lines)" in out
    assert out.index(logs[0]) < out.index(logs[1])

    assert main(["jobs", "show", job.id, "--url", base_url, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info == job.refresh().info


# -- watch --------------------------------------------------------------------------------------------------------
def test_watch_follows_a_job_to_completion(db: Database, base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    job = sleeping(db, 1)
    assert main(["jobs", "watch", job.id, "--url", base_url, "--interval", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "100%" in out
    assert f"job {job.id} completed" in out and '"slept": 1.0' in out
    assert job.refresh().status == "completed"


def test_watch_prints_the_log_lines(db: Database, base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    job = logging_job(db)
    assert main(["jobs", "watch", job.id, "--url", base_url]) == 0
    out = capsys.readouterr().out
    for line in job.info["logs"]:
        assert out.count(line) == 1, (line, out)


def test_watch_of_a_failing_job_exits_1_with_the_error(
    db: Database, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job = db.jobs.submit("custom", {"type": "sleep", "seconds": "soon"})
    assert main(["jobs", "watch", job.id, "--url", base_url]) == 1
    err = capsys.readouterr().err
    assert f"job {job.id} failed" in err and "seconds" in err and "soon" in err, err


def test_watch_of_a_cancelled_job_exits_1(db: Database, base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    job = sleeping(db, 30)
    job.cancel()
    assert job.wait(DEADLINE).status == "cancelled"
    assert main(["jobs", "watch", job.id, "--url", base_url]) == 1
    assert f"job {job.id} cancelled" in capsys.readouterr().err


def test_watch_stops_polling_once_the_job_is_finished(
    db: Database, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job = sleeping(db, 0).wait(DEADLINE)
    with JobsApi(base_url) as api:
        assert watch(api, job.id, Console(), interval=0.01, sleep=no_sleep_expected) == 0
    assert "100%" in capsys.readouterr().out


def test_watch_polls_at_most_twice_a_second(db: Database, base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    job = sleeping(db, 30)
    pauses: list[float] = []

    def cancel_after_three(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            job.cancel()

    try:
        with JobsApi(base_url) as api:
            assert watch(api, job.id, Console(), interval=0.01, sleep=cancel_after_three) == 1
    finally:
        job.cancel()
    assert len(pauses) >= 3 and set(pauses) == {0.5}, pauses
    assert job.wait(DEADLINE).status == "cancelled"


def test_ctrl_c_stops_watching_and_leaves_the_job_running(
    db: Database, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job = sleeping(db, 30)

    def ctrl_c(seconds: float) -> None:
        raise KeyboardInterrupt

    try:
        with JobsApi(base_url) as api:
            assert watch(api, job.id, Console(), sleep=ctrl_c) == 130
        err = capsys.readouterr().err
        assert "stopped watching" in err and "keeps going" in err and f"tessera jobs cancel {job.id}" in err
        assert job.refresh().status in ("pending", "running")
    finally:
        job.cancel()
    assert job.wait(DEADLINE).status == "cancelled"


# -- cancel -------------------------------------------------------------------------------------------------------
def test_cancel_a_running_job_then_again(db: Database, base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    job = sleeping(db, 30)
    assert main(["jobs", "cancel", job.id, "--url", base_url]) == 0
    assert capsys.readouterr().out.strip() == f"Job {job.id} cancelled"
    assert job.wait(DEADLINE).status == "cancelled"
    assert main(["jobs", "cancel", job.id, "--url", base_url]) == 0  # idempotent: says it was not cancelled
    assert capsys.readouterr().out.strip().startswith(f"Job {job.id} was not cancelled")


# -- errors -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", ["show", "watch", "cancel"])
def test_an_unknown_id_is_one_line_and_exit_1(action: str, base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", action, "no-such-job", "--url", base_url]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("tessera: error:") and "no-such-job" in captured.err and "404" in captured.err


@pytest.mark.parametrize("action", [["list"], ["show", "x"], ["watch", "x"], ["cancel", "x"]])
def test_an_unreachable_server_is_one_line_and_exit_1(
    action: list[str], closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    assert main(["jobs", *action, "--url", url]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "cannot reach" in captured.err and url in captured.err


def test_a_bad_url_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "list", "--url", "localhost-without-scheme"]) == 1
    assert "is not a server address" in capsys.readouterr().err


def test_the_url_and_the_key_come_from_the_environment(
    db: Database,
    serve: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = serve(auth="required", admin_key=ADMIN_KEY)
    job = sleeping(db, 0).wait(DEADLINE)
    monkeypatch.setenv("TESSERA_URL", url)
    monkeypatch.delenv("TESSERA_API_KEY", raising=False)
    assert main(["jobs", "show", job.id]) == 1
    err = capsys.readouterr().err
    assert "401" in err and "TESSERA_API_KEY" in err and len(err.strip().splitlines()) == 1
    assert main(["jobs", "show", job.id, "--api-key", "not-the-key-at-all"]) == 1
    assert "the key was refused" in capsys.readouterr().err
    monkeypatch.setenv("TESSERA_API_KEY", ADMIN_KEY)
    assert main(["jobs", "show", job.id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["job_id"] == job.id


# -- pure helpers -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seen", "logs", "new"),
    [
        ([], [], []),
        ([], ["a", "b"], ["a", "b"]),
        (["a"], ["a", "b", "c"], ["b", "c"]),
        (["a", "b"], ["a", "b"], []),
        (["a", "b", "c"], ["b", "c", "d"], ["d"]),  # the capped log dropped its oldest line
        (["a", "b", "c"], ["c", "d", "e"], ["d", "e"]),
        (["x", "x"], ["x", "x", "y"], ["y"]),  # repeated lines
        (["a", "b"], ["c", "d"], ["c", "d"]),  # more arrived between two polls than the server keeps
    ],
)
def test_new_lines(seen: list[str], logs: list[str], new: list[str]) -> None:
    assert new_lines(seen, logs) == new


def test_table_cells() -> None:
    assert when("2024-05-01T12:00:00.123Z") == "2024-05-01 12:00:00" and when(None) == ""
    assert snippet(None) == "" and snippet("boom\nat line 2") == "boom"
    assert snippet("x" * 100, width=10) == "x" * 9 + "…"
