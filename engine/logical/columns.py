"""Defining a computed column: a definition validated against the table's schema (names, kinds, parameters,
dependencies, no cycles), its type inferred by compiling it. Raises a 4xx error naming the field.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import orjson

from engine.errors import ColumnExists, InvalidComputedColumn
from engine.expr.compiler import compile_expression
from engine.expr.udfs import functions
from engine.model.columns import KINDS, RANKING, Call, ComputedColumn, group_by, parse_call, window_spec
from engine.model.names import check_name
from engine.model.schema import TableSchema


# -- defining a column ---------------------------------------------------------------------------------------------
def define(
    schema: TableSchema,
    name: Any,
    column_type: Any,
    expression: Any,
    dependencies: Any = None,
    parameters: Any = None,
    cache_results: Any = True,
    created_at: str = "",
) -> ComputedColumn:
    """Validate a new computed column against ``schema``; raises a 4xx error naming the problem."""
    check_name(name, "name")
    if any(c.lower() == name.lower() for c in (*schema.readable, *schema.key)):
        raise ColumnExists(name)
    if column_type not in KINDS:
        raise InvalidComputedColumn(f"column_type must be one of {', '.join(KINDS)}", field="column_type")
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidComputedColumn("expression must be a non-empty string", field="expression")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise InvalidComputedColumn("parameters must be an object", field="parameters")
    if parameters.get("on_error", "null") not in ("null", "abort"):
        raise InvalidComputedColumn('parameters.on_error must be "null" or "abort"', field="parameters.on_error")
    if not isinstance(cache_results, bool):
        raise InvalidComputedColumn("cache_results must be true or false", field="cache_results")
    _no_cycle(name, expression)

    def compiled(text: str) -> tuple[str, frozenset[str]]:
        c = compile_expression(text, schema, field="expression", functions=functions(schema.udfs))
        _row_level(schema, c.columns, "expression")
        return c.type, c.columns

    if column_type == "udf":
        _udf_call(schema, expression)
    if column_type in ("expression", "udf"):
        type_, deps = compiled(expression)
    else:
        call = parse_call(expression, column_type)
        arg_type, deps = compiled(call.arg) if call.arg is not None else ("int", frozenset())
        if column_type == "aggregate":
            groups = group_by(parameters)
            for g in groups:
                schema.column(g, "parameters.group_by")
            _row_level(schema, groups, "parameters.group_by")
            deps = deps | set(groups)
        else:
            spec = window_spec(call, parameters)
            for c in (*spec.partition_by, *(o for o, _ in spec.order_by)):
                schema.column(c, "parameters")
            _row_level(schema, [*spec.partition_by, *(o for o, _ in spec.order_by)], "parameters")
            deps = deps | set(spec.partition_by) | {o for o, _ in spec.order_by}
        type_ = _result_type(call, arg_type)
    if dependencies is not None:
        if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
            raise InvalidComputedColumn("dependencies must be a list of column names", field="dependencies")
        if set(dependencies) != set(deps):
            raise InvalidComputedColumn(
                f"dependencies {sorted(dependencies)} do not match the columns the expression reads: {sorted(deps)}",
                field="dependencies",
            )
    return ComputedColumn(
        name,
        column_type,
        expression,
        tuple(sorted(deps)),
        orjson.dumps(parameters, option=orjson.OPT_SORT_KEYS).decode(),
        cache_results,
        type_,
        created_at,
    )


def _udf_call(schema: TableSchema, expression: str) -> None:
    """A ``udf`` column is one call of one of the table's UDFs (its arguments are expressions)."""
    try:
        node = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        return  # compiling reports it, with the position
    names = [u.name for u in schema.udfs]
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names):
        known = f"the table's UDFs are {', '.join(names)}" if names else "the table has no UDFs yet"
        raise InvalidComputedColumn(
            f"expression: a udf column is a call of a registered UDF, e.g. calculate_discount(price, 0.2); {known}",
            field="expression",
        )


def _no_cycle(name: str, expression: str) -> None:
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", re.sub(r"(['\"]).*?\1", "", expression)))
    if name in names:
        raise InvalidComputedColumn(f"cycle: column '{name}' depends on itself", field="expression")


def _row_level(schema: TableSchema, columns: Any, loc: str) -> None:
    """Aggregate and window values are attached to rows after the shards' work: nothing else can read them."""
    for c in columns:
        cc = schema.computed_column(c)
        if cc is not None and cc.whole_table:
            raise InvalidComputedColumn(
                f"{loc}: '{c}' is an {cc.column_type} column; computed columns can read stored columns and "
                "expression columns, not aggregate or window columns",
                field=loc,
            )


def _result_type(call: Call, arg_type: str) -> str:
    f = call.function
    if f in ("COUNT", "COUNT_DISTINCT", *RANKING):
        return "int"
    if f == "AVG":
        if arg_type not in ("int", "float"):
            raise InvalidComputedColumn(f"AVG needs a number, not {arg_type}", field="expression")
        return "float"
    if f == "SUM" and arg_type not in ("int", "float"):
        raise InvalidComputedColumn(f"SUM needs a number, not {arg_type}", field="expression")
    return arg_type


def dependents(schema: TableSchema, name: str) -> list[str]:
    """The computed columns that read ``name``."""
    return [c.name for c in schema.computed if name in c.dependencies]
