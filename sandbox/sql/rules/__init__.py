"""The rules, one module per family of SQL constructs, and ``RULES``: the allow-list, mapping each sqlglot node kind
that may appear to the function that translates it. A node kind not in ``RULES`` is refused
(``sandbox.sql.refusals`` says why).

Each rule takes the node and the ``Translator``, translates its children with ``tx.sql`` and returns parenthesised
engine expression text (or an atom, or a call), so that precedence cannot change its meaning."""

from __future__ import annotations

from sqlglot import exp

from sandbox.sql.rules import arithmetic, case, casts, comparison, functions, literals, logic, names, parens, strings
from sandbox.sql.translator import Rule

RULES: dict[type[exp.Expr], Rule] = {
    exp.Literal: literals.literal_sql,
    exp.Boolean: literals.boolean_sql,
    exp.Null: literals.null_sql,
    exp.Column: names.column_sql,
    exp.Paren: parens.paren_sql,
    exp.Neg: arithmetic.neg_sql,
    exp.Not: logic.not_sql,
    exp.Add: arithmetic.add_sql,
    **dict.fromkeys(arithmetic.ARITHMETIC, arithmetic.arithmetic_sql),
    exp.Div: arithmetic.div_sql,
    exp.Mod: arithmetic.mod_sql,
    **dict.fromkeys(comparison.COMPARISONS, comparison.comparison_sql),
    exp.And: logic.logical_sql,
    exp.Or: logic.logical_sql,
    exp.Pow: arithmetic.pow_sql,
    exp.DPipe: strings.dpipe_sql,
    exp.Is: comparison.is_sql,
    exp.In: comparison.in_sql,
    exp.Between: comparison.between_sql,
    exp.Like: strings.like_sql,
    exp.Case: case.case_sql,
    **dict.fromkeys(functions.UNARY, functions.unary_sql),
    exp.Coalesce: functions.coalesce_sql,
    exp.Nullif: functions.nullif_sql,
    exp.Least: functions.extreme_sql,
    exp.Greatest: functions.extreme_sql,
    exp.Round: functions.round_sql,
    exp.Log: functions.log_sql,
    exp.Trim: functions.trim_sql,
    exp.Substring: functions.substring_sql,
    exp.Replace: functions.replace_sql,
    exp.Concat: functions.concat_sql,
    exp.Cast: casts.cast_sql,
}

__all__ = ["RULES"]
