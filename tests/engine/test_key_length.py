"""String keys are capped at MAX_KEY_BYTES (UTF-8) everywhere a key value is hashed: a longer one is a 400 that
names the column and the row, checked before anything is hashed or written."""

from __future__ import annotations

import pyarrow as pa
import pytest

import engine
from engine.errors import KeyTooLong
from engine.model.coerce import MAX_KEY_BYTES

LONG = "k" * (MAX_KEY_BYTES + 1)
# Bytes, not characters, count: 512 two-byte characters are exactly the limit, one more ASCII byte is past it.
AT_LIMIT = "é" * (MAX_KEY_BYTES // 2)


@pytest.fixture
def keyed(db: engine.Database, name: str) -> engine.Table:
    table = db.create_table(name, {"id": "string", "note": "string"}, primary_key="id", shards=2)
    table.insert([{"id": "a", "note": "first"}, {"id": "b", "note": "x" * 10_000}])  # long non-key values are fine
    return table


def _refused(err: pytest.ExceptionInfo[KeyTooLong], field: str, row: int | None) -> None:
    assert err.value.code == "key_too_long"
    assert err.value.fields["field"] == field and err.value.fields["row"] == row
    assert err.value.fields["column"] == "id" and err.value.fields["limit"] == MAX_KEY_BYTES
    assert field in err.value.message and "'id'" in err.value.message


def test_a_key_at_the_limit_is_stored(keyed: engine.Table) -> None:
    assert len(AT_LIMIT.encode()) == MAX_KEY_BYTES
    keyed.insert({"id": AT_LIMIT, "note": "edge"})
    assert keyed.get(AT_LIMIT)["note"] == "edge"
    assert keyed.update_row(AT_LIMIT, {"note": "edge2"})["note"] == "edge2"
    keyed.delete_row(AT_LIMIT)


@pytest.mark.parametrize("write", ["insert", "upsert"])
def test_writing_a_long_key_is_refused_and_writes_nothing(keyed: engine.Table, write: str) -> None:
    rows = [{"id": "c", "note": "ok"}, {"id": AT_LIMIT + "x", "note": "too long"}]
    with pytest.raises(KeyTooLong) as err:
        getattr(keyed, write)(rows)
    _refused(err, "rows[1].id", 1)
    assert err.value.fields["bytes"] == MAX_KEY_BYTES + 1
    assert keyed.count() == 2 and sorted(r["id"] for r in keyed.to_pylist()) == ["a", "b"]


def test_an_arrow_table_with_a_long_key_is_refused(keyed: engine.Table) -> None:
    rows = pa.table({"id": ["c", "d", LONG], "note": ["1", "2", "3"]})
    with pytest.raises(KeyTooLong) as err:
        keyed.insert(rows)
    _refused(err, "rows[2].id", 2)
    assert keyed.count() == 2


@pytest.mark.parametrize("call", ["get", "update_row", "delete_row"])
def test_a_long_row_id_is_refused(keyed: engine.Table, call: str) -> None:
    args = (LONG, {"note": "n"}) if call == "update_row" else (LONG,)
    with pytest.raises(KeyTooLong) as err:
        getattr(keyed, call)(*args)
    _refused(err, "row_id", None)


def test_a_filter_that_pins_the_key_to_a_long_value_is_refused(keyed: engine.Table) -> None:
    with pytest.raises(KeyTooLong) as err:
        keyed.update({"id": LONG}, {"note": "n"})
    _refused(err, "where[0].value", None)
    with pytest.raises(KeyTooLong) as err:
        keyed.delete(
            [
                {"column": "note", "operator": "=", "value": "x"},
                {"column": "id", "operator": "in", "value": ["a", LONG]},
            ]
        )
    _refused(err, "where[1].value[1]", 1)
    with pytest.raises(KeyTooLong):
        keyed.query(where={"id": LONG})
    assert keyed.count() == 2 and keyed.get("a")["note"] == "first"
    # a filter that does not pin the key hashes nothing: any value may be compared
    assert keyed.count([{"column": "id", "operator": "!=", "value": LONG}]) == 2


def test_a_batch_with_a_long_key_fails_that_operation(db: engine.Database, keyed: engine.Table) -> None:
    result = db.batch(
        [
            {"operation": "insert", "table": keyed.name, "data": {"id": "c", "note": "ok"}},
            {"operation": "update", "table": keyed.name, "where": {"id": LONG}, "set": {"note": "n"}},
        ]
    )
    assert not result.committed and result.errors and result.errors[0].code == "key_too_long"
    assert result.errors[0].operation == 1 and "where[0].value" in result.errors[0].error
    assert keyed.count() == 2


def test_each_string_column_of_a_composite_key_is_capped(db: engine.Database, name: str) -> None:
    table = db.create_table(name, {"region": "string", "n": "int"}, primary_key=["n", "region"])
    with pytest.raises(KeyTooLong) as err:
        table.insert([{"region": "eu", "n": 1}, {"region": LONG, "n": 2}])
    assert err.value.fields["field"] == "rows[1].region" and err.value.fields["column"] == "region"
    assert table.count() == 0
