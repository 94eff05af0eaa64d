"""Translate the code of a SQL UDF, one scalar SQL expression over its parameters, to the engine's expression language.

``to_expression("price * (1 - discount_rate)", ["price", "discount_rate"])`` gives
``"(price * (1 - discount_rate))"``, which ``engine.expr.compiler.compile_expression`` compiles to vectorised Arrow
kernels. SQL is never executed: the code is read with sqlglot's tokenizer and parser (DuckDB dialect), and the tree is
accepted only if every node is on an allow-list, one small function per node kind (``_HANDLERS``). Anything else is a
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
"""

from __future__ import annotations

import ast
import keyword
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError
from sqlglot.tokens import Token, TokenType

from engine.errors import UdfCompileError
from engine.expr.core import MAX_DEPTH as ENGINE_MAX_DEPTH
from engine.expr.core import MAX_LENGTH as ENGINE_MAX_LENGTH

MAX_CODE = 4000
MAX_DEPTH = 32
DIALECT = "duckdb"

_T = TypeVar("_T")


def to_expression(code: str, parameters: Sequence[str]) -> str:
    """Translate SQL expression ``code`` over ``parameters`` to engine expression text; raises UdfCompileError.

    >>> to_expression("price * (1 - discount_rate)", ["price", "discount_rate"])
    '(price * (1 - discount_rate))'
    """
    if len(code) > MAX_CODE:
        raise _error(code, MAX_CODE, f"the code is longer than {MAX_CODE} characters")
    tokens = _tokenize(code)
    _check_tokens(code, tokens)
    tree = _parse(code, tokens)
    _check_tree(code, tree)
    text = _Translator(code, tuple(parameters), tuple(tokens)).sql(tree)
    _check_output(code, text)
    return text


# -- positions and errors ------------------------------------------------------------------------------------------


def _position(code: str, offset: int) -> tuple[int, int]:
    """The 1-based line and column of character ``offset``, counting lines as the engine does."""
    lines = re.split(r"\r\n|\r|\n", code[:offset])
    return len(lines), len(lines[-1]) + 1


def _error(code: str, offset: int | None, message: str) -> UdfCompileError:
    line, col = (1, 1) if offset is None else _position(code, offset)
    return UdfCompileError(message, line=line, col=col, language="sql")


def _start(node: exp.Expr) -> int | None:
    """Where ``node`` starts in the code: the leftmost position sqlglot recorded in it, else in its parents."""
    current: exp.Expr | None = node
    while current is not None:
        starts = [n.meta["start"] for n in _descendants(current) if isinstance(n.meta.get("start"), int)]
        if starts:
            return min(starts)
        current = current.parent
    return None


def _descendants(node: exp.Expr) -> Iterator[exp.Expr]:
    stack = [node]
    while stack:  # iterative: used on trees not yet known to be shallow
        current = stack.pop()
        yield current
        stack.extend(current.iter_expressions())


# -- before parsing ------------------------------------------------------------------------------------------------

_DIALECT = Dialect.get_or_raise(DIALECT)
_PLACEHOLDERS = frozenset({TokenType.PLACEHOLDER, TokenType.PARAMETER})
_OPENERS = frozenset({TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE, TokenType.CASE})
_CLOSERS = frozenset({TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.END})


def _tokenize(code: str) -> list[Token]:
    try:
        tokens = _DIALECT.tokenize(code)
    except Exception as exc:  # sqlglot's TokenError, or whatever else it raises on garbage
        raise _error(code, None, f"syntax error: {_clean(str(exc))}") from None
    if not tokens:
        gap = _first_gap(code, tokens)
        raise _error(code, gap, "the code is empty" if gap is None else "comments are not allowed")
    return tokens


def _check_tokens(code: str, tokens: list[Token]) -> None:
    gap = _first_gap(code, tokens)
    if gap is not None:
        found = code[gap : gap + 2]
        message = "comments are not allowed" if found in ("--", "/*") else f"unexpected text {found[:1]!r}"
        raise _error(code, gap, message)
    depth = 0
    for i, token in enumerate(tokens):
        if token.comments:
            raise _error(code, token.start, "comments are not allowed")
        if token.token_type == TokenType.SEMICOLON:
            raise _error(code, token.start, "only one expression is allowed: found ';'")
        if token.token_type in _PLACEHOLDERS or _is_named_placeholder(tokens, i):
            raise _error(code, token.start, f"placeholders and parameters are not allowed: found {token.text!r}")
        depth += (token.token_type in _OPENERS) - (token.token_type in _CLOSERS and depth > 0)
        if depth > MAX_DEPTH:
            raise _error(code, token.start, f"the expression is nested more than {MAX_DEPTH} levels deep")


