"""Queries that filter and order on aggregate and window values, on real Ray and Lance: the same answers as a
brute-force Python reference over a few thousand rows on several shards, and bounds on what the shards send."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import engine
from engine.errors import OffsetTooDeep, QueryTooLarge
from engine.logical.plan import ReadPlan, ReadResult, ShardSpec

N = 3000
CATS = ["c0", "c1", "c2", "c3", "c4", None, "z"]  # "z": every price null, so its SUM is null
COLUMNS = {"id": "int", "cat": "string", "flag": "bool", "qty": "int", "price": "float", "payload": "string"}
Row = dict[str, Any]


def data() -> list[Row]:
    out = []
    for i in range(N):
        cat = CATS[i % len(CATS)]
        price = None if cat == "z" or i % 13 == 0 else float((i * 31) % 97) / 4
        out.append(
            {"id": i, "cat": cat, "flag": i % 3 == 0, "qty": (i * 17) % 21, "price": price, "payload": "x" * 100}
        )
    return out


def reference(rows: list[Row]) -> list[Row]:
    """Every row with its aggregate and window values, computed the obvious way."""
    sums: dict[Any, float | None] = {}
    pairs: dict[tuple[Any, Any], int] = {}
    for r in rows:
        if r["price"] is not None:
            sums[r["cat"]] = (sums.get(r["cat"]) or 0.0) + r["price"]
        else:
            sums.setdefault(r["cat"], None)
        pairs[(r["cat"], r["flag"])] = pairs.get((r["cat"], r["flag"]), 0) + 1
    by_price = sorted(rows, key=lambda r: (r["price"] is None, r["price"] or 0.0, r["id"]))
    position = {r["id"]: k + 1 for k, r in enumerate(by_price)}
    out = []
    for r in rows:
        smaller = sum(1 for o in rows if o["cat"] == r["cat"] and o["qty"] < r["qty"])
        out.append(
            {
                **r,
                "cat_sum": sums[r["cat"]],
                "pair_n": pairs[(r["cat"], r["flag"])],
                "n": len(rows),
                "rank": smaller + 1,
                "rn": position[r["id"]],
            }
        )
    return out


@pytest.fixture(scope="module")
def table(db: engine.Database) -> Iterator[tuple[engine.Table, list[Row]]]:
    name = "derived_queries"
    if name in db.list_tables():
        db.drop_table(name)
    t = db.create_table(name, COLUMNS, primary_key="id", shards=4)
    rows = data()
    t.insert(rows)
    t.add_computed_column("cat_sum", "aggregate", "SUM(price)", parameters={"group_by": ["cat"]})
    t.add_computed_column("pair_n", "aggregate", "COUNT(*)", parameters={"group_by": ["cat", "flag"]})
    t.add_computed_column("n", "aggregate", "COUNT(*)")
    t.add_computed_column(
        "rank", "window", "RANK()", parameters={"partition_by": ["cat"], "order_by": [{"column": "qty"}]}
    )
    t.add_computed_column("rn", "window", "ROW_NUMBER()", parameters={"order_by": [{"column": "price"}]})
    yield t, reference(rows)
    db.drop_table(name)


OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a is not None and a == b,
    "!=": lambda a, b: a is not None and a != b,
    ">": lambda a, b: a is not None and a > b,
    ">=": lambda a, b: a is not None and a >= b,
    "<": lambda a, b: a is not None and a < b,
    "<=": lambda a, b: a is not None and a <= b,
    "in": lambda a, b: a is not None and a in b,
    "is_null": lambda a, _: a is None,
    "is_not_null": lambda a, _: a is not None,
}


def matches(row: Row, where: list[Row]) -> bool:
    return all(OPS[c["operator"]](row[c["column"]], c.get("value")) for c in where)


def sort_key(order: list[tuple[str, str]]) -> Callable[[Row], tuple[Any, ...]]:
    """Nulls last in either direction, as the engine sorts."""

    def key(row: Row) -> tuple[Any, ...]:
        out: list[Any] = []
        for column, way in order:
            v = row[column]
            out.append(v is None)
            out.append(0 if v is None else (-v if way == "desc" else v))
        return tuple(out)

    return key


def expected(
    ref: list[Row], where: list[Row], order: list[tuple[str, str]], limit: int | None, offset: int
) -> list[Row]:
    hits = sorted((r for r in ref if matches(r, where)), key=sort_key(order or [("id", "asc")]))
    return hits[offset:] if limit is None else hits[offset : offset + limit]


def same(got: list[Row], want: list[Row], columns: list[str]) -> None:
    assert [g["id"] for g in got] == [w["id"] for w in want]
    for g, w in zip(got, want, strict=True):
        for c in columns:
            a, b = g[c], w[c]
            assert (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b)), (
                g["id"],
                c,
                a,
                b,
            )


SUM_OVER = 4760.0  # three groups' sums are above it (c1, c2, c3)
CASES: list[tuple[list[Row], list[tuple[str, str]], int | None, int]] = [
    ([{"column": "cat_sum", "operator": ">", "value": SUM_OVER}], [], 50, 10),
    ([{"column": "cat_sum", "operator": "is_null"}], [("id", "desc")], 30, 0),
    (
        [{"column": "rank", "operator": "=", "value": 1}, {"column": "price", "operator": ">", "value": 5.0}],
        [],
        None,
        0,
    ),
    (
        [
            {"column": "id", "operator": "in", "value": list(range(0, 3000, 7))},
            {"column": "rank", "operator": "<=", "value": 3},
        ],
        [],
        None,
        0,
    ),
    ([{"column": "rn", "operator": "in", "value": [1, 2, 3, 500, 2999, 3000]}], [], 10, 0),
    ([{"column": "pair_n", "operator": ">=", "value": 143}], [("qty", "desc"), ("id", "asc")], 100, 20),
    ([{"column": "n", "operator": "=", "value": N}, {"column": "cat", "operator": "=", "value": "c1"}], [], 40, 5),
    ([{"column": "n", "operator": "!=", "value": N}], [], 10, 0),
    ([], [("cat_sum", "desc"), ("id", "asc")], 20, 30),
    ([], [("rn", "asc")], 15, 2990),
    (
        [{"column": "cat_sum", "operator": ">", "value": SUM_OVER}],
        [("rank", "asc"), ("qty", "desc"), ("id", "asc")],
        25,
        100,
    ),
    ([{"column": "flag", "operator": "=", "value": True}], [("pair_n", "asc"), ("rn", "desc")], 35, 0),
    ([{"column": "cat", "operator": "in", "value": ["c2", "c3"]}], [("rn", "desc")], None, 0),
]


@pytest.mark.parametrize(("where", "order", "limit", "offset"), CASES)
def test_queries_on_derived_values_match_a_brute_force_reference(
    table: tuple[engine.Table, list[Row]],
    where: list[Row],
    order: list[tuple[str, str]],
    limit: int | None,
    offset: int,
) -> None:
    t, ref = table
    result = t.query(
        select=["id", "cat", "qty", "cat_sum", "pair_n", "rank", "rn"],
        where=where,
        order_by=[f"{c}:{d}" for c, d in order] or None,
        limit=limit,
        offset=offset,
    )
    want = expected(ref, where, order, limit, offset)
    got = result.rows.to_pylist()
    if not order and limit is None:  # no order asked for: any order
        got.sort(key=lambda r: r["id"])
    same(got, want, ["cat_sum", "pair_n", "rank", "rn"])
    assert result.total_count == sum(matches(r, where) for r in ref)
    assert result.rows.column_names == ["id", "cat", "qty", "cat_sum", "pair_n", "rank", "rn"]
    assert t.count(where or None) == result.total_count


def test_every_column_comes_with_an_order_on_derived_values(table: tuple[engine.Table, list[Row]]) -> None:
    t, ref = table
    got = t.query(order_by=["cat_sum:asc", "id:desc"], limit=5).rows
    assert got.column_names == ["id", "cat", "flag", "qty", "price", "payload", "cat_sum", "pair_n", "n", "rank", "rn"]
    same(got.to_pylist(), expected(ref, [], [("cat_sum", "asc"), ("id", "desc")], 5, 0), ["cat_sum", "rank", "rn"])


Reads = list[tuple[ReadPlan, list[ReadResult]]]


@pytest.fixture
def reads(db: engine.Database, monkeypatch: pytest.MonkeyPatch) -> Reads:
    """What each coordinator read asked for and what every shard sent back (the real reads, recorded)."""
    seen: Reads = []
    real = db.coordinator.read

    def recorded(specs: list[ShardSpec], versions: list[int], plan: ReadPlan) -> list[ReadResult]:
        results = real(specs, versions, plan)
        seen.append((plan, results))
        return results

    monkeypatch.setattr(db.coordinator, "read", recorded)
    return seen


@pytest.mark.parametrize(
    ("where", "order", "limit", "offset"),
    [
        ([{"column": "cat_sum", "operator": ">", "value": SUM_OVER}], [], 20, 10),
        ([{"column": "rank", "operator": "<=", "value": 2}], [("qty", "desc"), ("id", "asc")], 10, 0),
        ([], [("cat_sum", "desc"), ("id", "asc")], 20, 30),
        ([{"column": "pair_n", "operator": ">", "value": 100}], [("rank", "asc"), ("rn", "asc")], 10, 50),
    ],
)
def test_no_shard_sends_more_whole_rows_than_the_page_needs(
    table: tuple[engine.Table, list[Row]],
    reads: Reads,
    where: list[Row],
    order: list[tuple[str, str]],
    limit: int,
    offset: int,
) -> None:
    """Before, a filter or an order on these columns read every row of the table, every column, into this process."""
    t, _ = table
    t.query(where=where, order_by=[f"{c}:{d}" for c, d in order] or None, limit=limit, offset=offset)
    whole = [
        r.table for _, results in reads for r in results if r.table is not None and "payload" in r.table.column_names
    ]
    assert whole, "the page's rows come from the shards"
    assert all(rows.num_rows <= offset + limit for rows in whole)
    narrow = [r.table for plan, results in reads for r in results if r.table is not None and plan.partial is None]
    assert all(rows.num_columns <= 4 for rows in narrow if "payload" not in rows.column_names)  # key + sort columns


def test_ordering_by_derived_values_is_refused_past_the_row_cap(
    db: engine.Database, table: tuple[engine.Table, list[Row]], monkeypatch: pytest.MonkeyPatch
) -> None:
    t, ref = table
    monkeypatch.setattr(db, "settings", db.settings.with_(max_query_rows=500))
    with pytest.raises(QueryTooLarge, match=r"would sort 3000 matching rows, more than the 500 allowed") as caught:
        t.query(order_by=["cat_sum:desc"], limit=10)
    assert caught.value.fields == {"field": "order_by", "rows": 3000, "max_query_rows": 500}
    narrowed = [{"column": "cat", "operator": "=", "value": "c1"}]  # 429 rows: under the cap
    got = t.query(where=narrowed, order_by=["rank:desc", "id"], limit=10).rows.to_pylist()
    same(got, expected(ref, narrowed, [("rank", "desc"), ("id", "asc")], 10, 0), ["rank"])
    nothing = [{"column": "rn", "operator": ">", "value": 5000}]
    assert t.query(where=nothing, order_by=["cat_sum"], limit=3).rows.num_rows == 0  # no row: nothing to sort
    assert t.query(where=[{"column": "cat_sum", "operator": ">", "value": SUM_OVER}], limit=3).total_count > 500


def test_a_deep_page_is_refused_and_one_past_the_end_is_empty(
    db: engine.Database, table: tuple[engine.Table, list[Row]], monkeypatch: pytest.MonkeyPatch
) -> None:
    t, _ = table
    monkeypatch.setattr(db, "settings", db.settings.with_(max_query_window=100))
    with pytest.raises(OffsetTooDeep, match="past the query window of 100 rows") as caught:
        t.query(limit=10, offset=95)
    assert caught.value.fields["field"] == "offset" and "the last id of the previous page" in caught.value.message
    with pytest.raises(OffsetTooDeep):
        t.query(where={"flag": True}, order_by=["qty"], limit=10, offset=91)
    past = t.query(limit=10, offset=5000)
    assert past.rows.num_rows == 0 and past.total_count == N and not past.has_more
    filtered = t.query(where=[{"column": "id", "operator": "<", "value": 50}], limit=10, offset=95)
    assert filtered.rows.num_rows == 0 and filtered.total_count == 50
    assert t.query(limit=10, offset=90).rows["id"].to_pylist() == list(range(90, 100))
    assert t.query(limit=500).rows.num_rows == 500  # the first page may be as long as asked
