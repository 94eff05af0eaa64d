"""Recognise UDFs that are one expression over their parameters and translate them to the engine's expression language.

A UDF whose body is a single expression built from arithmetic, comparisons and conditionals need not run row by row in
a sandbox worker: ``python_inline`` / ``javascript_inline`` give the expression as engine text (Python syntax, see
``engine.expr.compiler``) over the parameter names, or None when the code is not of that shape. Neither runs the code;
neither raises, whatever the input: text longer than ``MAX_LENGTH`` characters, or nested more than ``MAX_DEPTH``
levels deep (the engine's own limit), is None, and no recursion goes deeper than that.

Python: the module is exactly one ``def NAME(p1, p2, ...):`` whose parameters are ``parameters`` in order (no
defaults, ``*args``, ``**kwargs``, keyword-only or positional-only parameters, no decorators; annotations are ignored,
they are not evaluated), and whose body is an optional docstring and one ``return EXPR``. ``EXPR`` holds only
parameter names, constants (int in 64 bits, finite float, bool, str, None), ``+ - * / // % **``, unary ``- + not``,
``== != < <= > >=`` (chains too), ``and`` / ``or`` and ``x if c else y``. The engine reads these with Python's syntax,
so the text is ``EXPR`` itself, unparsed.

JavaScript: the code is exactly ``function NAME(p1, p2, ...) { return EXPR; }`` (the ``;`` optional, whitespace
anywhere but between ``return`` and ``EXPR``, where a line break would return undefined), nothing before or after.
``EXPR`` holds parameter names, decimal number literals (``12``, ``1.5``, ``.5``, ``1e-3``), strings in single or
double quotes with the escapes ``\\\\ \\' \\" \\n \\t``, ``true false null``, parentheses, ``+ - * /``, unary ``- + !``,
``=== !== < <= > >=``, ``&& ||`` and ``c ? a : b``, with JavaScript's precedence. The text is fully parenthesised:
``===`` is ``==``, ``!==`` ``!=``, ``&&`` ``and``, ``||`` ``or``, ``!`` ``not``, ``c ? a : b`` ``(a if c else b)``,
``null`` ``None``, ``true`` / ``false`` ``True`` / ``False``, strings are Python literals. An integer literal of up
to 15 digits stays an int; other numbers become the float JavaScript reads. Anything else is None: ``%`` (JavaScript's
remainder truncates, the engine's floors), ``**``, loose ``==`` / ``!=``, comments, regular expressions, templates,
hex / octal / bigint literals, separators, other escapes, identifiers outside ASCII, ``$``, more statements.
Parameter names must be ASCII identifiers that are reserved neither in JavaScript nor in Python.

Semantics. The engine compiles the text with the parameters' declared types and inlines the UDF only if it compiles and
its type fits the declared return type (checked by the caller, not here). An inlined UDF then follows the expression
language's rules, not the source language's where they differ:

- a null argument gives null (no TypeError, no JavaScript coercion); ``and`` / ``or`` are Kleene; a null condition
  gives null rather than choosing the ``else`` branch;
- division by zero fails the cell (null and counted), where Python raises and JavaScript gives Infinity or NaN;
- ``and`` / ``or`` / ``not`` and conditions take bools only, where Python and JavaScript take any value and ``&&`` /
  ``||`` return an operand: such UDFs do not compile, so they are not inlined. So too JavaScript ``+`` mixing a
  string and a number, and comparisons between a bool and a number; ``+`` of two strings concatenates in both;
- JavaScript numbers are doubles, while a parameter declared ``int`` computes in 64-bit ints (overflow fails the
  cell); strings compare by code point, where JavaScript compares UTF-16 units (unlike only beyond U+FFFF).
"""

from __future__ import annotations

import ast
import keyword
import math
import re
from collections.abc import Callable, Sequence

MAX_LENGTH = 20_000
MAX_DEPTH = 64  # expression nodes on a path from the root, as engine.expr.compiler counts them

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def _names(parameters: object) -> tuple[str, ...] | None:
    """The parameter names as a tuple of distinct strings, or None."""
    if not isinstance(parameters, Sequence) or isinstance(parameters, str | bytes):
        return None
    names = tuple(parameters)
    if not all(isinstance(p, str) for p in names) or len(set(names)) != len(names):
        return None
    return names


def _fits(code: object, name: object) -> bool:
    return isinstance(code, str) and isinstance(name, str) and len(code) <= MAX_LENGTH