def _is_named_placeholder(tokens: list[Token], i: int) -> bool:
    """``:name`` / ``:1``: a colon directly followed by a word or a number."""
    if tokens[i].token_type != TokenType.COLON or i + 1 == len(tokens):
        return False
    following = tokens[i + 1]
    return following.start == tokens[i].end + 1 and following.token_type in (TokenType.VAR, TokenType.NUMBER)


def _first_gap(code: str, tokens: list[Token]) -> int | None:
    """The first character outside every token that is not white space: where the tokenizer skipped a comment."""
    covered = 0
    for token in [*tokens, None]:
        end = len(code) if token is None else token.start
        skipped = code[covered:end]
        if skipped.strip():
            return covered + len(skipped) - len(skipped.lstrip())
        if token is not None:
            covered = max(covered, token.end + 1)
    return None


def _clean(message: str) -> str:
    """sqlglot's message without its class paths and terminal colours."""
    message = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", message)
    return re.sub(r"\x1b\[[0-9;]*m", "", message).splitlines()[0] if message else "cannot read the code"


# -- parsing -------------------------------------------------------------------------------------------------------


def _parse(code: str, tokens: list[Token]) -> exp.Expr:
    try:
        trees = _on_fresh_stack(lambda: _DIALECT.parser().parse(tokens, code))
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        offset = _token_start(tokens, first.get("line"), first.get("col"))
        raise _error(code, offset, f"syntax error: {_clean(str(first.get('description') or exc))}") from None
    except RecursionError:
        raise _error(code, None, f"the expression is nested more than {MAX_DEPTH} levels deep") from None
    except Exception as exc:  # the parser is not built for untrusted input: anything it raises is a syntax error
        raise _error(code, None, f"syntax error: {_clean(str(exc))}") from None
    if len(trees) != 1 or trees[0] is None:
        raise _error(code, None, "only one expression is allowed")
    return trees[0]


def _on_fresh_stack(function: Callable[[], _T]) -> _T:
    """``function()`` on a new thread, which starts with an empty stack; its exception is raised here."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, function()))
        except BaseException as exc:  # handed to the calling thread
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="sql-udf-parser", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _token_start(tokens: list[Token], line: Any, col: Any) -> int | None:
    """The offset of the token sqlglot's error points at (its line and the column of its last character)."""
    for token in tokens:
        if token.line == line and token.col == col:
            return token.start
    return None


