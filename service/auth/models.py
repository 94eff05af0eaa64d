"""Request bodies and response shapes of the ``/auth`` endpoints (``../shared/API.md``, Auth and permissions).

A permission is ``{resource, actions, constraints}``: an unknown resource or action, or constraints of another
shape than ``{"table_names": [...]}``, is a 422 that names the field.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from typing_extensions import TypedDict

Resource = Literal["tables", "data", "media", "admin"]
Action = Literal["read", "write", "create", "delete"]
RESOURCES: tuple[Resource, ...] = ("tables", "data", "media", "admin")
ACTIONS: tuple[Action, ...] = ("read", "write", "create", "delete")
MAX_PERMISSIONS = 64
MAX_TABLE_NAMES = 1000

TableName = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Constraints(_Body):
    table_names: Annotated[list[TableName], Field(min_length=1, max_length=MAX_TABLE_NAMES)]


class PermissionSpec(_Body):
    resource: Resource
    actions: Annotated[list[Action], Field(min_length=1, max_length=len(ACTIONS))]
    constraints: Constraints | None = None


class CreateApiKey(_Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    permissions: Annotated[list[PermissionSpec], Field(min_length=1, max_length=MAX_PERMISSIONS)]
    # ISO-8601 text is what JSON carries, so this one field is not strict; a time without an offset is UTC.
    expires_at: Annotated[dt.datetime | None, Field(strict=False)] = None


class RevokeApiKey(_Body):
    key_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    key_prefix: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class NoBody(_Body):
    """A call that takes no body (rotation); ``{}`` is accepted too."""


# -- responses -----------------------------------------------------------------------------------------------------
class ConstraintsInfo(TypedDict):
    table_names: list[str]


class PermissionInfo(TypedDict):
    resource: Resource
    actions: list[Action]
    constraints: ConstraintsInfo | None


class ApiKeyInfo(TypedDict):
    id: str
    name: str
    key_prefix: str
    permissions: list[PermissionInfo]
    created_at: str
    last_used: str | None
    expires_at: str | None
    revoked: bool


class ApiKeyCreated(TypedDict):
    api_key: str  # shown once: only its keyed hash is stored
    key_info: ApiKeyInfo


class ApiKeyUsage(TypedDict):
    key_id: str
    endpoint_counts: dict[str, int]  # by route template, "GET /api/v1/tables/{table}/rows/{row_id}"
    status_code_counts: dict[str, int]
    total_requests: int
    avg_response_time_ms: float
    period_start: str
    period_end: str


class Verified(TypedDict):
    valid: bool
    key_id: str | None  # None: the anonymous local administrator of open mode
    name: str
    permissions: list[PermissionInfo]
