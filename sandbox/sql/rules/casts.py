"""``CAST(x AS t)`` and ``x::t`` for t in INT / INTEGER / BIGINT (``int(x)``), DOUBLE / FLOAT / REAL
(``float(x)``), VARCHAR / TEXT / STRING (``str(x)``). BOOLEAN is refused: no engine function converts to bool."""

from __future__ import annotations

from sqlglot import exp

from sandbox.sql._common import DIALECT, call
from sandbox.sql.translator import Translator

_CASTS: dict[exp.DType, str] = {
    exp.DType.INT: "int",
    exp.DType.BIGINT: "int",
    exp.DType.DOUBLE: "float",
    exp.DType.FLOAT: "float",
    exp.DType.TEXT: "str",
    exp.DType.VARCHAR: "str",
    exp.DType.CHAR: "str",
}


def cast_sql(node: exp.Cast, tx: Translator) -> str:
    tx.only(node, "this", "to")
    to = node.args.get("to")
    if type(to) is not exp.DataType:
        raise tx.refuse(node, "CAST needs a type")
    kind = to.this
    if kind == exp.DType.BOOLEAN:
        raise tx.refuse(node, "CAST to BOOLEAN is not allowed: write a comparison, such as x <> 0")
    function = _CASTS.get(kind) if isinstance(kind, exp.DType) else None
    if function is None or to.args.get("expressions") or to.args.get("nested"):
        allowed = "INT, INTEGER, BIGINT, DOUBLE, FLOAT, REAL, VARCHAR, TEXT or STRING"
        raise tx.refuse(node, f"CAST to {to.sql(dialect=DIALECT)} is not allowed: cast to {allowed}")
    return call(function, tx.sql(tx.child(node, "this")))
