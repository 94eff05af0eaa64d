"""The checks made before parsing, on the code and its tokens, so that the parser only ever sees bounded input.

Refused here: code longer than ``MAX_CODE`` characters, nesting deeper than ``MAX_DEPTH`` levels (brackets and
CASE ... END), ``;`` (one expression only), comments, placeholders and parameters (``?``, ``:x``, ``$1``, ``@x``).
"""

from __future__ import annotations

from sqlglot.tokens import Token, TokenType

from sandbox.sql._common import MAX_CODE, MAX_DEPTH, SQLGLOT_DIALECT, clean, error

_PLACEHOLDERS = frozenset({TokenType.PLACEHOLDER, TokenType.PARAMETER})
_OPENERS = frozenset({TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE, TokenType.CASE})
_CLOSERS = frozenset({TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.END})


def precheck(code: str) -> list[Token]:
    """The tokens of ``code``, once its length and its tokens pass the limits; raises UdfCompileError."""
    if len(code) > MAX_CODE:
        raise error(code, MAX_CODE, f"the code is longer than {MAX_CODE} characters")
    tokens = _tokenize(code)
    _check_tokens(code, tokens)
    return tokens


def _tokenize(code: str) -> list[Token]:
    try:
        tokens = SQLGLOT_DIALECT.tokenize(code)
    except Exception as exc:  # sqlglot's TokenError, or whatever else it raises on garbage
        raise error(code, None, f"syntax error: {clean(str(exc))}") from None
    if not tokens:
        gap = _first_gap(code, tokens)
        raise error(code, gap, "the code is empty" if gap is None else "comments are not allowed")
    return tokens


def _check_tokens(code: str, tokens: list[Token]) -> None:
    gap = _first_gap(code, tokens)
    if gap is not None:
        found = code[gap : gap + 2]
        message = "comments are not allowed" if found in ("--", "/*") else f"unexpected text {found[:1]!r}"
        raise error(code, gap, message)
    depth = 0
    for i, token in enumerate(tokens):
        if token.comments:
            raise error(code, token.start, "comments are not allowed")
        if token.token_type == TokenType.SEMICOLON:
            raise error(code, token.start, "only one expression is allowed: found ';'")
        if token.token_type in _PLACEHOLDERS or _is_named_placeholder(tokens, i):
            raise error(code, token.start, f"placeholders and parameters are not allowed: found {token.text!r}")
        depth += (token.token_type in _OPENERS) - (token.token_type in _CLOSERS and depth > 0)
        if depth > MAX_DEPTH:
            raise error(code, token.start, f"the expression is nested more than {MAX_DEPTH} levels deep")


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
