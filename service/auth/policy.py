"""The one table that says what every endpoint needs, and the check made before its handler runs.

Every route of the app has an entry here, keyed by method and path template (a test walks the app's routes and
fails on a missing one). The rules, for the keys that are presented (and for every request in required mode):

    tables   read: list tables (filtered to the readable ones), a table's info, computed columns, UDFs
             create: create a table, add a computed column, register a UDF;  write: replace a UDF
             delete: drop a table, a computed column, a UDF
    data     read: rows, queries, counts, executing a UDF;  write: insert, update, upsert, recompute
             delete: delete rows
    batch    every operation's table and action (insert/update/upsert: data write; delete: data delete), all
             checked before anything runs
    jobs     creating one (``POST /batch/jobs``, which carries the "jobs" rate limit) needs what the job will do,
             checked by the handler once the body is read: table_recompute and data_import data write on
             ``parameters.table_name``, data_export data read on it, batch_operation every operation's (as
             batch; parameters that are not a list of operations are left to the job, which fails naming them),
             media_processing media write, custom any valid key. Listing needs any valid key and shows the key's
             own jobs, or every key's with admin read. A job of another key (or of open mode's anonymous caller)
             needs admin read to be read, admin write to be cancelled and admin delete to be deleted; the
             handler checks it once the job is found, so an unknown id is 404 for everyone
    keys     admin (create / read / delete / write for create / list, get, usage / revoke / rotate); a key may
             read its own info and usage and rotate itself. In open mode key management is open to every caller:
             an anonymous caller is an administrator there anyway, and the original server's clients revoke keys
             with keys that are not administrators.
    public   health, readiness, /openapi.json and /docs need no key in any mode
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request

from service.auth.permissions import Principal
from service.errors import Forbidden

TableFrom = Literal["path", "body", "none"]
Kind = Literal["public", "authenticated", "permission", "keys", "operations", "list_tables", "create_job", "job"]


@dataclass(frozen=True)
class Rule:
    kind: Kind
    resource: str = ""
    action: str = ""
    table: TableFrom = "none"  # where the table the permission is about is named
    limit: str | None = None  # a specific rate limit of the endpoint: "batch", "jobs"
    self_service: bool = False  # key management a key may do on itself without admin

    @property
    def needs(self) -> str:
        """What the rule asks for, in a word (``data:read``), for the API document."""
        if self.kind == "public":
            return "nothing (public)"
        if self.kind == "authenticated":
            return "any valid key"
        if self.kind == "operations":
            return "data:write or data:delete on every operation's table"
        if self.kind == "create_job":
            return (
                "by job_type: data:write on parameters.table_name (table_recompute, data_import), data:read on it "
                "(data_export), each operation's data permission (batch_operation), media:write "
                "(media_processing), any valid key (custom)"
            )
        if self.kind == "job":
            return f"any valid key for its own jobs; admin:{self.action} for another key's"
        if self.kind == "keys":
            own = ", or the key itself" if self.self_service else ""
            return f"admin:{self.action}{own} (open mode: anyone)"
        return f"{self.resource}:{self.action}"


def _needs(resource: str, action: str, table: TableFrom = "path", limit: str | None = None) -> Rule:
    return Rule("permission", resource, action, table, limit)


def _keys(action: str, self_service: bool = False) -> Rule:
    return Rule("keys", "admin", action, self_service=self_service)


def _job(action: str) -> Rule:
    """A rule on existing jobs: ``action`` on ``admin`` is what another key's job needs."""
    return Rule("job", "admin", action)


