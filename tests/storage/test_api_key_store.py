"""The API key store in the catalog's file, and the key operations over it (no Ray, no server)."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from engine.storage.api_keys import ApiKeyStore, UsageCount
from engine.storage.catalog import SqliteCatalog
from service.auth import permissions as perms
from service.auth.keys import ApiKeys, load_secret
from service.auth.usage import UsageRecorder
from service.errors import Unauthorized


@pytest.fixture
def keys(tmp_path: Path) -> ApiKeys:
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    return ApiKeys(ApiKeyStore(catalog.file), load_secret(tmp_path))


def test_the_secret_is_made_once_and_private(tmp_path: Path) -> None:
    secrets = []
    threads = [threading.Thread(target=lambda: secrets.append(load_secret(tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(secrets)) == 1 and len(secrets[0]) == 32
    assert (tmp_path / "auth.secret").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["auth.secret"]  # no temporary file left


def test_only_the_keyed_hash_is_stored(keys: ApiKeys, tmp_path: Path) -> None:
    key, record = keys.create("k", perms.ADMINISTRATOR)
    assert record.key_hash == keys.hash(key) and key not in record.key_hash
    other = ApiKeys(keys.store, b"another secret of thirty-two bytes!")
    with pytest.raises(Unauthorized):  # the same key under another data directory's secret is unknown
        other.authenticate(key)
    assert keys.authenticate(key).key_id == record.id


def test_first_admin_key_only_on_an_empty_directory(keys: ApiKeys) -> None:
    first = keys.first_admin_key()
    assert first is not None and keys.authenticate(first).allows("admin", "delete")
    assert keys.first_admin_key() is None
    keys.revoke(keys.authenticate(first).key_id)
    assert keys.first_admin_key() is None  # every key revoked is not a first start: nobody gets a fresh one


def test_rotation_is_one_transaction(keys: ApiKeys) -> None:
    key, record = keys.create("k", perms.from_json('[{"resource": "data", "actions": ["read"]}]'))
    new, new_record = keys.rotate(record.id)
    assert keys.store.get(record.id).replaced_by == new_record.id  # type: ignore[union-attr]
    assert keys.authenticate(new).key_id == new_record.id
    with pytest.raises(Unauthorized, match="rotated"):
        keys.authenticate(key)
    assert new.startswith("pxt_read_")


def test_expiry_is_checked_on_every_use(tmp_path: Path) -> None:
    now = [dt.datetime(2030, 1, 1, tzinfo=dt.UTC)]
    keys = ApiKeys(ApiKeyStore(SqliteCatalog(tmp_path / "c.db").file), load_secret(tmp_path), now=lambda: now[0])
    key, _ = keys.create("k", perms.ADMINISTRATOR, expires_at=dt.datetime(2030, 1, 2))  # naive: UTC
    assert keys.authenticate(key).key_id
    now[0] = dt.datetime(2030, 1, 2, tzinfo=dt.UTC)
    with pytest.raises(Unauthorized, match=r"expired at 2030-01-02T00:00:00\.000Z"):
        keys.authenticate(key)


def test_usage_is_counted_once_across_flushes(keys: ApiKeys) -> None:
    clock = [600.0]
    usage = UsageRecorder(keys.store, flush_seconds=0, clock=lambda: clock[0])
    usage.record("k1", "GET /a", 200, 2.0)
    usage.record("k1", "GET /a", 200, 4.0)
    assert usage.usage("k1", 0) == [UsageCount("k1", 10, "GET /a", 200, 2, 6.0)]  # in memory, not yet written
    usage.flush()
    usage.record("k1", "GET /a", 200, 1.0)
    usage.flush()
    assert keys.store.usage("k1", 0) == [UsageCount("k1", 10, "GET /a", 200, 3, 7.0)]
    assert usage.usage("k1", 11) == []  # a later window
    usage.close()
