"""Aggregate and window values computed with Polars: per-shard partials, their merge, and windows over
gathered partitions."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from engine.model.columns import ARG, VALUE, Frame, WindowSpec


# -- computing aggregates: per-shard partials, merged once ------------------------------------------------------
def partial_aggregate(frame: pl.DataFrame, function: str, groups: Sequence[str]) -> pl.DataFrame:
    """One shard's partial: per group, what merging needs (``v`` holds the argument's values)."""
    v = pl.col(ARG)
    if function == "COUNT_DISTINCT":
        return frame.select([*groups, ARG]).unique()  # nulls kept: a group of only nulls still counts 0
    parts = {
        "SUM": [v.sum().alias("sum"), v.count().alias("n")],
        "AVG": [v.sum().alias("sum"), v.count().alias("n")],
        "MIN": [v.min().alias("min")],
        "MAX": [v.max().alias("max")],
        "COUNT": [v.count().alias("n")],
    }[function]
    if not groups:
        return frame.select(parts)
    return frame.group_by(list(groups)).agg(parts)


def merge_partials(partials: Sequence[pl.DataFrame], function: str, groups: Sequence[str]) -> pl.DataFrame:
    """Merge shard partials into one value per group (column ``value``)."""
    frames = [p for p in partials if p.height] or list(partials[:1])
    both = pl.concat(frames, how="vertical_relaxed")
    by = list(groups)
    if function == "COUNT_DISTINCT":
        merged = both.unique()
        value = pl.col(ARG).count().alias(VALUE)
        return merged.group_by(by).agg(value) if by else merged.select(value)
    exprs = {
        "SUM": [pl.when(pl.col("n").sum() > 0).then(pl.col("sum").sum()).otherwise(None).alias(VALUE)],
        "AVG": [
            pl.when(pl.col("n").sum() > 0).then(pl.col("sum").sum() / pl.col("n").sum()).otherwise(None).alias(VALUE)
        ],
        "MIN": [pl.col("min").min().alias(VALUE)],
        "MAX": [pl.col("max").max().alias(VALUE)],
        "COUNT": [pl.col("n").sum().alias(VALUE)],
    }[function]
    return both.group_by(by).agg(exprs) if by else both.select(exprs)


def attach_groups(rows: pl.DataFrame, values: pl.DataFrame, groups: Sequence[str], name: str) -> pl.Series:
    """Each row's group value, in row order (a group with no value, or a row of no group, gets null)."""
    if not groups:
        value = values[VALUE][0] if values.height else None
        return pl.Series(name, [value] * rows.height, dtype=values.schema.get(VALUE))
    keyed = rows.select(list(groups)).with_row_index("_row")
    joined = keyed.join(values, on=list(groups), how="left", nulls_equal=True).sort("_row")
    return joined[VALUE].alias(name)


# -- computing windows over whole partitions --------------------------------------------------------------------
def window_values(frame: pl.DataFrame, spec: WindowSpec, key: Sequence[str], name: str) -> pl.DataFrame:
    """The window's value per row of ``frame`` (all rows of the table): returns ``key`` columns and ``name``.

    ``frame`` holds the key, partition and order columns, and ``v`` (the argument's values) when there is one.
    """
    order = [c for c, _ in spec.order_by] + [k for k in key if k not in {c for c, _ in spec.order_by}]
    descending = [d for _, d in spec.order_by] + [False] * (len(order) - len(spec.order_by))
    part = list(spec.partition_by)
    # ``over`` keeps the frame's order within each partition, so sorting by the order columns is enough
    # (sorting by the partition columns too, often strings, cost most of a window's time)
    ordered = frame.sort(order, descending=descending, nulls_last=True)
    f = spec.call.function
    position = pl.int_range(pl.len(), dtype=pl.Int64)
    if f == "ROW_NUMBER":
        value = position + 1
    elif f in ("RANK", "DENSE_RANK"):
        ties = pl.struct([c for c, _ in spec.order_by]) if len(spec.order_by) > 1 else pl.col(spec.order_by[0][0])
        changed = (ties != ties.shift(1)).fill_null(True) | (position == 0)
        if f == "DENSE_RANK":
            value = changed.cast(pl.Int64).cum_sum()
        else:
            value = pl.when(changed).then(position + 1).otherwise(None).forward_fill()
    elif f == "LAG":
        value = pl.col(ARG).shift(spec.call.offset)
    elif f == "LEAD":
        value = pl.col(ARG).shift(-spec.call.offset)
    else:
        value = _framed(f, spec.frame)
    if part:
        value = value.over(part)
    return ordered.select([*key, value.alias(name)])


def _framed(function: str, frame: Frame) -> pl.Expr:
    """``function`` of ``v`` over the rows frame [i - preceding, i + following] of each row i of one (ordered)
    partition, clipped to the partition. Nulls are skipped; a frame without values gives null (COUNT: 0).

    SUM / AVG / COUNT use prefix sums (one pass whatever the frame); MIN / MAX use running and suffix extremes,
    and a rolling extreme for frames bounded on both sides.
    """
    v = pl.col(ARG)
    p, q = frame.preceding, frame.following
    i = pl.int_range(pl.len(), dtype=pl.Int64)
    last = pl.len().cast(pl.Int64) - 1
    hi = i * 0 + last if q is None else pl.min_horizontal(i + q, last)  # per row (gather needs a column)
    lo = None if p is None else i - p  # first row of the frame (may be before the partition)
    if function in ("SUM", "AVG", "COUNT"):
        count = _span(v.is_not_null().cast(pl.Int64).cum_sum(), hi, lo)
        if function == "COUNT":
            return count
        total = _span(v.fill_null(0).cum_sum(), hi, lo)
        return pl.when(count > 0).then(total if function == "SUM" else total / count).otherwise(None)
    # cum_min / cum_max leave nulls in place: carry the extreme so far over them
    running = (v.cum_min() if function == "MIN" else v.cum_max()).forward_fill()
    backwards = v.reverse()
    suffix = (backwards.cum_min() if function == "MIN" else backwards.cum_max()).forward_fill().reverse()
    if lo is None:  # from the start of the partition
        return running.gather(hi)
    start = pl.max_horizontal(lo, 0)
    if q is None:  # to the end of the partition
        return suffix.gather(start)
    size = p + q + 1  # type: ignore[operator]
    rolled = v.rolling_min(size, min_samples=1) if function == "MIN" else v.rolling_max(size, min_samples=1)
    return pl.when(i + q <= last).then(rolled.gather(hi)).otherwise(suffix.gather(start))


def _span(prefix: pl.Expr, hi: pl.Expr, lo: pl.Expr | None) -> pl.Expr:
    """prefix[hi] - prefix[lo - 1]: the total of rows lo..hi from a prefix sum (lo None or < 1: from row 0)."""
    upper = prefix.gather(hi)
    if lo is None:
        return upper
    return upper - pl.when(lo >= 1).then(prefix.gather(pl.max_horizontal(lo - 1, 0))).otherwise(0)