def _plain_text(s: str) -> bool:
    """Text that Arrow can hold: no lone surrogates."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Python.


def python_inline(code: str, name: str, parameters: Sequence[str]) -> str | None:
    """The engine text of ``def name(*parameters): return EXPR``, or None (see the module docstring).

    >>> python_inline("def f(price, rate):\\n    return price * (1 - rate)", "f", ["price", "rate"])
    'price * (1 - rate)'
    """
    names = _names(parameters)
    if names is None or not _fits(code, name):
        return None
    try:
        module = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError, Warning):  # warnings the filters made errors
        return None
    expr = _python_return(module, name, names)
    if expr is None or not _python_allowed(expr, frozenset(names)):
        return None
    try:
        return ast.unparse(expr)
    except (ValueError, RecursionError, MemoryError):
        return None


def _python_return(module: ast.Module, name: str, names: tuple[str, ...]) -> ast.expr | None:
    """The returned expression of the module's one function, if the module has that shape."""
    if len(module.body) != 1 or not isinstance(module.body[0], ast.FunctionDef):
        return None
    fn = module.body[0]
    if fn.name != name or fn.decorator_list or getattr(fn, "type_params", None) or not _python_plain_args(fn.args):
        return None
    if tuple(a.arg for a in fn.args.args) != names:
        return None
    body = fn.body[1:] if len(fn.body) == 2 and _is_docstring(fn.body[0]) else fn.body
    if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
        return None
    return body[0].value


def _python_plain_args(args: ast.arguments) -> bool:
    extras = (args.posonlyargs, args.kwonlyargs, args.kw_defaults, args.defaults)
    return args.vararg is None and args.kwarg is None and not any(extras)


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _python_allowed(root: ast.expr, names: frozenset[str]) -> bool:
    """Whether ``root`` holds only the allowed nodes, parameter names and constants, ``MAX_DEPTH`` deep at most."""
    stack: list[tuple[ast.expr, int]] = [(root, 1)]
    while stack:  # iterative, so the depth is measured before anything recurses
        node, depth = stack.pop()
        check = _PYTHON_NODES.get(type(node))
        children = None if check is None or depth > MAX_DEPTH else check(node, names)
        if children is None:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


_PyChildren = list[ast.expr] | None  # a node's operands, or None when the node is not allowed

_BINARY = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod)
_UNARY = (ast.USub, ast.UAdd, ast.Not)
_COMPARE = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _py_binop(node: ast.BinOp, names: frozenset[str]) -> _PyChildren:
    if isinstance(node.op, ast.Pow):
        # Only ``x ** n`` with a small literal n is exact in the expression language; otherwise it computes in
        # floats (``10 ** 10 ** 10`` is inf there, an OverflowError in Python), so it is left to the sandbox.
        n = node.right
        small = isinstance(n, ast.Constant) and type(n.value) is int and 0 <= n.value <= 64
        return [node.left] if small else None
    return [node.left, node.right] if isinstance(node.op, _BINARY) else None


def _py_unaryop(node: ast.UnaryOp, names: frozenset[str]) -> _PyChildren:
    return [node.operand] if isinstance(node.op, _UNARY) else None


def _py_compare(node: ast.Compare, names: frozenset[str]) -> _PyChildren:
    return [node.left, *node.comparators] if all(isinstance(op, _COMPARE) for op in node.ops) else None


def _py_boolop(node: ast.BoolOp, names: frozenset[str]) -> _PyChildren:
    return list(node.values)


def _py_ifexp(node: ast.IfExp, names: frozenset[str]) -> _PyChildren:
    return [node.test, node.body, node.orelse]


def _py_name(node: ast.Name, names: frozenset[str]) -> _PyChildren:
    return [] if node.id in names and isinstance(node.ctx, ast.Load) else None


def _py_constant(node: ast.Constant, names: frozenset[str]) -> _PyChildren:
    v = node.value
    if v is None or type(v) is bool:
        return []
    if type(v) is int:
        return [] if _INT_MIN <= v <= _INT_MAX else None
    if type(v) is float:
        return [] if math.isfinite(v) else None
    if type(v) is str:
        return [] if _plain_text(v) else None
    return None  # bytes, complex, Ellipsis


_PYTHON_NODES: dict[type[ast.expr], Callable[..., _PyChildren]] = {
    ast.BinOp: _py_binop,
    ast.UnaryOp: _py_unaryop,
    ast.Compare: _py_compare,
    ast.BoolOp: _py_boolop,
    ast.IfExp: _py_ifexp,
    ast.Name: _py_name,
    ast.Constant: _py_constant,
}


