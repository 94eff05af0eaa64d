"""Aggregates and windows (engine.model.columns) against brute-force Python references."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidComputedColumn
from engine.expr.aggregates import attach_groups, merge_partials, partial_aggregate, window_values
from engine.model.columns import Call, Frame, WindowSpec, parse_call, window_spec

ROWS = st.lists(st.tuples(st.integers(0, 2), st.one_of(st.none(), st.integers(-5, 5)), st.integers(0, 4)), max_size=25)
BOUND = st.one_of(st.none(), st.integers(0, 3))


def frame_of(rows: list[tuple[int, int | None, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(len(rows))),
            "g": [r[0] for r in rows],
            "_arg": [r[1] for r in rows],
            "o": [r[2] for r in rows],
        },
        schema={"id": pl.Int64, "g": pl.Int64, "_arg": pl.Int64, "o": pl.Int64},
    )


def reference(rows: list[tuple[int, int | None, int]], function: str, p: int | None, q: int | None) -> dict[int, Any]:
    """The window computed the slow, obvious way: per partition, ordered by (o, id), frame rows i-p..i+q."""
    out: dict[int, Any] = {}
    for g in {r[0] for r in rows}:
        part = sorted((i for i, r in enumerate(rows) if r[0] == g), key=lambda i: (rows[i][2], i))
        for pos, i in enumerate(part):
            lo = 0 if p is None else max(pos - p, 0)
            hi = len(part) - 1 if q is None else min(pos + q, len(part) - 1)
            vals = [rows[part[k]][1] for k in range(lo, hi + 1) if rows[part[k]][1] is not None]
            if function == "COUNT":
                out[i] = len(vals)
            elif function == "ROW_NUMBER":
                out[i] = pos + 1
            elif function == "RANK":
                out[i] = 1 + sum(1 for k in part if rows[k][2] < rows[i][2])
            elif function == "DENSE_RANK":
                out[i] = len({rows[k][2] for k in part if rows[k][2] < rows[i][2]}) + 1
            elif function == "LAG":
                out[i] = rows[part[pos - 1]][1] if pos >= 1 else None
            elif function == "LEAD":
                out[i] = rows[part[pos + 1]][1] if pos + 1 < len(part) else None
            elif not vals:
                out[i] = None
            else:
                out[i] = {"SUM": sum, "MIN": min, "MAX": max, "AVG": lambda x: sum(x) / len(x)}[function](vals)
    return out


@settings(max_examples=60, deadline=None)
@given(ROWS, st.sampled_from(["SUM", "AVG", "MIN", "MAX", "COUNT"]), BOUND, BOUND)
def test_framed_windows_match_a_brute_force_reference(rows: list, function: str, p: int | None, q: int | None) -> None:
    spec = WindowSpec(Call(function, "v"), ("g",), (("o", False),), Frame(p, q))
    got = dict(window_values(frame_of(rows), spec, ["id"], "w").iter_rows())
    want = reference(rows, function, p, q)
    assert got.keys() == want.keys()
    for k, w in want.items():
        assert (got[k] is None and w is None) or math.isclose(got[k], w), (k, got[k], w)


@settings(max_examples=40, deadline=None)
@given(ROWS, st.sampled_from(["ROW_NUMBER", "RANK", "DENSE_RANK", "LAG", "LEAD"]))
def test_ranking_and_offsets_match_a_brute_force_reference(rows: list, function: str) -> None:
    spec = WindowSpec(Call(function, "v"), ("g",), (("o", False),), Frame(None, 0))
    got = dict(window_values(frame_of(rows), spec, ["id"], "w").iter_rows())
    assert got == reference(rows, function, None, 0)


@settings(max_examples=40, deadline=None)
@given(ROWS, st.sampled_from(["SUM", "AVG", "MIN", "MAX", "COUNT", "COUNT_DISTINCT"]), st.integers(1, 3))
def test_aggregate_partials_merge_to_the_whole_table_value(rows: list, function: str, shards: int) -> None:
    frame = frame_of(rows)
    parts = [partial_aggregate(frame.gather_every(shards, k), function, ["g"]) for k in range(shards)]
    values = merge_partials(parts, function, ["g"])
    got = attach_groups(frame, values, ["g"], "a").to_list()
    for i, (g, _, _) in enumerate(rows):
        vals = [r[1] for r in rows if r[0] == g and r[1] is not None]
        want: Any = {
            "SUM": lambda x: sum(x) if x else None,
            "AVG": lambda x: sum(x) / len(x) if x else None,
            "MIN": lambda x: min(x) if x else None,
            "MAX": lambda x: max(x) if x else None,
            "COUNT": len,
            "COUNT_DISTINCT": lambda x: len(set(x)),
        }[function](vals)
        assert (got[i] is None and want is None) or math.isclose(got[i], want), (i, got[i], want)


def test_parse_calls() -> None:
    assert parse_call("COUNT(*)", "aggregate") == Call("COUNT", None)
    assert parse_call("sum(price * 2)", "aggregate") == Call("SUM", "price * 2")
    assert parse_call("LAG(price, 3)", "window") == Call("LAG", "price", 3)
    with pytest.raises(InvalidComputedColumn, match="not a known aggregate function"):
        parse_call("ROW_NUMBER()", "aggregate")
    with pytest.raises(InvalidComputedColumn, match="offset"):
        parse_call("LAG(price, -1)", "window")
    with pytest.raises(InvalidComputedColumn, match=r"needs parameters\.order_by"):
        window_spec(Call("RANK", None), {})
    with pytest.raises(InvalidComputedColumn, match=r"frame\.preceding"):
        window_spec(Call("SUM", "v"), {"order_by": ["o"], "frame": {"preceding": -1}})
