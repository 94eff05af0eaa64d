"""Registering a UDF: its definition validated field by field, then checked (compiled) by its language.

The languages, like the functions whose names a UDF may not take, are what the process's plugin registry provides
(``engine.registry``): a ``language`` that no plugin registers is refused with the list of those that are.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pyarrow.compute as pc

from engine.errors import InvalidRequest, InvalidUdf, UdfCompileError, UdfExists
from engine.expr.compiler import compile_expression
from engine.expr.core import Compiled
from engine.expr.udfs import NO_COLUMNS
from engine.model.names import check_name
from engine.model.schema import TableSchema
from engine.model.udfs import MAX_CODE, MAX_PARAMETERS, TYPES, Parameter, Udf
from engine.registry import UdfLanguage, current


# -- registering -------------------------------------------------------------------------------------------------
def define(
    schema: TableSchema,
    name: Any,
    language: Any,
    code: Any,
    parameters: Any,
    return_type: Any,
    description: Any = None,
    deterministic: Any = False,
    *,
    now: str,
    previous: Udf | None = None,
) -> Udf:
    """Validate a definition (not its code: that is its language's ``check``); raises InvalidUdf naming the field.

    ``previous`` is the UDF being replaced: it keeps its id and creation time.
    """
    check_name(name, "name")
    if previous is None:
        if schema.udf(name) is not None:
            raise UdfExists(name)
        if name in current().functions():
            raise InvalidUdf(f"name: '{name}' is a built-in function", field="name")
        if schema.has(name):
            raise InvalidUdf(f"name: '{name}' is a column of table '{schema.table}'", field="name")
    languages = current().udf_languages()
    if language not in languages:
        raise InvalidUdf(f"language must be one of {', '.join(languages)}, not {language!r}", field="language")
    if not isinstance(code, str) or not code.strip():
        raise InvalidUdf("code must be a non-empty string", field="code")
    if len(code) > MAX_CODE:
        raise InvalidUdf(f"code is longer than {MAX_CODE} characters", field="code")
    if return_type not in TYPES:
        raise InvalidUdf(f"return_type must be one of {', '.join(TYPES)}, not {return_type!r}", field="return_type")
    if description is not None and not isinstance(description, str):
        raise InvalidUdf("description must be a string", field="description")
    if not isinstance(deterministic, bool):
        raise InvalidUdf("deterministic must be true or false", field="deterministic")
    return Udf(
        previous.id if previous else uuid.uuid4().hex,
        name,
        language,
        code,
        _parameters(parameters),
        return_type,
        description,
        deterministic,
        previous.created_at if previous else now,
        now,
    )


def _parameters(raw: Any) -> tuple[Parameter, ...]:
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise InvalidUdf("parameters must be a list of {name, type}", field="parameters")
    if len(raw) > MAX_PARAMETERS:
        raise InvalidUdf(f"a UDF takes at most {MAX_PARAMETERS} parameters", field="parameters")
    out: list[Parameter] = []
    for i, p in enumerate(raw):
        loc = f"parameters[{i}]"
        if not isinstance(p, dict) or set(p) - {"name", "type", "description"} or "name" not in p:
            raise InvalidUdf(f"{loc} must be {{name, type}}", field=loc)
        check_name(p["name"], f"{loc}.name")
        type_ = p.get("type")
        if type_ not in TYPES:
            raise InvalidUdf(f"{loc}.type must be one of {', '.join(TYPES)}, not {type_!r}", field=f"{loc}.type")
        if any(q.name.lower() == p["name"].lower() for q in out):
            raise InvalidUdf(f"{loc}: parameter '{p['name']}' is declared twice", field=loc)
        out.append(Parameter(p["name"], type_))
    return tuple(out)


def checked(udf: Udf, language: UdfLanguage | None = None) -> Udf:
    """``udf`` compiled by its ``language`` (by default the registry's), with its inline expression when one fits
    the declared types. A language that only translates (SQL) has no other way to run: a misfit is refused."""
    language = language or current().language(udf.language)
    candidate = language.check(udf)
    inline, misfit = None, "it translates to no expression"
    if candidate is not None:
        try:
            inline = _fits(udf, candidate)
        except (InvalidRequest, TypeError) as exc:
            misfit = exc.message if isinstance(exc, InvalidRequest) else str(exc)
    if inline is None and language.inline_only:
        raise UdfCompileError(misfit.removeprefix("code: "), line=1, col=1, language=udf.language)
    return replace(udf, inline=inline)


def _fits(udf: Udf, text: str) -> str:
    bindings = {p.name: Compiled(pc.field(p.name), p.type, frozenset({p.name})) for p in udf.parameters}
    result = compile_expression(text, NO_COLUMNS, field="code", bindings=bindings)
    if result.type not in (udf.return_type, "null") and (result.type, udf.return_type) != ("int", "float"):
        raise TypeError(f"the expression gives {result.type}, but return_type is {udf.return_type}")
    return text
