"""An import's ``validation_rules``: ``{column: {min, max, pattern, required, allowed, max_length}}``, checked
when the import is created (an unknown rule or column, a value of the wrong type, a pattern RE2 cannot run is
``InvalidRequest`` naming ``validation_rules.<column>.<rule>``) and evaluated on Arrow arrays after coercion.

Patterns run in RE2 (pyarrow's ``match_substring_regex``): linear time, so a pattern cannot hang an import;
backreferences and look-around, which RE2 does not have, are refused up front. A pattern matches anywhere in the
cell unless anchored (``^...$``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import ColumnNotFound, InvalidRequest, SchemaMismatch
from engine.model.coerce import coerce_value
from engine.model.schema import Column, TableSchema
from engine.model.types import arrow_type, is_textual

RULES = ("min", "max", "pattern", "required", "allowed", "max_length")
_ORDERED = ("int", "float", "date", "timestamp")


@dataclass(frozen=True)
class Rule:
    column: str
    minimum: pa.Scalar | None = None
    maximum: pa.Scalar | None = None
    pattern: str | None = None
    required: bool = False
    allowed: pa.Array | None = None
    max_length: int | None = None


def parse_rules(rules: Any, schema: TableSchema) -> dict[str, Rule]:
    if rules is None:
        return {}
    if not isinstance(rules, Mapping):
        raise InvalidRequest("validation_rules must be an object of column: rules", field="validation_rules")
    return {name: _rule(name, spec, schema) for name, spec in rules.items()}


def _rule(name: str, spec: Any, schema: TableSchema) -> Rule:
    where = f"validation_rules.{name}"
    if schema.computed_column(name) is not None or not schema.has(name):
        raise ColumnNotFound(schema.table, name, where)
    if not isinstance(spec, Mapping):
        raise InvalidRequest(f"{where} must be an object of rules ({', '.join(RULES)})", field=where)
    unknown = sorted(set(spec) - set(RULES))
    if unknown:
        raise InvalidRequest(
            f"{where}.{unknown[0]} is not a rule (rules: {', '.join(RULES)})", field=f"{where}.{unknown[0]}"
        )
    column = schema.column(name)
    found: dict[str, Any] = {}
    for bound, key in (("min", "minimum"), ("max", "maximum")):
        if spec.get(bound) is not None:
            if column.type not in _ORDERED:
                raise InvalidRequest(
                    f"{where}.{bound}: a {column.type} column has no order; min and max are for numbers, dates and "
                    "timestamps",
                    field=f"{where}.{bound}",
                )
            found[key] = _value(column, spec[bound], f"{where}.{bound}")
    if spec.get("pattern") is not None:
        found["pattern"] = _pattern(column, spec["pattern"], f"{where}.pattern")
    if "required" in spec:
        if not isinstance(spec["required"], bool):
            raise InvalidRequest(f"{where}.required must be true or false", field=f"{where}.required")
        found["required"] = spec["required"]
    if spec.get("allowed") is not None:
        allowed = spec["allowed"]
        if not isinstance(allowed, list) or not allowed:
            raise InvalidRequest(f"{where}.allowed must be a non-empty list of values", field=f"{where}.allowed")
        scalars = [_value(column, v, f"{where}.allowed[{i}]") for i, v in enumerate(allowed)]
        found["allowed"] = pa.array([s.as_py() for s in scalars], arrow_type(column.type))
    if spec.get("max_length") is not None:
        length = spec["max_length"]
        if not is_textual(column.type) and column.type != "json":
            raise InvalidRequest(f"{where}.max_length is for text columns", field=f"{where}.max_length")
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise InvalidRequest(f"{where}.max_length must be a non-negative integer", field=f"{where}.max_length")
        found["max_length"] = length
    return Rule(name, **found)


def _value(column: Column, value: Any, where: str) -> pa.Scalar:
    try:
        return coerce_value(column, value, (where,))
    except SchemaMismatch as exc:
        raise InvalidRequest(f"{where}: {exc.errors[0].msg}", field=where) from None


def _pattern(column: Column, pattern: Any, where: str) -> str:
    if not is_textual(column.type) and column.type != "json":
        raise InvalidRequest(f"{where}: patterns are for text columns", field=where)
    if not isinstance(pattern, str) or not pattern:
        raise InvalidRequest(f"{where} must be a regular expression (text)", field=where)
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        problem = str(exc).split(": ", 1)[-1]
        raise InvalidRequest(
            f"{where}: {pattern!r} is not a regular expression RE2 can run ({problem}); backreferences and "
            "look-around are not supported",
            field=where,
        ) from None
    return pattern


def check_rule(rule: Rule, values: pa.Array) -> list[tuple[pa.Array, str]]:
    """Masks of the cells that break each of the rule's checks, with the message for them."""
    found: list[tuple[pa.Array, str]] = []
    present = values.is_valid()
    if rule.required:
        missing = values.is_null()
        if pa.types.is_string(values.type):
            missing = pc.or_(missing, pc.fill_null(pc.equal(values, ""), False))
        found.append((missing, "is required"))
    if rule.minimum is not None:
        found.append((pc.less(values, rule.minimum), f"is below the minimum {rule.minimum.as_py()}"))
    if rule.maximum is not None:
        found.append((pc.greater(values, rule.maximum), f"is above the maximum {rule.maximum.as_py()}"))
    if rule.pattern is not None:
        found.append(
            (
                pc.and_(present, pc.invert(pc.match_substring_regex(values, rule.pattern))),
                f"does not match the pattern {rule.pattern}",
            )
        )
    if rule.allowed is not None:
        shown = ", ".join(str(v) for v in rule.allowed.to_pylist()[:10])
        found.append((pc.and_(present, pc.invert(pc.is_in(values, value_set=rule.allowed))), f"is not one of {shown}"))
    if rule.max_length is not None:
        found.append(
            (pc.greater(pc.utf8_length(values), rule.max_length), f"is longer than {rule.max_length} characters")
        )
    return found


__all__ = ["RULES", "Rule", "check_rule", "parse_rules"]
