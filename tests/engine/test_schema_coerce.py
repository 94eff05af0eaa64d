"""Schemas, value coercion and where compilation: pure functions, no Ray."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from engine.errors import ColumnNotFound, InvalidName, InvalidOperator, InvalidRequest, InvalidType, SchemaMismatch
from engine.expr.where import compile_where, key_values, parse_where
from engine.model.coerce import coerce_value, conform_table, rows_to_table, table_to_rows
from engine.model.schema import ROW_ID, Column, build_schema

SCHEMA = build_schema(
    "t",
    {
        "id": "int",
        "price": "float",
        "name": "string",
        "ok": "bool",
        "meta": "json",
        "at": "timestamp",
        "day": "date",
        "pic": "image",
        "must": {"type": "string", "nullable": False},
    },
    "id",
)


def _loc(exc: SchemaMismatch) -> list[tuple]:
    return [e.loc for e in exc.errors]


class TestBuildSchema:
    def test_key_columns_are_not_nullable(self) -> None:
        assert SCHEMA.column("id").nullable is False
        assert SCHEMA.column("price").nullable is True
        assert SCHEMA.column("must").nullable is False

    @pytest.mark.parametrize("bad", ["1abc", "a-b", "", "a b", "x" * 64, "_hidden"])
    def test_invalid_names(self, bad: str) -> None:
        with pytest.raises(InvalidName):
            build_schema(bad, {"a": "int"}, None)
        with pytest.raises(InvalidName):
            build_schema("ok", {bad: "int"}, None)

    def test_unknown_type_names_the_column(self) -> None:
        with pytest.raises(InvalidType) as exc:
            build_schema("t", {"a": "integer"}, None)
        assert exc.value.fields["column"] == "a"

    def test_key_must_exist_and_have_a_key_type(self) -> None:
        with pytest.raises(ColumnNotFound):
            build_schema("t", {"a": "int"}, "b")
        with pytest.raises(InvalidType):
            build_schema("t", {"a": "float"}, "a")

    def test_no_key_means_engine_row_id(self) -> None:
        schema = build_schema("t", {"a": "int"}, None)
        assert schema.key == (ROW_ID,)
        assert schema.arrow_schema().names == ["a", ROW_ID]

    def test_columns_unique_ignoring_case(self) -> None:
        with pytest.raises(InvalidName):
            build_schema("t", {"a": "int", "A": "int"}, None)

    def test_round_trips_through_dict(self) -> None:
        from engine.model.schema import TableSchema

        assert TableSchema.from_dict("t", SCHEMA.to_dict()) == SCHEMA


class TestRowsToTable:
    def test_all_types(self) -> None:
        table = rows_to_table(
            [
                {
                    "id": 1,
                    "price": 2,
                    "name": "a",
                    "ok": True,
                    "meta": {"x": [1, 2]},
                    "at": "2024-01-02T03:04:05Z",
                    "day": "2024-01-02",
                    "pic": "http://x/y.png",
                    "must": "m",
                }
            ],
            SCHEMA,
        )
        row = table.to_pylist()[0]
        assert row["price"] == 2.0 and row["meta"] == '{"x":[1,2]}'
        assert row["at"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        assert row["day"] == dt.date(2024, 1, 2)

    def test_naive_and_offset_timestamps_become_utc(self) -> None:
        rows = [
            {"id": 1, "must": "m", "at": "2024-01-02T03:04:05"},
            {"id": 2, "must": "m", "at": "2024-01-02T05:04:05+02:00"},
        ]
        at = rows_to_table(rows, SCHEMA)["at"].to_pylist()
        assert at[0] == at[1] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

    @pytest.mark.parametrize(
        ("column", "value"),
        [
            ("id", "1"),
            ("id", 2.5),
            ("id", True),
            ("id", 2**70),
            ("price", "1.0"),
            ("price", float("nan")),
            ("price", float("inf")),
            ("name", 5),
            ("ok", 1),
            ("at", "yesterday"),
            ("day", "2024-13-01"),
            ("meta", {"a": set()}),
        ],
    )
    def test_wrong_values_name_row_and_column(self, column: str, value: object) -> None:
        with pytest.raises(SchemaMismatch) as exc:
            rows_to_table([{"id": 1, "must": "m"}, {"id": 2, "must": "m", column: value}], SCHEMA)
        assert ("rows", 1, column) in _loc(exc.value)

    @pytest.mark.parametrize(
        ("column", "value"),
        [("at", "0001-01-01T00:00:00+14:00"), ("at", "9999-12-31T23:59:59-14:00"), ("day", "0000-01-01")],
    )
    def test_values_outside_years_1_to_9999_are_refused(self, column: str, value: str) -> None:
        # Arrow could store them, but they could never be read back as Python values.
        with pytest.raises(SchemaMismatch) as exc:
            rows_to_table([{"id": 1, "must": "m", column: value}], SCHEMA)
        assert exc.value.errors[0].loc == ("rows", 0, column)

    def test_integral_float_is_accepted_for_int(self) -> None:
        assert rows_to_table([{"id": 3.0, "must": "m"}], SCHEMA)["id"].to_pylist() == [3]

    def test_null_in_non_null_column(self) -> None:
        with pytest.raises(SchemaMismatch) as exc:
            rows_to_table([{"id": 1}], SCHEMA)
        assert exc.value.errors[0].type == "null_not_allowed" and exc.value.errors[0].loc == ("rows", 0, "must")

    def test_unknown_column(self) -> None:
        with pytest.raises(ColumnNotFound) as exc:
            rows_to_table([{"id": 1, "must": "m", "nope": 1}], SCHEMA)
        assert exc.value.fields["column"] == "nope"

    def test_deep_json_is_refused(self) -> None:
        deep: object = 1
        for _ in range(100):
            deep = [deep]
        with pytest.raises(SchemaMismatch) as exc:
            rows_to_table([{"id": 1, "must": "m", "meta": deep}], SCHEMA)
        assert "nested deeper" in exc.value.errors[0].msg

    def test_not_a_list_of_objects(self) -> None:
        with pytest.raises(SchemaMismatch):
            rows_to_table([1, 2], SCHEMA)

    def test_json_cells_encode_as_fragments(self) -> None:
        import orjson

        table = rows_to_table([{"id": 1, "must": "m", "meta": {"a": 1}}], SCHEMA)
        assert orjson.dumps(table_to_rows(table.select(["id", "meta"]), SCHEMA)) == b'[{"id":1,"meta":{"a":1}}]'


class TestConformTable:
    def test_casts_compatible_types_and_fills_missing(self) -> None:
        table = pa.table({"id": pa.array([1, 2], pa.int32()), "must": ["a", "b"]})
        out = conform_table(table, SCHEMA)
        assert out.schema == SCHEMA.arrow_schema()
        assert out["price"].null_count == 2

    def test_lossy_cast_is_refused(self) -> None:
        with pytest.raises(SchemaMismatch):
            conform_table(pa.table({"id": [1.5], "must": ["a"]}), SCHEMA)

    def test_null_key_is_refused(self) -> None:
        with pytest.raises(SchemaMismatch):
            conform_table(pa.table({"id": pa.array([None, 1], pa.int64()), "must": ["a", "b"]}), SCHEMA)

    def test_out_of_range_date_is_refused(self) -> None:
        with pytest.raises(SchemaMismatch):
            conform_table(pa.table({"id": [1], "must": ["a"], "day": pa.array([-800_000], pa.date32())}), SCHEMA)

    def test_nan_is_refused(self) -> None:
        with pytest.raises(SchemaMismatch):
            conform_table(pa.table({"id": [1], "must": ["a"], "price": [float("nan")]}), SCHEMA)


class TestWhere:
    def _eval(self, where: object) -> list[int]:
        table = rows_to_table(
            [
                {"id": 1, "must": "m", "name": "apple", "price": 1.0},
                {"id": 2, "must": "m", "name": "banana", "price": None},
                {"id": 3, "must": "m", "name": None, "price": 3.0},
            ],
            SCHEMA,
        )
        expr = compile_where(parse_where(where), SCHEMA)
        return table.filter(expr)["id"].to_pylist() if expr is not None else table["id"].to_pylist()

    @pytest.mark.parametrize(
        ("where", "ids"),
        [
            ({"id": 2}, [2]),
            ([{"column": "price", "operator": ">", "value": 1}], [3]),
            ([{"column": "price", "operator": ">=", "value": 1}], [1, 3]),
            ([{"column": "price", "operator": "!=", "value": 1}], [3]),
            ([{"column": "name", "operator": "like", "value": "%an%"}], [2]),
            ([{"column": "id", "operator": "in", "value": [1, 3]}], [1, 3]),
            ([{"column": "id", "operator": "not_in", "value": [1, 3]}], [2]),
            ([{"column": "name", "operator": "is_null"}], [3]),
            ([{"column": "name", "operator": "is_not_null"}], [1, 2]),
            ({"column": "id", "operator": "<", "value": 3}, [1, 2]),
            (
                [
                    {"column": "id", "operator": "<=", "value": 2},
                    {"column": "name", "operator": "=", "value": "banana"},
                ],
                [2],
            ),
            (None, [1, 2, 3]),
        ],
    )
    def test_operators(self, where: object, ids: list[int]) -> None:
        assert self._eval(where) == ids

    def test_unknown_operator(self) -> None:
        with pytest.raises(InvalidOperator) as exc:
            self._eval([{"column": "id", "operator": "~", "value": 1}])
        assert exc.value.fields["field"] == "where[0].operator"

    def test_in_needs_a_list(self) -> None:
        with pytest.raises(InvalidRequest) as exc:
            self._eval([{"column": "id", "operator": "in", "value": 1}])
        assert exc.value.fields["field"] == "where[0].value"

    def test_unknown_column(self) -> None:
        with pytest.raises(ColumnNotFound):
            self._eval({"nope": 1})

    def test_value_of_wrong_type(self) -> None:
        with pytest.raises(SchemaMismatch):
            self._eval([{"column": "id", "operator": "=", "value": "x"}])

    def test_like_on_a_number_is_refused(self) -> None:
        with pytest.raises(InvalidOperator):
            self._eval([{"column": "id", "operator": "like", "value": "1%"}])

    def test_values_are_bound_not_pasted(self) -> None:
        assert self._eval({"name": "x' OR '1'='1"}) == []

    def test_key_values_route_point_operations(self) -> None:
        assert key_values(parse_where({"id": 5, "name": "a"}), SCHEMA) == [5]
        assert key_values(parse_where([{"column": "id", "operator": "in", "value": [1, 2]}]), SCHEMA) == [1, 2]
        assert key_values(parse_where({"name": "a"}), SCHEMA) is None

    def test_coerce_value_for_dates(self) -> None:
        assert coerce_value(Column("d", "date"), "2024-02-03", ("x",)).as_py() == dt.date(2024, 2, 3)
