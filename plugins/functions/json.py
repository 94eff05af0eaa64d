"""JSON: ``json_get(doc, path)`` is the value at ``path`` in the JSON text ``doc`` (``"a.b[0]"``: keys joined by dots,
``[n]`` 0-based indexes into arrays; keys hold any character but ``. [ ] ' \\``), as a string: strings unquoted,
numbers and booleans as JSON writes them, objects and arrays as compact JSON text, so ``json_get`` applies again. It
is null where the value is null or absent (no such key, an index past the end, a key into a value that is not an
object), as in SQL/JSON's lax mode. A ``doc`` that is not JSON text fails the cell. ``path`` may be computed per row:
a constant one is checked when compiled, one that is not a path fails the cell.

Polars computes it (Arrow has no JSON path kernel), in a step over whole columns (``JsonGet``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from engine.expr import args
from engine.expr.args import TEXT, ArgumentError
from engine.expr.core import Compiled, Function, StepCall, StepResult
from engine.registry import hookimpl

_NO_TEXT = pa.scalar(None, pa.string())
_KEY = r"[^.\[\]'\\]+"
_PATH = rf"(?:{_KEY}|\[[0-9]+\])(?:\.{_KEY}|\[[0-9]+\])*"


def _json_path(path: str) -> str:
    """``a.b[0]`` as polars' JSONPath, ``$['a']['b'][0]``: brackets, so keys may hold spaces and dashes."""
    return "$" + re.sub(rf"(?:^|\.)({_KEY})", r"['\1']", path)


def _json_get(*a: Compiled) -> StepCall:
    args.count(a, 2, 2)
    doc = args.text(a, 0)
    path = args.text(a, 1)
    if not args.is_constant(path):
        return StepCall(JsonGet(None), "string", (doc, path))
    text = args.constant(a, 1, TEXT, "string")
    if not re.fullmatch(_PATH, text):
        raise ArgumentError(2, f"is not a JSON path like 'a.b[0]': {text!r}")
    return StepCall(JsonGet(_json_path(text)), "string", (doc,))


@dataclass(frozen=True)
class JsonGet:
    """The kernel of ``json_get``: the value at ``path`` (polars' JSONPath) in each JSON text; without ``path``, the
    second array holds each row's path as the user wrote it."""

    path: str | None

    def __call__(self, arrays: list[pa.Array]) -> StepResult:
        docs = arrays[0]
        try:
            if self.path is None:
                values, errors = self._per_row(docs, arrays[1])
            else:
                values, errors = _series(docs).str.json_path_match(self.path), pa.nulls(len(docs), pa.string())
            return StepResult(values.to_arrow().cast(pa.string()), self._invalid(docs, values, errors))
        except pl.exceptions.PolarsError as exc:  # a failure of the batch: evaluate() looks for the rows
            raise ValueError(f"json_get(): {exc}") from exc

    @staticmethod
    def _per_row(docs: pa.Array, paths: pa.Array) -> tuple[pl.Series, pa.Array]:
        valid = pc.match_substring_regex(paths, f"^{_PATH}$")
        converted = pc.replace_substring_regex(pc.if_else(valid, paths, _NO_TEXT), rf"(^|\.)({_KEY})", r"['\2']")
        frame = pl.DataFrame({"doc": _series(docs), "path": _series(pc.binary_join_element_wise("$", converted, ""))})
        values = frame.select(pl.col("doc").str.json_path_match(pl.col("path"))).to_series()
        return values, pc.if_else(valid, _NO_TEXT, pa.scalar("json_get(): not a JSON path like 'a.b[0]'"))

    @staticmethod
    def _invalid(docs: pa.Array, values: pl.Series, errors: pa.Array) -> pa.Array:
        """``errors``, and where the doc is not JSON text; polars gives null for those too, so only null values are
        looked at again."""
        unsure = pc.indices_nonzero(
            pc.and_kleene(pc.is_null(values.to_arrow()), pc.and_kleene(pc.is_valid(docs), pc.is_null(errors)))
        )
        if len(unsure) == 0:
            return errors
        texts = _series(docs.take(unsure))
        parsed = (texts.str.json_path_match("$").is_not_null() | (texts.str.strip_chars() == "null")).to_numpy()
        bad = np.zeros(len(docs), bool)
        bad[unsure.to_numpy()[~parsed]] = True
        return pc.if_else(pa.array(bad), pa.scalar("json_get(): invalid JSON text"), errors)


def _series(values: pa.Array) -> pl.Series:
    series = pl.from_arrow(values)
    assert isinstance(series, pl.Series)
    return series


@hookimpl
def tessera_functions() -> Mapping[str, Function]:
    return {"json_get": _json_get}
