"""``tessera jobs``: list, show, watch and cancel the jobs of a running server, through its REST API.

The commands are clients of ``/api/v1/batch/jobs`` like any other: they need no data directory and no Ray, only the
server's address (``--url``, ``TESSERA_URL``, default http://127.0.0.1:8000) and, in required mode, a key
(``--api-key``, or better ``TESSERA_API_KEY``, which stays out of the process list).

    tessera jobs list --status running           # a table, newest first; --json for the JobInfo list
    tessera jobs show 3f2a...                    # every field and the log
    tessera jobs watch 3f2a...                   # a live progress bar and the new log lines, until the job ends
    tessera jobs cancel 3f2a...

Exit codes: 0 done (``watch``: the job completed), 1 the job failed or was cancelled, or the request failed (one
line on stderr: the server is unreachable, the key is refused, the job does not exist ...), 130 ``watch``
interrupted by Ctrl-C (the job itself keeps running).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from engine.storage.jobs import FINISHED

DEFAULT_URL: Final = "http://127.0.0.1:8000"
MIN_INTERVAL: Final = 0.5  # watch polls at most twice a second, whatever --interval says
REQUEST_TIMEOUT: Final = 10.0
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report a Ctrl-C
ERROR_SNIPPET: Final = 48  # the error column's width where nothing else sets it
MIN_ERROR_WIDTH: Final = 10

JobInfo = dict[str, Any]


class CliError(Exception):
    """A request that did not work, said in one line for stderr (exit 1); never a traceback."""


class JobsApi:
    """The three job endpoints of one server, with every failure turned into a ``CliError`` that names it."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = REQUEST_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._keyed = bool(api_key)
        try:
            self._http = httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=timeout)
        except (httpx.InvalidURL, ValueError) as exc:  # a --url that is not one
            raise CliError(f"--url {url!r} is not a server address ({exc}); e.g. {DEFAULT_URL}") from exc

    def __enter__(self) -> JobsApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def list(self, status: str | None = None, job_type: str | None = None, limit: int | None = None) -> list[JobInfo]:
        params = {k: v for k, v in {"status": status, "job_type": job_type, "limit": limit}.items() if v is not None}
        jobs: list[JobInfo] = self._request("GET", "/batch/jobs", params=params)
        return jobs

    def get(self, job_id: str) -> JobInfo:
        info: JobInfo = self._request("GET", f"/batch/jobs/{quote(job_id, safe='')}")
        return info

    def cancel(self, job_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._request("POST", f"/batch/jobs/{quote(job_id, safe='')}/cancel")
        return answer

    def _request(self, method: str, path: str, params: Mapping[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, params=params)
        except httpx.TimeoutException as exc:
            raise CliError(f"the server at {self.url} did not answer within {self.timeout:g} s") from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise CliError(f"--url {self.url!r} is not a server address ({exc}); e.g. {DEFAULT_URL}") from exc
        except httpx.TransportError as exc:
            raise CliError(
                f"cannot reach a Tessera server at {self.url} ({exc or type(exc).__name__}); is `tessera serve` "
                "running there? (--url, TESSERA_URL)"
            ) from exc
        if not response.is_success:  # a redirect too: this is not the API we know
            raise CliError(problem(response, self.url, keyed=self._keyed))
        try:
            return response.json()
        except ValueError as exc:
            raise CliError(f"the server at {self.url} answered {path} with something other than JSON") from exc


def problem(response: httpx.Response, url: str, keyed: bool) -> str:
    """One line for an error response: the server's ``detail`` and what to do about the common ones."""
    try:
        body = response.json()
        detail = str(body.get("detail") or body) if isinstance(body, dict) else str(body)
    except ValueError:
        detail = response.text.strip()[:200] or response.reason_phrase
    status = response.status_code
    if status == 401:
        hint = "the key was refused" if keyed else "this server wants an API key"
        return f"{hint} (401: {detail}); pass --api-key or set TESSERA_API_KEY"
    if status == 403:
        return f"this API key may not do that (403: {detail})"
    if status == 404:
        return f"{detail} (404 from {url})"
    return f"the server answered {status}: {detail}"


def short_id(job_id: str) -> str:
    return job_id[:8]


def when(timestamp: str | None) -> str:
    """``2024-05-01T12:00:00.123Z`` as ``2024-05-01 12:00:00`` (UTC; the catalog writes ISO-8601 UTC)."""
    return "" if not timestamp else timestamp[:19].replace("T", " ")


def percent(progress: float | None) -> str:
    return f"{float(progress or 0):.0f}%"


def snippet(error: str | None, width: int = ERROR_SNIPPET) -> str:
    """The first line of an error, cut to ``width`` characters so a table row stays one line."""
    first = (error or "").strip().splitlines()[0] if (error or "").strip() else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def kind(info: Mapping[str, Any]) -> str:
    """The job type, with the registered type of a ``custom`` job (``custom/sleep``), which is what tells them apart."""
    parameters = info.get("parameters")
    if info.get("job_type") == "custom" and isinstance(parameters, dict) and isinstance(parameters.get("type"), str):
        return f"custom/{parameters['type']}"
    return str(info.get("job_type"))


def jobs_table(jobs: Sequence[Mapping[str, Any]], width: int = 120) -> Table:
    """One line per job, ``width`` characters at most: the error column gets what the others leave (on a terminal
    too narrow even for them, rich cuts every column short)."""
    headers = ("id", "type", "status", "progress", "created (UTC)")
    rows = [
        (
            short_id(str(info["job_id"])),
            kind(info),
            str(info["status"]),
            percent(info.get("progress")),
            when(info.get("created_at")),
        )
        for info in jobs
    ]
    widths = [max([len(header), *(len(row[i]) for row in rows)]) for i, header in enumerate(headers)]
    room = max(MIN_ERROR_WIDTH, width - sum(widths) - 2 * len(widths))  # 2: the padding between two columns
    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in headers:
        table.add_column(header, no_wrap=True, justify="right" if header == "progress" else "left")
    table.add_column("error", no_wrap=True)
    for row, info in zip(rows, jobs, strict=True):
        table.add_row(*(Text(cell) for cell in (*row, snippet(info.get("error"), room))))
    return table


def compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def job_details(info: Mapping[str, Any]) -> Table:
    """Every field of a ``JobInfo`` but the log, one per line (parameters and result as JSON)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    rows = [
        ("job_id", str(info["job_id"])),
        ("job_type", kind(info)),
        ("status", str(info["status"])),
        ("progress", percent(info.get("progress"))),
        ("created_at", str(info.get("created_at") or "")),
        ("started_at", str(info.get("started_at") or "")),
        ("completed_at", str(info.get("completed_at") or "")),
        ("webhook_url", str(info.get("webhook_url") or "")),
        ("parameters", compact(info.get("parameters"))),
        ("result", "" if info.get("result") is None else compact(info["result"])),
        ("error", str(info.get("error") or "")),
    ]
    for field, value in rows:
        grid.add_row(field, Text(value))
    return grid


def new_lines(seen: Sequence[str], logs: Sequence[str]) -> list[str]:
    """The lines of ``logs`` after those already ``seen``: the server keeps the last 1,000 lines only, so once the
    log is full its oldest lines drop off the front, and what is new is what follows the longest overlap."""
    if len(logs) >= len(seen) and list(logs[: len(seen)]) == list(seen):
        return list(logs[len(seen) :])
    for overlap in range(min(len(seen), len(logs)), 0, -1):
        if list(seen[-overlap:]) == list(logs[:overlap]):
            return list(logs[overlap:])
    return list(logs)  # no overlap: more lines arrived between two polls than the server keeps


def _label(info: Mapping[str, Any]) -> str:
    return f"{short_id(str(info['job_id']))} {kind(info)} {info['status']}"


def watch(
    api: JobsApi,
    job_id: str,
    console: Console,
    interval: float = MIN_INTERVAL,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Follow a job until it finishes: a progress bar, and each new log line above it as it arrives.

    0 when it completed, 1 when it failed or was cancelled (the error on stderr), 130 on Ctrl-C, which stops the
    watching only. Polls at most every ``MIN_INTERVAL`` seconds and stops polling once the job is finished.
    """
    interval = max(interval, MIN_INTERVAL)
    info = api.get(job_id)
    seen: list[str] = []
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(_label(info), total=100)
            while True:
                logs = list(info.get("logs") or [])
                for line in new_lines(seen, logs):
                    bar.console.print(line, markup=False, highlight=False)
                seen = logs
                bar.update(task, completed=float(info.get("progress") or 0), description=_label(info))
                if info["status"] in FINISHED:
                    break
                sleep(interval)
                info = api.get(job_id)
    except KeyboardInterrupt:
        status = info.get("status", "running")
        print(
            f"tessera: stopped watching; job {info.get('job_id', job_id)} is still {status} on the server and keeps "
            f"going (`tessera jobs cancel {info.get('job_id', job_id)}` stops it)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return outcome(info, console)


def outcome(info: Mapping[str, Any], console: Console) -> int:
    """Say how a finished job ended; the exit code of ``watch``."""
    if info["status"] == "completed":
        result = info.get("result")
        console.print(f"job {info['job_id']} completed", markup=False, highlight=False)
        if result is not None:
            console.print(f"result: {compact(result)}", markup=False, highlight=False)
        return EXIT_OK
    error = info.get("error")
    print(f"tessera: job {info['job_id']} {info['status']}" + (f": {error}" if error else ""), file=sys.stderr)
    return EXIT_FAILED


def _interval(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the interval is a number of seconds above 0, not {text}")
    return value


def _limit(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"the limit is a number of jobs from 1, not {text}")
    return value


def configure(jobs: argparse.ArgumentParser) -> None:
    """Add the ``list``, ``show``, ``watch`` and ``cancel`` actions to the ``tessera jobs`` parser."""
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--url", help=f"the server (default {DEFAULT_URL}; TESSERA_URL)")
    server.add_argument("--api-key", help="an API key, sent as a Bearer token (better: TESSERA_API_KEY)")
    actions = jobs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[server], help="the jobs, newest first")
    listing.add_argument("--status", help="only jobs with this status (pending, running, completed, failed, cancelled)")
    listing.add_argument("--type", dest="job_type", help="only jobs of this type (table_recompute, custom ...)")
    listing.add_argument("--limit", type=_limit, help="at most this many jobs (the server's default: 50)")
    listing.add_argument("--json", action="store_true", help="print the JobInfo list as JSON")
    show = actions.add_parser("show", parents=[server], help="every field of a job, and its log")
    show.add_argument("job_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print the JobInfo as JSON")
    follow = actions.add_parser("watch", parents=[server], help="a live progress bar and log until the job ends")
    follow.add_argument("job_id", metavar="ID")
    follow.add_argument(
        "--interval", type=_interval, default=MIN_INTERVAL, help="seconds between polls (default and minimum 0.5)"
    )
    cancel = actions.add_parser("cancel", parents=[server], help="cancel a pending or running job")
    cancel.add_argument("job_id", metavar="ID")


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Carry out a parsed ``tessera jobs`` command; the exit code."""
    env = os.environ if env is None else env
    url = args.url or env.get("TESSERA_URL") or DEFAULT_URL
    api_key = args.api_key or env.get("TESSERA_API_KEY") or None
    console = Console(highlight=False)
    try:
        with JobsApi(url, api_key) as api:
            if args.action == "list":
                jobs = api.list(args.status, args.job_type, args.limit)
                if args.json:
                    print(json.dumps(jobs, indent=2, ensure_ascii=False))
                elif jobs:
                    console.print(jobs_table(jobs, console.width))
                else:
                    console.print("no jobs")
                return EXIT_OK
            if args.action == "show":
                info = api.get(args.job_id)
                if args.json:
                    print(json.dumps(info, indent=2, ensure_ascii=False))
                    return EXIT_OK
                console.print(job_details(info))
                logs = list(info.get("logs") or [])
                console.print(f"log ({len(logs)} lines)" if logs else "log: empty", style="bold")
                for line in logs:
                    console.print(line, markup=False)
                return EXIT_OK
            if args.action == "watch":
                return watch(api, args.job_id, console, interval=args.interval)
            print(str(api.cancel(args.job_id).get("message")))
            return EXIT_OK
    except CliError as exc:
        print(f"tessera: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