# JavaScript: a tokenizer, then a Pratt parser whose every recursion is one level of MAX_DEPTH.


def javascript_inline(code: str, name: str, parameters: Sequence[str]) -> str | None:
    """The engine text of ``function name(...parameters) { return EXPR; }``, or None (see the module docstring).

    >>> javascript_inline("function f(a, b) { return a > b ? a - b : 0; }", "f", ["a", "b"])
    '((a - b) if (a > b) else 0)'
    """
    names = _names(parameters)
    if names is None or not _fits(code, name) or not all(_js_identifier(n) for n in (name, *names)):
        return None
    try:
        tokens = _tokenize(code)
        return _js_function(_Tokens(tokens), name, names)
    except (_Reject, RecursionError, MemoryError):
        return None


class _Reject(Exception):
    """The code is not of the inlinable shape."""


# Reserved in JavaScript, strict mode included (Python's keywords are checked too).
_JS_RESERVED = frozenset(
    (
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "debugger",
        "default",
        "delete",
        "do",
        "else",
        "enum",
        "export",
        "extends",
        "false",
        "finally",
        "for",
        "function",
        "if",
        "import",
        "in",
        "instanceof",
        "new",
        "null",
        "return",
        "super",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "typeof",
        "var",
        "void",
        "while",
        "with",
        "yield",
        "let",
        "static",
        "implements",
        "interface",
        "package",
        "private",
        "protected",
        "public",
        "await",
        "arguments",
        "eval",
    )
)
_JS_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def _js_identifier(name: str) -> bool:
    return bool(_JS_IDENTIFIER.fullmatch(name)) and name not in _JS_RESERVED and not keyword.iskeyword(name)


_TOKEN = re.compile(
    r"""(?P<space>[ \t\n\r\f\v]+)
    |(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<string>'(?:[^'\\\n\r]|\\[\\'"nt])*'|"(?:[^"\\\n\r]|\\[\\'"nt])*")
    |(?P<punctuator>>>>=|\.\.\.|===|!==|\*\*=|<<=|>>=|>>>|&&=|\|\|=|\?\?=|<!--
        |=>|==|!=|<=|>=|&&|\|\||\?\?|\?\.|\+\+|--|\*\*|<<|>>|//|/\*|[-+*/%&|^]=|.)""",
    re.VERBOSE | re.ASCII | re.DOTALL,
)
# Punctuators are read longest first, as JavaScript does (``a++b`` is not ``a + +b``), then checked against these.
_PUNCTUATORS = frozenset(
    ("(", ")", "{", "}", ",", ";", "?", ":", "+", "-", "*", "/", "!", "<", ">", "<=", ">=", "===", "!==", "&&", "||")
)
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


class _Token:
    __slots__ = ("kind", "newline", "text", "value")

    def __init__(self, kind: str, text: str, value: str, newline: bool) -> None:
        # kind: "number", "word", "string", "punctuator", "end"; value: the engine text of a literal, else the text
        self.kind, self.text, self.value, self.newline = kind, text, value, newline


