"""The built-in UDF languages, registered through the plugin registry as any other plugin's would be.

- ``python`` and ``javascript`` are checked and run in the sandbox's worker processes (``sandbox.runner``). Both
  languages of one registry share one ``SandboxRunner``, so a process (a shard host, the server) keeps one pool of
  workers, started when a UDF first needs it and stopped with the registry (``Registry.close``).
- ``sql`` is only ever translated into the expression language (``sandbox.sql``, an allow-list over sqlglot's tree):
  it never runs, so a definition whose translation does not fit its declared types is refused when registered.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence

import pyarrow as pa

from engine.errors import UdfCompileError
from engine.expr.core import StepResult
from engine.model.udfs import Udf
from engine.registry import UdfLanguage, UdfLanguageFactory, UdfLimits, hookimpl
from sandbox.runner import SandboxRunner


class _SharedSandbox:
    """The one runner (and worker pool) behind the python and javascript languages of one registry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runner: SandboxRunner | None = None

    def factory(self, name: str) -> UdfLanguageFactory:
        def make(limits: UdfLimits) -> UdfLanguage:
            return SandboxLanguage(name, self.runner(limits))

        return make

    def runner(self, limits: UdfLimits) -> SandboxRunner:
        with self._lock:
            if self._runner is None:
                self._runner = SandboxRunner(**dataclasses.asdict(limits))
            return self._runner


class SandboxLanguage:
    """Python or JavaScript, through the shared runner."""

    inline_only = False

    def __init__(self, name: str, runner: SandboxRunner) -> None:
        self.name = name
        self.runner = runner

    def check(self, udf: Udf) -> str | None:
        return self.runner.check(udf)

    def run(self, udf: Udf, arrays: Sequence[pa.Array], rows: int) -> StepResult:
        return self.runner.run(udf, arrays, rows)

    def close(self) -> None:
        self.runner.close()  # the other language's too: they share the pool, and the registry closes both


class SqlLanguage:
    """SQL expressions, translated when registered; the translation is what computes."""

    inline_only = True

    def __init__(self, limits: UdfLimits) -> None:
        del limits  # nothing runs, so nothing to limit

    def check(self, udf: Udf) -> str | None:
        # Imported here: only the process registering UDFs needs sqlglot (a third of a second to import).
        from sandbox.sql import to_expression

        # With the declared types, so that a '+' of strings is refused: SQL's '+' adds numbers, the engine's joins.
        return to_expression(udf.code, {p.name: p.type for p in udf.parameters})

    def run(self, udf: Udf, arrays: Sequence[pa.Array], rows: int) -> StepResult:
        # checked() keeps a SQL UDF only with its translation, which calls compile to instead of running it.
        raise UdfCompileError(f"SQL UDF '{udf.name}' has no translation to compute with", line=1, col=1, language="sql")

    def close(self) -> None:
        pass


@hookimpl
def tessera_udf_languages() -> Mapping[str, UdfLanguageFactory]:
    # Called once per registry: each registry gets its own shared sandbox, closed with it.
    sandbox = _SharedSandbox()
    return {"python": sandbox.factory("python"), "javascript": sandbox.factory("javascript"), "sql": SqlLanguage}
