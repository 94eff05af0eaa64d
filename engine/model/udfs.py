"""User-defined functions as data: a UDF's definition as its table's schema stores it."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

# The languages are not listed here: they are what the plugin registry provides (engine.registry).
TYPES: tuple[str, ...] = ("int", "float", "string", "bool", "json", "timestamp")
MAX_CODE = 64 * 1024
MAX_PARAMETERS = 32


# -- definitions ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameter:
    name: str
    type: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type}


@dataclass(frozen=True)
class Udf:
    """A registered UDF as stored in the table's schema. ``inline`` is the expression it compiles to, if any."""

    id: str
    name: str
    language: str
    code: str
    parameters: tuple[Parameter, ...]
    return_type: str
    description: str | None
    deterministic: bool
    created_at: str
    updated_at: str
    inline: str | None = None

    @functools.cached_property
    def key(self) -> str:
        """What a worker caches the compiled function under: changes with anything compiling depends on."""
        parts = (
            self.language,
            self.name,
            self.code,
            self.return_type,
            *(f"{p.name}:{p.type}" for p in self.parameters),
        )
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "code": self.code,
            "parameters": [p.to_dict() for p in self.parameters],
            "return_type": self.return_type,
            "description": self.description,
            "deterministic": self.deterministic,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "inline": self.inline,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Udf:
        return cls(
            d["id"],
            d["name"],
            d["language"],
            d["code"],
            tuple(Parameter(p["name"], p["type"]) for p in d["parameters"]),
            d["return_type"],
            d.get("description"),
            d["deterministic"],
            d["created_at"],
            d["updated_at"],
            d.get("inline"),
        )
