"""Translate the code of a SQL UDF, one scalar SQL expression over its parameters, to the engine's expression language.

``to_expression("price * (1 - discount_rate)", ["price", "discount_rate"])`` gives
``"(price * (1 - discount_rate))"``, which ``engine.expr.compiler.compile_expression`` compiles to vectorised Arrow
kernels. SQL is never executed: the code is read with sqlglot's tokenizer and parser (DuckDB dialect), and the tree is
accepted only if every node is on an allow-list, one small function per node kind (``rules.RULES``). Anything else is a
``UdfCompileError`` naming the problem, at the 1-based line and column of the offending token where sqlglot gives one
(else 1, 1).

Refused before parsing: code longer than ``MAX_CODE`` characters, nesting deeper than ``MAX_DEPTH`` levels (brackets
and CASE ... END; the tree is measured again after parsing, without recursion), ``;`` (one expression only), comments,
placeholders and parameters (``?``, ``:x``, ``$1``, ``@x``). The parser runs on a thread of its own, so that its
recursion (about 25 frames per level) has the whole recursion limit whatever the caller's depth.

The allowed subset:

- parameter names, unqualified. An unquoted identifier matches the parameter of that name ignoring case, as SQL folds
  it; a quoted one (``"Price"``) must match exactly. Literals: numbers, strings, TRUE / FALSE, NULL.
- parentheses; ``+ - * / %``, unary minus, ``||``; ``= <> != < <= > >=``; ``AND OR NOT``; ``IS [NOT] NULL``;
  ``[NOT] IN (literal, ...)``; ``[NOT] BETWEEN a AND b``; ``[NOT] LIKE`` with the patterns ``'abc'``, ``'abc%'``,
  ``'%abc'`` and ``'%abc%'`` (no ``_``, no ``%`` inside, no backslash, no ESCAPE); ``CASE WHEN ... THEN ... [ELSE
  ...] END`` and ``CASE x WHEN v THEN ... END``.
- ``CAST(x AS t)`` and ``x::t`` for t in INT / INTEGER / BIGINT (``int(x)``), DOUBLE / FLOAT / REAL (``float(x)``),
  VARCHAR / TEXT / STRING (``str(x)``). BOOLEAN is refused: no engine function converts to bool.
- functions: ABS, ROUND (1 or 2 arguments), FLOOR, CEIL / CEILING, SQRT, EXP, LN, LOG, LOG10, POWER / POW (and
  DuckDB's ``^`` / ``**``), MOD, LEAST, GREATEST, COALESCE (and IFNULL), NULLIF, LOWER, UPPER, TRIM, LENGTH /
  CHAR_LENGTH, SUBSTRING / SUBSTR, REPLACE, CONCAT.

Semantics, and the decisions made where SQL and the engine differ:

- ``+`` adds numbers, as in SQL: one whose operand is a string (or a bool, a timestamp ...) is refused, at the ``+``,
  as DuckDB refuses it (SQLite reads ``'ab' + 'c'`` as 0), where the engine's ``+`` would join strings; ``||`` joins
  them. That takes the parameters' declared types: ``to_expression(code, {"s": "string"})``, as registering a UDF
  calls it; given only their names, the engine's types are not known and no ``+`` is refused.
- ``/`` is true division, always a float, like DuckDB (not Postgres's integer division of ints).
- Division and remainder by zero give NULL, as in DuckDB and SQLite, so ``COALESCE(x / 0, 1)`` is 1: the divisor is
  written ``(None if (b == 0) else b)`` (unless it is a number literal other than 0), because the engine would fail
  the whole cell. Where DuckDB raises an error instead (integer overflow, SQRT of a negative number, LN of 0, a CAST
  of text that is not a number), the engine fails the cell: null, and counted, or an abort, per ``on_error``.
- ``%`` and MOD keep SQL's remainder, which takes the dividend's sign (``-7 % 2`` is -1), unlike the engine's ``%``,
  which floors like Python (1): ``a % b`` becomes ``((abs(a) % abs(b)) * (-1 if (a < 0) else 1))``, exact for ints
  and floats. It reads ``a`` twice; ``abs`` of the smallest int64 overflows and fails the cell.
- NULL: ``x = NULL`` is refused, as is any comparison, BETWEEN, IN or ``CASE x WHEN`` with an operand that is NULL
  whatever the row: SQL gives NULL, while the engine's ``== None`` tests for null. Write IS NULL: ``(x == None)``. Comparisons, arithmetic,
  ``||`` and NOT give NULL for a NULL operand; AND / OR use three-valued logic. ``x IN (...)`` is NULL for a NULL
  ``x``, and NULL rather than FALSE when the list holds a NULL and ``x`` is not in it; both are spelled out, as the
  engine's ``in`` never gives null. A CASE branch whose condition is NULL is not taken (``coalesce(cond, False)``),
  CASE without ELSE gives NULL (``None``); ``NULLIF(a, b)`` is ``(None if coalesce((a == b), False) else a)``.
  CONCAT skips NULLs (``coalesce(x, '')``) as DuckDB and Postgres do; LEAST / GREATEST skip them (the engine's
  ``min`` / ``max``), as DuckDB and Postgres do.
- ROUND rounds halves to even (the engine's ``round``, like Postgres on double precision) where DuckDB and SQLite
  round them away from zero: ``ROUND(2.5)`` is 2.0 here. ``ROUND(x)`` keeps ``x``'s type (``round(x, 0)``); the
  number of decimals must be a constant integer. FLOOR and CEIL give ints (the engine's), so they fail the cell for
  NaN, infinities and floats beyond 64 bits.
- ``LOG(x)`` is base 10, as in DuckDB, Postgres and SQLite (``log10``); ``LOG(b, x)`` is base ``b`` (``log(x, b)``).
  POWER gives an int for ints with a constant exponent >= 0 (the engine's ``pow``), with the same value.
- ``CAST(x AS INT)`` truncates a float toward zero (the engine's ``int``, like SQLite) where DuckDB rounds; all float
  types are 64-bit; ``CAST(x AS VARCHAR)`` writes values as the engine's ``str`` does (``True``, ``1`` for 1.0).
- SUBSTRING counts from 1, as SQL does, and its start (>= 1) and length (>= 0) must be constant integers: the engine's
  ``substr`` is 0-based and takes constants. TRIM strips spaces only, as in SQL (``strip(s, ' ')``); TRIM(BOTH 'ab'
  FROM s) and TRIM(s, 'ab') strip those characters; LTRIM, RTRIM, LEADING and TRAILING are refused. LENGTH counts
  characters. REPLACE takes constant strings, the searched one not empty. CONCAT and ``||`` take strings.
- Number literals keep their text (ints stay ints, ``1.5`` stays float; DuckDB's decimals are floats here); leading
  zeros of ints are dropped. Strings are written with ``repr()``.

The output is parenthesised throughout, so that precedence cannot change its meaning, and checked to fit the
engine's limits on length and nesting (a CASE counts a level per WHEN).

The package, in the order the code goes through it:

- ``precheck``: the limits checked on the code and its tokens before parsing;
- ``parse``: sqlglot's parser on a fresh stack, and the depth of the tree it gives;
- ``translate``: the driver, ``to_expression``, which also checks the output against the engine's limits;
- ``translator``: the ``Translator`` each rule receives, which dispatches a node to its rule or refuses it;
- ``rules``: ``RULES``, the allow-list from sqlglot node kinds to rules, one module per family of constructs
  (``literals``, ``names``, ``parens``, ``arithmetic``, ``comparison``, ``logic``, ``strings``, ``case``,
  ``functions``, ``casts``);
- ``refusals``: the message and the position of a refusal for a node kind no rule takes.
"""

from __future__ import annotations

from sandbox.sql._common import DIALECT, MAX_CODE, MAX_DEPTH
from sandbox.sql.translate import to_expression

__all__ = ["DIALECT", "MAX_CODE", "MAX_DEPTH", "to_expression"]
