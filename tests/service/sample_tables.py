"""Table definitions shared by the service tests."""

from __future__ import annotations

USERS_SCHEMA = {
    "columns": {
        "id": "int",
        "name": {"type": "string", "nullable": False},
        "age": "int",
        "score": "float",
        "active": "bool",
        "meta": "json",
        "seen": "timestamp",
    }
}
