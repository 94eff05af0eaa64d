"""JSON in and out with orjson: the response class and the request-body parser.

Bodies are parsed with ``orjson.loads`` (strict JSON: ``NaN`` / ``Infinity`` literals and documents nested deeper
than orjson's limit of 1024 levels are malformed), then validated by a pydantic model. Row values are not
validated here: the engine checks them against the table's schema and names each bad field (``rows.3.age``).
"""

from __future__ import annotations

import json as stdlib_json
import re
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from engine.errors import MalformedJson

M = TypeVar("M", bound=BaseModel)

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY
_PARSE_IN_THREAD = 256 * 1024  # bodies larger than this are parsed off the event loop
# orjson reads integers beyond the 64-bit range as floats, which loses digits (-9223372036854775809 would become
# -2**63). Documents that may hold an integer literal of 19+ digits are parsed again with the stdlib, which keeps
# integers exact, so the engine sees the real value and reports it as out of range. The scan must cost little next
# to orjson (a regex with look-arounds costs more than the parse): one translate maps every digit to "0" and every
# byte that may precede a number to "|", then one find looks for "|" and 19 digits.
_MASK = bytes.maketrans(b"0123456789[,:- \n\t\r", b"0000000000||||||||")
_NEEDLE = b"|" + b"0" * 19
_MORE_DIGITS = re.compile(rb"0*")


def _default(value: Any) -> Any:
    # Error bodies can carry arbitrary values a client sent (keys, names); never fail to report an error.
    return str(value)


class JSONResponse(Response):
    """A JSON response rendered by orjson: datetimes as ISO-8601 with ``Z``, numpy values, pre-encoded fragments."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default, option=_OPTIONS)


def _has_long_integer(body: bytes) -> bool:
    """Whether ``body`` may hold an integer literal of 19+ digits (a false positive only costs a slower parse).

    An integer starts the document or follows one of ``[ , : -`` or whitespace, never a ``.`` (a float's fraction),
    and is not followed by ``.``, ``e`` or ``E`` (a float's mantissa).
    """
    masked = body.translate(_MASK)
    if masked.startswith(_NEEDLE[1:]):
        return True
    at = masked.find(_NEEDLE)
    while at != -1:
        match = _MORE_DIGITS.match(masked, at + len(_NEEDLE))
        end = match.end() if match else at + len(_NEEDLE)
        if masked[end : end + 1] not in (b".", b"e", b"E"):
            return True
        at = masked.find(_NEEDLE, end)
    return False


def loads(body: bytes) -> Any:
    """Parse a JSON document; raises ``MalformedJson`` (400) with orjson's position on failure."""
    if not body.strip():
        raise MalformedJson("Request body is empty; expected a JSON document")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc).lower():
            raise MalformedJson(f"Malformed JSON: nested too deeply ({exc})") from None
        raise MalformedJson(f"Malformed JSON: {exc}") from None
    if _has_long_integer(body):
        try:
            value = stdlib_json.loads(body)
        except RecursionError:
            raise MalformedJson("Malformed JSON: nested too deeply") from None
    return value


def _decode(body: bytes, model: type[M]) -> M:
    return model.model_validate(loads(body))


async def parse_body(request: Request, model: type[M]) -> M:
    """Read, parse and validate the body as ``model`` (malformed -> 400, pydantic ``ValidationError`` -> 422)."""
    body = await request.body()
    if len(body) > _PARSE_IN_THREAD:
        return await run_in_threadpool(_decode, body, model)
    return _decode(body, model)


async def parse_optional_body(request: Request, model: type[M]) -> M | None:
    """Like ``parse_body``, but an empty body (or ``null``) is ``None``."""
    body = await request.body()
    if not body.strip() or body.strip() == b"null":
        return None
    return await parse_body(request, model)
