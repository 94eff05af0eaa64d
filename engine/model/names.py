"""Names of tables, columns, UDFs and parameters: a letter, then letters, digits or ``_``."""

from __future__ import annotations

import re
from typing import Any

from engine.errors import InvalidName

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
MAX_NAME = 63


def check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > MAX_NAME:
        raise InvalidName(
            f"Invalid {what} name {name!r}: use a letter, then letters, digits or '_' (at most {MAX_NAME})",
            field=what,
            name=name if isinstance(name, str) else repr(name),
        )
    return name
