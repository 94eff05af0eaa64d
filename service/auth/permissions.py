"""What a key may do: permissions ``{resource, actions, constraints}`` and the principal a request acts as.

A permission grants its actions on its resource (``tables``: schemas, computed columns, UDFs; ``data``: rows;
``media``: files), on every table or only on ``constraints.table_names``. A permission on ``admin`` grants its
actions on every resource, and the administration of keys, webhooks and other keys' jobs: an administrator is
a key with ``admin`` and all four actions. Constraints name tables, not owners: a key limited to
``["products"]`` may create a table only if it is called ``products``, so a key for a table that does not exist
yet is made by naming it.

Pure data and checks; the route table that says which permission each endpoint needs is ``service.auth.policy``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from service.auth.models import ACTIONS, PermissionInfo, PermissionSpec
from service.errors import Forbidden

WRITING = frozenset({"write", "create", "delete"})


@dataclass(frozen=True)
class Permission:
    resource: str
    actions: frozenset[str]
    table_names: frozenset[str] | None = None  # None: every table

    def covers(self, resource: str, action: str, table: str | None) -> bool:
        """Whether this grants ``action`` on ``resource`` (on ``table``; ``None``: not about one table, which a
        permission limited to some tables does not cover)."""
        if self.resource not in (resource, "admin") or action not in self.actions:
            return False
        return self.table_names is None or (table is not None and table in self.table_names)

    def info(self) -> PermissionInfo:
        actions = [a for a in ACTIONS if a in self.actions]
        constraints = None if self.table_names is None else {"table_names": sorted(self.table_names)}
        return {"resource": self.resource, "actions": actions, "constraints": constraints}  # type: ignore[typeddict-item]


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a key (``key_id``), or the anonymous local administrator of open mode."""

    key_id: str | None
    name: str
    permissions: tuple[Permission, ...]

    @property
    def anonymous(self) -> bool:
        return self.key_id is None

    def allows(self, resource: str, action: str, table: str | None = None) -> bool:
        return any(p.covers(resource, action, table) for p in self.permissions)

    def require(self, resource: str, action: str, table: str | None = None) -> None:
        """Return if allowed, else Forbidden naming what is missing."""
        if not self.allows(resource, action, table):
            raise Forbidden(resource, action, table)

    def readable_tables(self, names: Iterable[str]) -> list[str]:
        """The tables of ``names`` this principal may see (``tables`` read on them)."""
        return [n for n in names if self.allows("tables", "read", n)]

    def reads_some_table(self) -> bool:
        return any(p.resource in ("tables", "admin") and "read" in p.actions for p in self.permissions)


ADMINISTRATOR = (Permission("admin", frozenset(ACTIONS)),)
ANONYMOUS = Principal(None, "local administrator (open mode, no key)", ADMINISTRATOR)


def from_specs(specs: Sequence[PermissionSpec]) -> tuple[Permission, ...]:
    return tuple(
        Permission(
            s.resource,
            frozenset(s.actions),
            None if s.constraints is None else frozenset(s.constraints.table_names),
        )
        for s in specs
    )


def to_json(permissions: Sequence[Permission]) -> str:
    return orjson.dumps([p.info() for p in permissions]).decode()


def from_json(text: str) -> tuple[Permission, ...]:
    items: list[dict[str, Any]] = orjson.loads(text)
    return tuple(
        Permission(
            item["resource"],
            frozenset(item["actions"]),
            None if item.get("constraints") is None else frozenset(item["constraints"]["table_names"]),
        )
        for item in items
    )


def writes(permissions: Sequence[Permission]) -> bool:
    """Whether a key with these permissions is a ``pxt_live_`` key (any write, create or delete action)."""
    return any(p.actions & WRITING for p in permissions)