def _tokenize(code: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, newline = 0, False
    while pos < len(code):
        match = _TOKEN.match(code, pos)
        if match is None:  # cannot happen: the punctuators' '.' takes any character
            raise _Reject
        kind, text, pos = match.lastgroup or "", match.group(), match.end()
        if kind == "space":
            newline = newline or "\n" in text or "\r" in text
            continue
        tokens.append(_Token(kind, text, _token_value(kind, text, code, pos), newline))
        newline = False
    tokens.append(_Token("end", "", "", newline))
    return tokens


def _token_value(kind: str, text: str, code: str, end: int) -> str:
    if kind == "number":
        return _number(text, code[end : end + 1])
    if kind == "string":
        value = _ESCAPE.sub(lambda m: _ESCAPES[m.group(1)], text[1:-1])
        if not _plain_text(value):
            raise _Reject
        return repr(value)
    if kind == "punctuator" and text not in _PUNCTUATORS:
        raise _Reject
    return text


def _number(text: str, after: str) -> str:
    """A decimal literal's engine text; ``after`` is the next character, which must not continue the literal."""
    if (after and (after.isalnum() or after in "_$\\")) or (len(text) > 1 and text[0] == "0" and text[1].isdigit()):
        raise _Reject  # 0x1f, 1n, 1_000, 3in, legacy octal 017
    if text.isdigit() and len(text) <= 15:
        return str(int(text))  # exact in a double, so the engine's int means the same
    value = float(text)
    if not math.isfinite(value):
        raise _Reject
    return repr(value)


class _Tokens:
    """A cursor over the tokens."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens, self.at = tokens, 0

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        if token.kind != "end":
            self.at += 1
        return token

    def expect(self, text: str) -> _Token:
        token = self.take()
        if token.kind not in ("word", "punctuator") or token.text != text:
            raise _Reject
        return token


def _js_function(ts: _Tokens, name: str, names: tuple[str, ...]) -> str:
    ts.expect("function")
    ts.expect(name)
    ts.expect("(")
    for i, parameter in enumerate(names):
        if i:
            ts.expect(",")
        ts.expect(parameter)
    ts.expect(")")
    ts.expect("{")
    ts.expect("return")
    if ts.peek().newline:
        raise _Reject  # ``return`` then a line break returns undefined
    text, _ = _js_expression(ts, frozenset(names), _TERNARY, 1)
    if ts.peek().text == ";" and ts.peek().kind == "punctuator":
        ts.take()
    ts.expect("}")
    if ts.peek().kind != "end":
        raise _Reject
    return text


_Node = tuple[str, int]  # engine text, fully parenthesised, and its depth in expression nodes

# Binary operators: JavaScript precedence (higher binds tighter), all left-associative, and the engine's spelling.
_JS_BINARY: dict[str, tuple[int, str]] = {
    "||": (2, "or"),
    "&&": (3, "and"),
    "===": (4, "=="),
    "!==": (4, "!="),
    "<": (5, "<"),
    "<=": (5, "<="),
    ">": (5, ">"),
    ">=": (5, ">="),
    "+": (6, "+"),
    "-": (6, "-"),
    "*": (7, "*"),
    "/": (7, "/"),
}
_TERNARY = 1
_JS_UNARY = {"-": "-", "+": "+", "!": "not "}
_JS_WORDS = {"true": "True", "false": "False", "null": "None"}


def _js_expression(ts: _Tokens, names: frozenset[str], min_precedence: int, level: int) -> _Node:
    """An expression of operators binding at least as tightly as ``min_precedence``; ``level`` counts the recursion."""
    left = _js_operand(ts, names, level)
    while True:
        token = ts.peek()
        if token.kind != "punctuator":
            return left
        if token.text == "?" and min_precedence <= _TERNARY:
            left = _js_conditional(ts, names, left, level)
            continue
        precedence, spelling = _JS_BINARY.get(token.text, (0, ""))
        if precedence < max(min_precedence, _TERNARY + 1):
            return left
        ts.take()
        right = _js_expression(ts, names, precedence + 1, level + 1)
        left = _node(f"({left[0]} {spelling} {right[0]})", left, right)


def _js_conditional(ts: _Tokens, names: frozenset[str], condition: _Node, level: int) -> _Node:
    """``condition ? a : b``, right-associative: either branch may be a whole conditional."""
    ts.expect("?")
    a = _js_expression(ts, names, _TERNARY, level + 1)
    ts.expect(":")
    b = _js_expression(ts, names, _TERNARY, level + 1)
    return _node(f"({a[0]} if {condition[0]} else {b[0]})", condition, a, b)


def _js_operand(ts: _Tokens, names: frozenset[str], level: int) -> _Node:
    """A unary operator and its operand, a parenthesised expression, a literal or a parameter."""
    if level > MAX_DEPTH:
        raise _Reject
    token = ts.take()
    if token.kind == "punctuator" and token.text in _JS_UNARY:  # binds tighter than every binary operator
        operand = _js_operand(ts, names, level + 1)
        return _node(f"({_JS_UNARY[token.text]}{operand[0]})", operand)
    if token.kind == "punctuator" and token.text == "(":
        inner = _js_expression(ts, names, _TERNARY, level + 1)
        ts.expect(")")
        return inner
    if token.kind in ("number", "string"):
        return token.value, 1
    if token.kind == "word" and token.text in _JS_WORDS:
        return _JS_WORDS[token.text], 1
    if token.kind == "word" and token.text in names:
        return token.text, 1
    raise _Reject


def _node(text: str, *children: _Node) -> _Node:
    depth = 1 + max(child[1] for child in children)
    if depth > MAX_DEPTH:
        raise _Reject
    return text, depth