PUBLIC = Rule("public")
T = "/tables/{table}"
RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/tables"): Rule("list_tables", "tables", "read"),
    ("POST", "/tables"): _needs("tables", "create", table="body"),
    ("GET", T): _needs("tables", "read"),
    ("DELETE", T): _needs("tables", "delete"),
    ("POST", f"{T}/query"): _needs("data", "read"),
    ("GET", f"{T}/rows/count"): _needs("data", "read"),
    ("POST", f"{T}/rows/batch"): _needs("data", "write"),
    ("GET", f"{T}/rows"): _needs("data", "read"),
    ("POST", f"{T}/rows"): _needs("data", "write"),
    ("PATCH", f"{T}/rows"): _needs("data", "write"),
    ("DELETE", f"{T}/rows"): _needs("data", "delete"),
    ("GET", T + "/rows/{row_id}"): _needs("data", "read"),
    ("PUT", T + "/rows/{row_id}"): _needs("data", "write"),
    ("DELETE", T + "/rows/{row_id}"): _needs("data", "delete"),
    ("GET", f"{T}/computed-columns"): _needs("tables", "read"),
    ("POST", f"{T}/computed-columns"): _needs("tables", "create"),
    ("GET", T + "/computed-columns/{column}"): _needs("tables", "read"),
    ("DELETE", T + "/computed-columns/{column}"): _needs("tables", "delete"),
    ("POST", T + "/computed-columns/{column}/recompute"): _needs("data", "write"),
    ("GET", f"{T}/udfs"): _needs("tables", "read"),
    ("POST", f"{T}/udfs"): _needs("tables", "create"),
    ("GET", T + "/udfs/{name}"): _needs("tables", "read"),
    ("PUT", T + "/udfs/{name}"): _needs("tables", "write"),
    ("DELETE", T + "/udfs/{name}"): _needs("tables", "delete"),
    ("POST", T + "/udfs/{name}/execute"): _needs("data", "read"),
    ("POST", "/batch/operations"): Rule("operations", limit="batch"),
    ("POST", "/batch/jobs"): Rule("create_job", limit="jobs"),
    ("GET", "/batch/jobs"): _job("read"),  # without admin read, the key's own jobs only
    ("GET", "/batch/jobs/{job_id}"): _job("read"),
    ("POST", "/batch/jobs/{job_id}/cancel"): _job("write"),
    ("DELETE", "/batch/jobs/{job_id}"): _job("delete"),
    ("POST", "/batch/import"): Rule("create_job", limit="jobs"),  # data:write on table_name, as a data_import job
    ("POST", "/batch/export"): Rule("create_job", limit="jobs"),  # data:read on table_name, as a data_export job
    ("GET", "/batch/exports/{job_id}/download"): _job("read"),
    ("POST", "/batch/stream/{table}"): _needs("data", "read"),
    ("POST", "/auth/api-keys"): _keys("create"),
    ("GET", "/auth/api-keys"): _keys("read"),
    ("GET", "/auth/api-keys/{key_id}"): _keys("read", self_service=True),
    ("POST", "/auth/api-keys/revoke"): _keys("delete"),
    ("POST", "/auth/api-keys/{key_id}/rotate"): _keys("write", self_service=True),
    ("GET", "/auth/api-keys/{key_id}/usage"): _keys("read", self_service=True),
    ("GET", "/auth/verify"): Rule("authenticated"),
}
OPERATION_ACTIONS = {"insert": "write", "update": "write", "upsert": "write", "delete": "delete"}
# What creating a job of each type needs (resource, action, whether it is about ``parameters.table_name``);
# batch_operation is checked per operation and custom needs only a valid key.
JOB_NEEDS: dict[str, tuple[str, str, bool]] = {
    "table_recompute": ("data", "write", True),
    "data_import": ("data", "write", True),
    "data_export": ("data", "read", True),
    "media_processing": ("media", "write", False),
}


def public_paths(prefixes: Sequence[str]) -> frozenset[str]:
    """The paths that need no key: the public rules' templates (none has a parameter) under each prefix."""
    return frozenset(prefix + t for (_, t), rule in RULES.items() if rule.kind == "public" for prefix in prefixes)


def rule_for(method: str, template: str) -> Rule:
    """The rule of a route (``HEAD`` is ``GET``); KeyError names a route the table lacks."""
    method = "GET" if method == "HEAD" else method
    try:
        return RULES[(method, template)]
    except KeyError:
        raise KeyError(f"no permission rule for {method} {template}: add it to service.auth.policy.RULES") from None


def authorize(principal: Principal, rule: Rule, request: Request, table: str | None, open_mode: bool) -> None:
    """Raise Forbidden unless ``principal`` may make this request (``table``: the table it is about, if any)."""
    if rule.kind in ("public", "authenticated", "operations", "create_job", "job"):
        # The handler checks these once it knows more: each operation or what the job does (from the body), or
        # whose the job is (from the catalog).
        return
    if rule.kind == "list_tables":
        if not principal.reads_some_table():
            principal.require("tables", "read")
        return
    if rule.kind == "keys":
        if open_mode or principal.allows("admin", rule.action):
            return
        if rule.self_service and principal.key_id is not None and request.path_params.get("key_id") == principal.key_id:
            return
        principal.require("admin", rule.action)
        return
    principal.require(rule.resource, rule.action, table)


def authorize_operations(principal: Principal, operations: list[dict[str, object]]) -> None:
    """Every operation of a batch is allowed, or Forbidden for the first one that is not (before any runs)."""
    for i, op in enumerate(operations):
        action = OPERATION_ACTIONS.get(str(op.get("operation")), "write")
        table = op.get("table")
        table = table if isinstance(table, str) else None
        if not principal.allows("data", action, table):
            raise Forbidden("data", action, table, why=f" (operation {i} of the batch); nothing was run")


def authorize_job(principal: Principal, job_type: str, parameters: Mapping[str, Any]) -> None:
    """Forbidden unless ``principal`` may create this job (``JOB_NEEDS``); nothing is queued when it may not. An
    unknown job type passes: the engine refuses it with the list of job types."""
    if job_type == "batch_operation":
        operations = parameters.get("operations")
        if isinstance(operations, list) and all(isinstance(op, dict) for op in operations):
            authorize_operations(principal, operations)
        return  # anything else is the job's to refuse, naming the parameter
    needs = JOB_NEEDS.get(job_type)
    if needs is None:
        return
    resource, action, about_table = needs
    table = parameters.get("table_name") if about_table else None
    principal.require(resource, action, table if isinstance(table, str) else None)


def sees_every_job(principal: Principal) -> bool:
    """Whether the principal lists every key's jobs (admin read), rather than its own."""
    return principal.allows("admin", "read")


def authorize_job_access(principal: Principal, rule: Rule, job_id: str, owner_key: str | None) -> None:
    """Forbidden unless the job is the principal's own, or the principal holds the rule's admin action."""
    if owner_key is not None and owner_key == principal.key_id:
        return
    if not principal.allows("admin", rule.action):
        raise Forbidden("admin", rule.action, why=f" (job {job_id} is another key's)")