def _check_tree(code: str, tree: exp.Expr) -> None:
    """No comments, and no deeper than MAX_DEPTH; identifiers and types are part of their parent's level."""
    stack: list[tuple[exp.Expr, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if node.comments:
            raise _error(code, _start(node), "comments are not allowed")
        if depth > MAX_DEPTH:
            raise _error(code, _start(node), f"the expression is nested more than {MAX_DEPTH} levels deep")
        for child in node.iter_expressions():
            stack.append((child, depth + (not isinstance(child, exp.Identifier | exp.DataType))))


def _check_output(code: str, text: str) -> None:
    """The translation must fit the engine's limits, which a CASE with many WHENs or repeated operands can pass."""
    if len(text) > ENGINE_MAX_LENGTH:
        raise _error(code, None, f"the translated expression is longer than {ENGINE_MAX_LENGTH} characters")
    too_deep = (
        f"the translated expression is nested more than {ENGINE_MAX_DEPTH} levels deep (a CASE counts one per WHEN)"
    )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        if "nested" not in str(exc):
            raise  # a bug in the translation, not a fault of the code
        raise _error(code, None, too_deep) from None
    except (RecursionError, MemoryError):
        raise _error(code, None, too_deep) from None
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > ENGINE_MAX_DEPTH:
            raise _error(code, None, too_deep)
        stack.extend((c, depth + isinstance(c, ast.expr)) for c in ast.iter_child_nodes(node))


# -- translation ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Translator:
    code: str
    parameters: tuple[str, ...]
    tokens: tuple[Token, ...]

    def sql(self, node: exp.Expr) -> str:
        """``node`` as engine expression text; refuses a node kind not on the allow-list."""
        handler = _HANDLERS.get(type(node))
        if handler is None:
            raise self.not_allowed(node)
        return handler(node, self)

    def not_allowed(self, node: exp.Expr) -> UdfCompileError:
        """The error for a node kind that is not on the allow-list, naming it."""
        offset = _refusal_start(node, self.tokens)
        return _error(self.code, _start(node) if offset is None else offset, _refusal(node, self.code))

    def refuse(self, node: exp.Expr | None, message: str) -> UdfCompileError:
        return _error(self.code, None if node is None else _start(node), message)

    def refuse_null(self, node: exp.Expr, message: str) -> UdfCompileError:
        """An error about a NULL in ``node``: sqlglot keeps no position for NULL, so point at the last NULL token
        before the first position it kept in ``node``, if any."""
        start = _start(node)
        before = [t.start for t in self.tokens if t.token_type == TokenType.NULL and (start is None or t.start < start)]
        return _error(self.code, max(before, default=start), message)

    def child(self, node: exp.Expr, key: str) -> exp.Expr:
        value = node.args.get(key)
        if not isinstance(value, exp.Expr):
            raise self.refuse(node, f"{self.name(node)}: an argument is missing")
        return value

    def only(self, node: exp.Expr, *keys: str) -> None:
        """Refuse arguments and options of ``node`` other than ``keys`` (flags that are off are not there)."""
        for key, value in node.args.items():
            if key not in keys and _given(value):
                at = value if isinstance(value, exp.Expr) else node
                raise self.refuse(at, f"{self.name(node)}: this argument or option is not allowed ({key})")

    def name(self, node: exp.Expr) -> str:
        """A function's name as written (``CHAR_LENGTH``), else sqlglot's name for the node."""
        return _written_name(node, self.code)


def _given(value: Any) -> bool:
    """Whether a node's argument or option is there: sqlglot leaves None, False or [] for those not given."""
    return not (value is None or value is False or (isinstance(value, list) and not value))


def _written_name(node: exp.Expr, code: str) -> str:
    if type(node) is exp.Anonymous and isinstance(node.this, str):
        return node.this
    start, end = node.meta.get("start"), node.meta.get("end")
    if isinstance(start, int) and isinstance(end, int) and 0 <= start <= end < len(code):
        return code[start : end + 1]
    return node.sql_name() if isinstance(node, exp.Func) else type(node).__name__.upper()


def _call(function: str, *args: str) -> str:
    return f"{function}({', '.join(args)})"


# Leaves.

_INT = re.compile(r"[0-9]+")
_FLOAT = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _literal(node: exp.Literal, tx: _Translator) -> str:
    tx.only(node, "this", "is_string")
    value = node.this
    if not isinstance(value, str):
        raise tx.refuse(node, "this literal is not allowed")
    if node.is_string:
        return repr(value)
    if _INT.fullmatch(value):
        return str(int(value))
    if _FLOAT.fullmatch(value):
        return value
    raise tx.refuse(node, f"number literal {value!r} is not allowed")


def _boolean(node: exp.Boolean, tx: _Translator) -> str:
    return "True" if node.this is True else "False"


def _null(node: exp.Null, tx: _Translator) -> str:
    return "None"


def _column(node: exp.Column, tx: _Translator) -> str:
    if any(node.args.get(key) for key in ("table", "db", "catalog")):
        raise tx.refuse(node, f"qualified names are not allowed: {node.sql(dialect=DIALECT)}")
    tx.only(node, "this")
    identifier = node.this
    if isinstance(identifier, exp.Star):
        raise tx.refuse(node, "'*' is not allowed")
    if not isinstance(identifier, exp.Identifier) or not isinstance(identifier.this, str):
        raise tx.refuse(node, "this name is not allowed")
    return _parameter(identifier, tx)


def _parameter(identifier: exp.Identifier, tx: _Translator) -> str:
    """The parameter an identifier names: unquoted ones ignoring case, as SQL folds them; quoted ones exactly."""
    text, quoted = identifier.this, bool(identifier.args.get("quoted"))
    shown = f'"{text}"' if quoted else f"'{text}'"
    if quoted:
        matches = [p for p in tx.parameters if p == text]
    else:
        matches = [p for p in tx.parameters if p.lower() == text.lower()]
    if len(matches) > 1:
        raise tx.refuse(identifier, f"name {shown} is ambiguous: it matches {', '.join(matches)} (quote it)")
    if not matches:
        listed = ", ".join(tx.parameters) if tx.parameters else "none"
        hint = ""
        if quoted and any(p.lower() == text.lower() for p in tx.parameters):
            hint = " (a quoted name matches its case exactly)"
        raise tx.refuse(identifier, f"unknown name {shown}{hint}: the parameters are {listed}")
    name = matches[0]
    if keyword.iskeyword(name) or not name.isidentifier():
        raise tx.refuse(
            identifier, f"parameter '{name}' cannot be used: it is a reserved word of the engine's language"
        )
    return name


# Operators.

_ARITHMETIC: dict[type[exp.Expr], str] = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*"}
_COMPARISONS: dict[type[exp.Expr], str] = {
    exp.EQ: "==",
    exp.NEQ: "!=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
_NULL_COMPARISON = "comparison with NULL is always NULL in SQL: use IS NULL or IS NOT NULL"


def _paren(node: exp.Paren, tx: _Translator) -> str:
    """Every translation is already an atom, a call or parenthesised: ``(a + b)`` stays ``(a + b)``."""
    tx.only(node, "this")
    return tx.sql(tx.child(node, "this"))


def _neg(node: exp.Neg, tx: _Translator) -> str:
    tx.only(node, "this")
    return f"(-{tx.sql(tx.child(node, 'this'))})"


def _not(node: exp.Not, tx: _Translator) -> str:
    tx.only(node, "this")
    inner = tx.child(node, "this")
    if type(inner) is exp.Is:
        return _is(inner, tx, negate=True)
    if type(inner) is exp.In:
        return _in(inner, tx, negate=True)
    return f"(not {tx.sql(inner)})"


def _arithmetic(node: exp.Binary, tx: _Translator) -> str:
    tx.only(node, "this", "expression")
    a, b = tx.sql(tx.child(node, "this")), tx.sql(tx.child(node, "expression"))
    return f"({a} {_ARITHMETIC[type(node)]} {b})"


def _div(node: exp.Div, tx: _Translator) -> str:
    """True division, a float, like DuckDB; NULL for a zero divisor."""
    tx.only(node, "this", "expression")
    return f"({tx.sql(tx.child(node, 'this'))} / {_divisor(tx.child(node, 'expression'), tx)})"


def _mod(node: exp.Mod, tx: _Translator) -> str:
    """SQL's remainder has the dividend's sign; the engine's ``%`` floors: sign(a) * (|a| % |b|). NULL for b = 0."""
    tx.only(node, "this", "expression")
    a, b = tx.sql(tx.child(node, "this")), _divisor(tx.child(node, "expression"), tx)
    return f"((abs({a}) % abs({b})) * (-1 if ({a} < 0) else 1))"


def _divisor(node: exp.Expr, tx: _Translator) -> str:
    """``b`` with zero made NULL, as DuckDB and SQLite give NULL for a division by zero where the engine fails the
    whole cell; a literal other than zero is left alone."""
    b = tx.sql(node)
    return b if _nonzero_number(node) else f"(None if ({b} == 0) else {b})"


def _nonzero_number(node: Any) -> bool:
    """Whether ``node`` is a number literal, maybe negated or in parentheses, other than zero."""
    while type(node) in (exp.Neg, exp.Paren):
        node = node.this
    if type(node) is not exp.Literal or node.is_string or not isinstance(node.this, str):
        return False
    return bool(_FLOAT.fullmatch(node.this)) and float(node.this) != 0


def _comparison(node: exp.Binary, tx: _Translator) -> str:
    tx.only(node, "this", "expression")
    return _compare(node, tx.child(node, "this"), _COMPARISONS[type(node)], tx.child(node, "expression"), tx)


def _compare(at: exp.Expr, a: exp.Expr, symbol: str, b: exp.Expr, tx: _Translator, message: str = "") -> str:
    """``a symbol b``, refusing an operand that is NULL whatever the row: SQL gives NULL, the engine a null test."""
    if _always_null(a) or _always_null(b):
        raise tx.refuse_null(at, message or _NULL_COMPARISON)
    return f"({tx.sql(a)} {symbol} {tx.sql(b)})"


def _always_null(node: exp.Expr) -> bool:
    """Whether ``node`` is NULL for every row, so that it translates to the engine's null type."""
    kind = type(node)
    if kind is exp.Null:
        return True
    if kind is exp.Paren:
        return isinstance(node.this, exp.Expr) and _always_null(node.this)
    if kind is exp.Case:
        ifs = node.args.get("ifs") or []
        values = [i.args.get("true") for i in ifs if isinstance(i, exp.Expr)] + [node.args.get("default")]
        return all(v is None or (isinstance(v, exp.Expr) and _always_null(v)) for v in values)
    if kind in (exp.Coalesce, exp.Least, exp.Greatest):
        return all(_always_null(a) for a in [node.this, *(node.args.get("expressions") or [])] if a is not None)
    if kind is exp.Nullif:
        return isinstance(node.this, exp.Expr) and _always_null(node.this)
    return False


def _logical(node: exp.Binary, tx: _Translator) -> str:
    tx.only(node, "this", "expression")
    word = "and" if type(node) is exp.And else "or"
    return f"({tx.sql(tx.child(node, 'this'))} {word} {tx.sql(tx.child(node, 'expression'))})"


def _pow(node: exp.Pow, tx: _Translator) -> str:
    tx.only(node, "this", "expression")
    return _call("pow", tx.sql(tx.child(node, "this")), tx.sql(tx.child(node, "expression")))


def _dpipe(node: exp.DPipe, tx: _Translator) -> str:
    """``a || b``: NULL when either is, as in DuckDB and Postgres (CONCAT skips NULLs instead)."""
    tx.only(node, "this", "expression", "safe")
    return _call("concat", tx.sql(tx.child(node, "this")), tx.sql(tx.child(node, "expression")))


def _is(node: exp.Is, tx: _Translator, negate: bool = False) -> str:
    tx.only(node, "this", "expression", "negate")
    if type(node.expression) is not exp.Null:
        raise tx.refuse(node, "only IS NULL and IS NOT NULL are allowed")
    negate = negate != bool(node.args.get("negate"))
    return f"({tx.sql(tx.child(node, 'this'))} {'!=' if negate else '=='} None)"


def _in(node: exp.In, tx: _Translator, negate: bool = False) -> str:
    """``x [NOT] IN (v, ...)`` with SQL's NULLs: NULL for a NULL ``x``, and NULL rather than FALSE when the list
    holds a NULL and ``x`` is not in it. The engine's ``in`` gives a bool for a null ``x``."""
    query = node.args.get("query")
    if isinstance(query, exp.Expr):
        raise tx.not_allowed(query)
    tx.only(node, "this", "expressions")
    values = node.args.get("expressions") or []
    if not values:
        raise tx.refuse(node, "IN needs at least one value")
    for value in values:
        if not _is_literal(value):
            raise tx.refuse(value, "IN lists may hold only literals (numbers, strings, TRUE, FALSE, NULL)")
    if _always_null(tx.child(node, "this")):
        raise tx.refuse_null(node, _NULL_COMPARISON)
    x = tx.sql(tx.child(node, "this"))
    known = [tx.sql(v) for v in values if type(v) is not exp.Null]
    listed = f"[{', '.join(known)}]"
    if len(known) < len(values):  # a NULL in the list: found, or unknown
        return f"({not negate} if ({x} in {listed}) else None)"
    return f"(None if ({x} == None) else ({x} {'not in' if negate else 'in'} {listed}))"


def _is_literal(node: Any) -> bool:
    if type(node) is exp.Neg:
        return type(node.this) is exp.Literal and not node.this.is_string
    return type(node) in (exp.Literal, exp.Boolean, exp.Null)


def _between(node: exp.Between, tx: _Translator) -> str:
    if node.args.get("symmetric"):
        raise tx.refuse(node, "BETWEEN SYMMETRIC is not allowed")
    tx.only(node, "this", "low", "high")
    low, x, high = (tx.child(node, key) for key in ("low", "this", "high"))
    if any(_always_null(n) for n in (low, x, high)):
        raise tx.refuse_null(node, _NULL_COMPARISON)
    return f"({tx.sql(low)} <= {tx.sql(x)} <= {tx.sql(high)})"


def _like(node: exp.Like, tx: _Translator) -> str:
    tx.only(node, "this", "expression", "negate")
    pattern = node.expression
    if type(pattern) is not exp.Literal or not pattern.is_string:
        raise tx.refuse(node, "LIKE needs a constant string pattern")
    form = _like_form(pattern.this)
    if form is None:
        raise tx.refuse(
            pattern, "this LIKE pattern is not allowed: only 'abc', 'abc%', '%abc' and '%abc%' (no '_' or '\\')"
        )
    function, text = form
    s = tx.sql(tx.child(node, "this"))
    test = f"({s} == {text!r})" if function == "==" else _call(function, s, repr(text))
    return f"(not {test})" if node.args.get("negate") else test


def _like_form(pattern: str) -> tuple[str, str] | None:
    """A LIKE pattern as the engine function that tests it and its text: 'abc%' is ('startswith', 'abc')."""
    leading = pattern.startswith("%")
    rest = pattern[1:] if leading else pattern
    trailing = rest.endswith("%")
    text = rest[:-1] if trailing else rest
    if any(c in text for c in "%_\\"):
        return None
    return _LIKE_FUNCTIONS[leading, trailing], text


_LIKE_FUNCTIONS = {
    (False, False): "==",
    (False, True): "startswith",
    (True, False): "endswith",
    (True, True): "contains",
}


def _case(node: exp.Case, tx: _Translator) -> str:
    """CASE as nested ``a if c else b``; a NULL condition does not take its branch, as in SQL."""
    tx.only(node, "this", "ifs", "default")
    subject = tx.child(node, "this") if node.args.get("this") is not None else None
    default = node.args.get("default")
    result = "None" if default is None else tx.sql(tx.child(node, "default"))
    for branch in reversed(node.args.get("ifs") or []):
        if type(branch) is not exp.If:
            raise tx.refuse(node, "this CASE form is not allowed")
        tx.only(branch, "this", "true")
        when = tx.child(branch, "this")
        if subject is None:
            condition = tx.sql(when)
        else:
            message = "CASE x WHEN NULL never matches in SQL: write CASE WHEN x IS NULL"
            condition = _compare(subject, subject, "==", when, tx, message)
        result = f"({tx.sql(tx.child(branch, 'true'))} if coalesce({condition}, False) else {result})"
    return result


# Functions.

_UNARY: dict[type[exp.Expr], str] = {
    exp.Abs: "abs",
    exp.Sqrt: "sqrt",
    exp.Exp: "exp",
    exp.Ln: "log",
    exp.Lower: "lower",
    exp.Upper: "upper",
    exp.Length: "len",
    exp.Floor: "floor",
    exp.Ceil: "ceil",
}


def _unary(node: exp.Func, tx: _Translator) -> str:
    tx.only(node, "this")
    return _call(_UNARY[type(node)], tx.sql(tx.child(node, "this")))


def _coalesce(node: exp.Coalesce, tx: _Translator) -> str:
    tx.only(node, "this", "expressions", "is_nvl", "is_null")
    args = [tx.child(node, "this"), *(node.args.get("expressions") or [])]
    return _call("coalesce", *(tx.sql(a) for a in args))


def _nullif(node: exp.Nullif, tx: _Translator) -> str:
    """NULL where ``a = b`` is TRUE, else ``a`` (also where the comparison is NULL)."""
    tx.only(node, "this", "expression")
    a, b = tx.child(node, "this"), tx.child(node, "expression")
    equal = _compare(node, a, "==", b, tx)
    return f"(None if coalesce({equal}, False) else {tx.sql(a)})"


def _extreme(node: exp.Least | exp.Greatest, tx: _Translator) -> str:
    """LEAST / GREATEST skip NULLs (DuckDB, Postgres), like the engine's min / max."""
    tx.only(node, "this", "expressions", "ignore_nulls")
    if not node.args.get("ignore_nulls"):
        raise tx.refuse(node, f"{tx.name(node)}: this form is not allowed")
    args = [tx.sql(a) for a in [tx.child(node, "this"), *(node.args.get("expressions") or [])]]
    if len(args) == 1:
        return f"({args[0]})"
    return _call("min" if type(node) is exp.Least else "max", *args)


def _int_constant(node: Any) -> int | None:
    """The value of an integer literal, negative or not; None for anything else."""
    sign = 1
    if type(node) is exp.Neg:
        node, sign = node.this, -1
    if type(node) is exp.Literal and not node.is_string and isinstance(node.this, str) and _INT.fullmatch(node.this):
        return sign * int(node.this)
    return None


def _string_constant(node: Any) -> str | None:
    return node.this if type(node) is exp.Literal and node.is_string and isinstance(node.this, str) else None


def _round(node: exp.Round, tx: _Translator) -> str:
    tx.only(node, "this", "decimals")
    x = tx.sql(tx.child(node, "this"))
    decimals = node.args.get("decimals")
    places = 0 if decimals is None else _int_constant(decimals)
    if places is None:
        raise tx.refuse(decimals, f"{tx.name(node)}: the number of decimals must be a constant integer")
    return _call("round", x, str(places))


def _log(node: exp.Log, tx: _Translator) -> str:
    """``LOG(x)`` is base 10 (DuckDB, Postgres, SQLite); ``LOG(b, x)`` is base ``b``; LOG10(x) parses as LOG(10, x)."""
    tx.only(node, "this", "expression")
    if node.args.get("expression") is None:
        return _call("log10", tx.sql(tx.child(node, "this")))
    base, x = tx.child(node, "this"), tx.sql(tx.child(node, "expression"))
    if _int_constant(base) == 10:
        return _call("log10", x)
    return _call("log", x, tx.sql(base))


def _trim(node: exp.Trim, tx: _Translator) -> str:
    """TRIM strips spaces only, as in SQL (the engine's ``strip(s)`` strips all white space)."""
    tx.only(node, "this", "expression", "position")
    position = node.args.get("position")
    if position is not None and str(position).upper() != "BOTH":
        raise tx.refuse(node, f"{tx.name(node)}: only TRIM of both ends is allowed")
    characters = node.args.get("expression")
    text = " " if characters is None else _string_constant(characters)
    if text is None:
        raise tx.refuse(characters, f"{tx.name(node)}: the characters to strip must be a constant string")
    return _call("strip", tx.sql(tx.child(node, "this")), repr(text))


def _substring(node: exp.Substring, tx: _Translator) -> str:
    """SQL counts from 1; the engine's ``substr`` from 0, with constant positions."""
    tx.only(node, "this", "start", "length")
    name = tx.name(node)
    start_node, length_node = node.args.get("start"), node.args.get("length")
    start = _int_constant(start_node)
    if start_node is None or start is None or start < 1:
        raise tx.refuse(start_node or node, f"{name}: the start must be a constant integer >= 1")
    s = tx.sql(tx.child(node, "this"))
    if length_node is None:
        return _call("substr", s, str(start - 1))
    length = _int_constant(length_node)
    if length is None or length < 0:
        raise tx.refuse(length_node, f"{name}: the length must be a constant integer >= 0")
    return _call("substr", s, str(start - 1), str(length))


def _replace(node: exp.Replace, tx: _Translator) -> str:
    tx.only(node, "this", "expression", "replacement")
    name = tx.name(node)
    old_node, new_node = node.args.get("expression"), node.args.get("replacement")
    if new_node is None:
        raise tx.refuse(node, f"{name} takes 3 arguments")
    old, new = _string_constant(old_node), _string_constant(new_node)
    if not old or new is None:
        message = f"{name}: the searched and the new text must be constant strings, the first not empty"
        raise tx.refuse(new_node if old else old_node, message)
    return _call("replace", tx.sql(tx.child(node, "this")), repr(old), repr(new))


def _concat(node: exp.Concat, tx: _Translator) -> str:
    """CONCAT skips NULLs, as in DuckDB and Postgres: each argument that may be NULL counts as ''."""
    tx.only(node, "expressions", "safe", "coalesce")
    parts = []
    for arg in node.args.get("expressions") or []:
        if type(arg) is exp.Null:
            continue
        text = tx.sql(arg)
        parts.append(text if _string_constant(arg) is not None else _call("coalesce", text, "''"))
    return _call("concat", *parts) if parts else "''"


_CASTS: dict[exp.DType, str] = {
    exp.DType.INT: "int",
    exp.DType.BIGINT: "int",
    exp.DType.DOUBLE: "float",
    exp.DType.FLOAT: "float",
    exp.DType.TEXT: "str",
    exp.DType.VARCHAR: "str",
    exp.DType.CHAR: "str",
}


def _cast(node: exp.Cast, tx: _Translator) -> str:
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
    return _call(function, tx.sql(tx.child(node, "this")))


_HANDLERS: dict[type[exp.Expr], Callable[[Any, _Translator], str]] = {
    exp.Literal: _literal,
    exp.Boolean: _boolean,
    exp.Null: _null,
    exp.Column: _column,
    exp.Paren: _paren,
    exp.Neg: _neg,
    exp.Not: _not,
    **dict.fromkeys(_ARITHMETIC, _arithmetic),
    exp.Div: _div,
    exp.Mod: _mod,
    **dict.fromkeys(_COMPARISONS, _comparison),
    exp.And: _logical,
    exp.Or: _logical,
    exp.Pow: _pow,
    exp.DPipe: _dpipe,
    exp.Is: _is,
    exp.In: _in,
    exp.Between: _between,
    exp.Like: _like,
    exp.Case: _case,
    **dict.fromkeys(_UNARY, _unary),
    exp.Coalesce: _coalesce,
    exp.Nullif: _nullif,
    exp.Least: _extreme,
    exp.Greatest: _extreme,
    exp.Round: _round,
    exp.Log: _log,
    exp.Trim: _trim,
    exp.Substring: _substring,
    exp.Replace: _replace,
    exp.Concat: _concat,
    exp.Cast: _cast,
}


# -- refusals ------------------------------------------------------------------------------------------------------

_STATEMENTS: tuple[type[exp.Expr], ...] = (
    exp.DDL,
    exp.DML,
    exp.Command,
    exp.Drop,
    exp.Pragma,
    exp.Attach,
    exp.Detach,
    exp.Install,
    exp.Set,
    exp.Describe,
    exp.Show,
    exp.Use,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Alter,
    exp.Kill,
    exp.Export,
    exp.LoadData,
    exp.Analyze,
    exp.Grant,
    exp.Revoke,
    exp.Refresh,
    exp.Cache,
    exp.Uncache,
    exp.Summarize,
)
_NOT_ALLOWED: tuple[tuple[type[exp.Expr] | tuple[type[exp.Expr], ...], str], ...] = (
    ((exp.Query, exp.Subquery, exp.SubqueryPredicate), "subqueries are not allowed"),
    (exp.Window, "window functions (OVER) are not allowed"),
    (exp.Filter, "aggregate FILTER clauses are not allowed"),
    ((exp.Placeholder, exp.Parameter, exp.SessionParameter), "placeholders and parameters are not allowed"),
    (exp.Star, "'*' is not allowed"),
    (exp.Table, "tables are not allowed"),
    (exp.Alias, "aliases are not allowed"),
    (exp.TryCast, "TRY_CAST is not allowed: use CAST"),
    (exp.IntDiv, "integer division '//' is not allowed: use '/', which divides exactly"),
    ((exp.NullSafeEQ, exp.NullSafeNEQ), "IS [NOT] DISTINCT FROM is not allowed: use IS NULL and ="),
    (exp.ILike, "ILIKE is not allowed: compare LOWER(x) with LIKE"),
    (exp.Escape, "LIKE ... ESCAPE is not allowed"),
    (exp.Bracket, "subscripts are not allowed"),
    (exp.Dot, "qualified names are not allowed"),
    (exp.Array, "lists are not allowed"),
    (exp.Struct, "structs are not allowed"),
    (exp.Lambda, "lambdas are not allowed"),
    (exp.Interval, "intervals are not allowed"),
    (exp.Tuple, "row values are not allowed"),
    (exp.Collate, "COLLATE is not allowed"),
)
_QUERY_WORDS = frozenset({TokenType.SELECT, TokenType.WITH, TokenType.FROM, TokenType.VALUES})


def _refusal(node: exp.Expr, code: str) -> str:
    """Why ``node`` is not on the allow-list, naming it."""
    if isinstance(node, _STATEMENTS):
        return f"statements are not allowed: {_first_word(node, code)}"
    if isinstance(node, exp.AggFunc):
        return f"aggregate function {_written_name(node, code)} is not allowed: a UDF computes one value per row"
    for kinds, message in _NOT_ALLOWED:
        if isinstance(node, kinds):
            return message
    if isinstance(node, exp.Func):
        return f"unknown function {_written_name(node, code)}"
    if node.parent is None and not isinstance(node, exp.Condition):
        return f"statements are not allowed: {_first_word(node, code)}"
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", type(node).__name__).lower()
    return f"{words} is not allowed"


def _refusal_start(node: exp.Expr, tokens: Sequence[Token]) -> int | None:
    """Where to point for a refused node whose keywords sqlglot keeps no position of: the statement's first token,
    a query's first SELECT / WITH / FROM / VALUES; None to look in the node."""
    if isinstance(node, exp.Query | exp.Subquery | exp.SubqueryPredicate):
        return next((t.start for t in tokens if t.token_type in _QUERY_WORDS), None)
    if isinstance(node, _STATEMENTS) or (node.parent is None and not isinstance(node, exp.Condition)):
        return tokens[0].start
    return None


def _first_word(node: exp.Expr, code: str) -> str:
    if type(node) is exp.Command and isinstance(node.this, str):
        return node.this.upper()
    match = re.match(r"\s*([A-Za-z_]+)", code)
    return match.group(1).upper() if match else type(node).__name__.upper()


__all__ = ["MAX_CODE", "MAX_DEPTH", "to_expression"]
