"""The contract's job types, and how a job finds its handler among the plugin registry's job types.

A contract type other than ``custom`` is served by the registered job type of the same name (the built-ins in
``plugins/jobs.py``; import, export and media processing come with their issues); a ``custom`` job by the one its
``parameters.type`` names, which may be any name that is not a contract type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from engine.errors import JobParameterError
from engine.registry import JobType

JOB_TYPES: Final = ("data_import", "data_export", "batch_operation", "media_processing", "table_recompute", "custom")
# The contract types whose handlers arrive with later work, and what brings them.
_LATER: Final = {"data_import": "import and export", "data_export": "import and export", "media_processing": "media"}


class MissingHandler(Exception):
    """No handler is installed for a job's type: the job fails with this message."""


def custom_types(types: Mapping[str, JobType]) -> list[str]:
    """The registered names a ``custom`` job's ``parameters.type`` may take."""
    return sorted(name for name in types if name not in JOB_TYPES)


def handler_name(job_type: str, parameters: Any) -> str | None:
    """The registry name serving a job: its type, or for ``custom`` its ``parameters.type`` (None if absent)."""
    if job_type != "custom":
        return job_type
    kind = parameters.get("type") if isinstance(parameters, Mapping) else None
    return kind if isinstance(kind, str) else None


def find_handler(types: Mapping[str, JobType], job_type: str, parameters: Any) -> JobType:
    """The handler of a job; ``JobParameterError`` for a ``custom`` job that names no registered type,
    ``MissingHandler`` for a contract type whose handler is not installed."""
    name = handler_name(job_type, parameters)
    if job_type == "custom":
        registered = ", ".join(custom_types(types)) or "none"
        if name is None:
            raise JobParameterError(
                "type", f"is required for a custom job: the job type to run (registered: {registered})"
            )
        if name in JOB_TYPES or name not in types:
            raise JobParameterError("type", f"names no registered job type: {name!r} (registered: {registered})")
        return types[name]
    handler = types.get(job_type)
    if handler is None:
        later = _LATER.get(job_type)
        why = f": it comes with {later} support, which is not built yet" if later else ""
        raise MissingHandler(f"the handler for job type '{job_type}' is missing{why}; the job cannot run")
    return handler


def retry_safe(types: Mapping[str, JobType], job_type: str, parameters: Any) -> bool:
    """Whether a run of this job that a crash interrupted may run again (False when unknown)."""
    try:
        return bool(find_handler(types, job_type, parameters).retry_safe(parameters))
    except Exception:
        return False
