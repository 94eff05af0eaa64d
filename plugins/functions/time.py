"""Dates (``t`` a timestamp or a date, in UTC; a date is its midnight): ``year month day hour minute second weekday``
give ints; ``weekday`` counts from Monday = 0, like ``datetime.weekday()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pyarrow.compute as pc

from engine.expr import args
from engine.expr.args import TEMPORAL, ArgumentError
from engine.expr.core import Compiled, Function, apply, convert
from engine.registry import hookimpl


def _part(kernel: Callable[..., pc.Expression], time_of_day: bool = False) -> Function:
    def function(*a: Compiled) -> Compiled:
        args.count(a, 1, 1)
        t = a[0]
        if t.type not in TEMPORAL:
            raise ArgumentError(1, f"must be a timestamp or date, got {t.type}")
        if t.type == "date" and time_of_day:  # Arrow reads no time of day from a date: make it midnight
            t = convert(t, "timestamp")
        return apply(kernel, "int", t)

    return function


@hookimpl
def tessera_functions() -> Mapping[str, Function]:
    return {
        "year": _part(pc.year),
        "month": _part(pc.month),
        "day": _part(pc.day),
        "hour": _part(pc.hour, time_of_day=True),
        "minute": _part(pc.minute, time_of_day=True),
        "second": _part(pc.second, time_of_day=True),
        "weekday": _part(pc.day_of_week),
    }
