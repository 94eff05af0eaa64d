"""The built-in expression functions, one family per module, each module a plugin of its own (see the entry points
in ``pyproject.toml``).

Each function checks its argument count and types when the expression is compiled (a wrong call is an
``InvalidExpression`` naming the function and the argument, at that argument, through ``engine.expr.args``), infers
its result type, and computes with Arrow kernels, or polars where Arrow has none (``json_get``): nothing runs per row
in Python. Semantics follow Python where that is cheap; a null argument gives null unless said otherwise. A *failing*
cell is null, counted by ``evaluate``. Each module's docstring says what its functions do.
"""
