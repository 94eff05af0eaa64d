"""Query-string parameters, read strictly: each given at most once, integers as plain digits within their range,
and a parameter the endpoint does not take refused (400 ``invalid_parameter`` naming it)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import QueryParams

from service.errors import InvalidParameter


def refuse_unknown(params: QueryParams, known: Sequence[str], hint: str = "") -> None:
    unknown = sorted(set(params.keys()) - set(known))
    if unknown:
        raise InvalidParameter(unknown[0], f"unknown; expected {', '.join(known)}{hint}")


def one(params: QueryParams, name: str) -> str | None:
    values = params.getlist(name)
    if len(values) > 1:
        raise InvalidParameter(name, "given more than once")
    return values[0] if values else None


def integer(params: QueryParams, name: str, default: int, maximum: int | None = None, minimum: int = 0) -> int:
    raw = one(params, name)
    if raw is None:
        return default
    top = f" to {maximum}" if maximum is not None else ""
    expected = f"must be an integer from {minimum}{top}, not {raw!r}"
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidParameter(name, expected)
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        raise InvalidParameter(name, expected)
    return value


def names(params: QueryParams, name: str) -> list[str] | None:
    """A comma-separated list (``select=a,b``), possibly given several times."""
    values = params.getlist(name)
    if not values:
        return None
    items = [item.strip() for value in values for item in value.split(",")]
    if not all(items):
        raise InvalidParameter(name, "expected a comma-separated list of column names")
    return items
