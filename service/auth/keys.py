"""API keys: drawn, hashed, checked, created, rotated and revoked.

A key is ``pxt_live_<64 hex digits>`` (a key with any write, create or delete action) or ``pxt_read_<...>`` (read
only): 32 bytes from ``secrets``, in the format of the original Pixeltable server, whose clients check the prefix.
Its first 16 characters are its ``key_prefix`` (unique; shown, and usable to revoke it).

Only ``HMAC-SHA256(secret, key)`` is stored, the secret being 32 random bytes in the data directory
(``auth.secret``, mode 0600, shared by every server process on that directory). A slow password hash (bcrypt,
argon2) protects low-entropy secrets that an attacker can guess; a key of 256 random bits cannot be guessed, so a
keyed hash is enough, and it can be looked up by value on every request. The key is still never compared in
variable time to anything secret: the lookup is by its keyed hash, which reveals nothing of the key, and the
stored hash is compared to the computed one with ``hmac.compare_digest``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from starlette.datastructures import Headers

from engine.errors import InvalidRequest, NotFound
from engine.storage.api_keys import ApiKeyStore, KeyRecord
from service.auth import permissions as perms
from service.auth.models import ApiKeyInfo
from service.auth.permissions import Permission, Principal
from service.errors import Unauthorized

SECRET_FILE = "auth.secret"
PREFIX_LENGTH = 16
MAX_KEY_LENGTH = 256  # longer values in a key header are refused before anything is hashed
_RANDOM_BYTES = 32


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"

    def __init__(self, key: str, by: str = "id") -> None:
        super().__init__(f"API key with {by} '{key}' not found", key_id=key if by == "id" else None)


class InvalidKeyRequest(InvalidRequest):
    code = "invalid_api_key_request"


def presented_key(headers: Headers) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, if any (a Bearer token wins)."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        raise Unauthorized("Authorization header must be 'Bearer <API key>'", reason="malformed")
    return headers.get("x-api-key") or None


def valid_admin_key(key: str) -> bool:
    """Whether a configured administrator key is usable: 16 to 256 printable ASCII characters, no spaces."""
    return 16 <= len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable() and " " not in key


def load_secret(root: str | Path) -> bytes:
    """The data directory's hashing secret, made on first use. Written to a temporary file and linked into place,
    so concurrent first starts agree on one secret and nobody reads a half-written one."""
    path = Path(root) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{SECRET_FILE}.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    secret = path.read_bytes()
    if len(secret) < 32:
        raise RuntimeError(f"{path} is damaged (shorter than 32 bytes); remove it to make a new one (keys then stop)")
    return secret


def iso_time(t: dt.datetime) -> str:
    """A time as the API shows it: ISO-8601 UTC to the millisecond, with ``Z``."""
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class ApiKeys:
    """The key operations of one data directory (``store``), under its secret; ``now`` is the clock (tests)."""

    def __init__(self, store: ApiKeyStore, secret: bytes, now: Callable[[], dt.datetime] | None = None) -> None:
        self.store = store
        self._secret = secret
        self._now = now or (lambda: dt.datetime.now(dt.UTC))

    def hash(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    # -- authentication ----------------------------------------------------------------------------------------
    def authenticate(self, key: str) -> Principal:
        """The principal of a presented key; Unauthorized saying why not (unknown, revoked, rotated, expired)."""
        if len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
            raise Unauthorized("Malformed API key", reason="malformed")
        digest = self.hash(key)
        record = self.store.by_hash(digest)
        if record is None or not hmac.compare_digest(record.key_hash, digest):
            raise Unauthorized("Invalid API key", reason="unknown")
        if record.revoked:
            if record.replaced_by:
                raise Unauthorized("API key has been rotated; use the key that replaced it", reason="rotated")
            raise Unauthorized("API key has been revoked", reason="revoked")
        if record.expires_at is not None and _parse(record.expires_at) <= self._now():
            raise Unauthorized(f"API key expired at {record.expires_at}", reason="expired")
        return Principal(record.id, record.name, perms.from_json(record.permissions))

    # -- life cycle ----------------------------------------------------------------------------------------------
    def create(
        self,
        name: str,
        permissions: Sequence[Permission],
        expires_at: dt.datetime | None = None,
    ) -> tuple[str, KeyRecord]:
        """A new key and its record (the key itself is returned once and never stored)."""
        now = self._now()
        if expires_at is not None:
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=dt.UTC)
            if expires_at <= now:
                raise InvalidKeyRequest(
                    f"expires_at {iso_time(expires_at)} is not in the future (now {iso_time(now)})", field="expires_at"
                )
        template = KeyRecord(
            id=str(uuid.uuid4()),
            name=name,
            key_prefix="",
            key_hash="",
            permissions=perms.to_json(permissions),
            created_at=iso_time(now),
            expires_at=None if expires_at is None else iso_time(expires_at),
        )
        return self._store_new(template, perms.writes(permissions), self.store.insert)

    def _store_new(
        self, template: KeyRecord, live: bool, store: Callable[[KeyRecord], bool | None]
    ) -> tuple[str, KeyRecord]:
        for _ in range(8):  # a prefix collision (28 random bits in 16 characters) is rare; draw again
            key = f"pxt_{'live' if live else 'read'}_{secrets.token_hex(_RANDOM_BYTES)}"
            record = replace(template, key_prefix=key[:PREFIX_LENGTH], key_hash=self.hash(key))
            stored = store(record)
            if stored is None:
                raise InvalidKeyRequest("API key has been revoked or rotated already; it cannot be rotated")
            if stored:
                return key, record
        raise RuntimeError("could not draw an API key with an unused prefix")

    def rotate(self, key_id: str) -> tuple[str, KeyRecord]:
        """Revoke ``key_id`` and make a key in its place: a new id, the same permissions and expiry, the name
        ``"<name> (rotated)"``, in one catalog transaction."""
        old = self.get(key_id)
        template = replace(
            old,
            id=str(uuid.uuid4()),
            name=f"{old.name} (rotated)"[:200],
            created_at=iso_time(self._now()),
            last_used=None,
            revoked=False,
            replaced_by=None,
            source=None,
        )
        live = perms.writes(perms.from_json(old.permissions))
        return self._store_new(template, live, lambda new: self.store.rotate(old.id, new))

    def revoke(self, key_id: str | None = None, key_prefix: str | None = None, caller: str | None = None) -> KeyRecord:
        """Revoke a key named by id or prefix; ``caller`` (the key making the call) may not revoke itself."""
        if (key_id is None) == (key_prefix is None):
            raise InvalidKeyRequest("Give exactly one of key_id and key_prefix", field="key_id")
        record = self.get(key_id) if key_id is not None else self._by_prefix(key_prefix or "")
        if record.id == caller:
            raise InvalidKeyRequest(
                "An API key cannot revoke itself: revoke it with another key (or without a key in open mode), "
                "or rotate it",
                field="key_id" if key_id is not None else "key_prefix",
            )
        self.store.revoke(record.id, iso_time(self._now()))
        return replace(record, revoked=True)

    def use_config_key(self, key: str) -> KeyRecord:
        """Make ``key`` (``--admin-key`` / ``TESSERA_ADMIN_KEY``) an administrator key; keys configured before
        with another value stop working."""
        if not valid_admin_key(key):
            raise ValueError("the administrator key must be 16 to 256 printable ASCII characters")
        record = KeyRecord(
            id=str(uuid.uuid4()),
            name="administrator (from configuration)",
            key_prefix=key[:PREFIX_LENGTH],
            key_hash=self.hash(key),
            permissions=perms.to_json(perms.ADMINISTRATOR),
            created_at=iso_time(self._now()),
            source="config",
        )
        return self.store.use_config_key(record)

    def first_admin_key(self) -> str | None:
        """A new administrator key if the data directory has no key at all (the first start in required mode)."""
        if self.store.has_keys():
            return None
        key, _ = self.create("administrator (first start)", perms.ADMINISTRATOR)
        return key

    # -- reading -------------------------------------------------------------------------------------------------
    def get(self, key_id: str) -> KeyRecord:
        record = self.store.get(key_id)
        if record is None:
            raise ApiKeyNotFound(key_id)
        return record

    def _by_prefix(self, prefix: str) -> KeyRecord:
        record = self.store.by_prefix(prefix)
        if record is None:
            raise ApiKeyNotFound(prefix, by="prefix")
        return record

    def all(self) -> list[KeyRecord]:
        return self.store.all()


def info(record: KeyRecord) -> ApiKeyInfo:
    return {
        "id": record.id,
        "name": record.name,
        "key_prefix": record.key_prefix,
        "permissions": [p.info() for p in perms.from_json(record.permissions)],
        "created_at": record.created_at,
        "last_used": record.last_used,
        "expires_at": record.expires_at,
        "revoked": record.revoked,
    }
