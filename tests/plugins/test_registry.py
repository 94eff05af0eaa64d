"""The plugin registry itself: the built-ins registered through entry points, conflicts named, plugins given directly
usable in expressions and UDF definitions, entry points read from real distributions on the path. Pure, no Ray."""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.errors import InvalidExpression, InvalidUdf, PluginError
from engine.expr import args
from engine.expr.compiler import compile_expression
from engine.expr.core import Compiled, StepResult, apply
from engine.expr.evaluate import evaluate
from engine.logical.udfs import checked, define
from engine.model.schema import build_schema
from engine.model.udfs import Udf
from engine.registry import KINDS, Registry, UdfLimits, current, hookimpl, install, uninstall

SCHEMA = build_schema("t", {"x": "float", "s": "string"}, None)
BUILT_IN_FUNCTIONS = {
    "tessera.math": "abs ceil coalesce exp floor log log10 max min pow round sqrt",
    "tessera.text": "concat contains endswith len lower replace startswith strip substr upper",
    "tessera.time": "day hour minute month second weekday year",
    "tessera.json": "json_get",
    "tessera.convert": "float int str",
}


def clamp(*a: Compiled) -> Compiled:
    """The example of ``engine.expr.args``' docstring."""
    args.count(a, 3, 3)
    x = args.number(a, 0)
    lo, hi = (args.constant(a, i, args.NUMBERS, "number") for i in (1, 2))
    return apply(
        lambda e: pc.min_element_wise(pc.max_element_wise(e, lo, skip_nulls=False), hi, skip_nulls=False), x.type, x
    )


class Clamp:
    @hookimpl
    def tessera_functions(self) -> Mapping[str, Any]:
        return {"clamp": clamp}


class OtherClamp:
    @hookimpl
    def tessera_functions(self) -> Mapping[str, Any]:
        return {"clamp": clamp}


class Echo:
    """A UDF language that returns its first argument: records what it was asked and whether it was closed."""

    inline_only = False

    def __init__(self, limits: UdfLimits) -> None:
        self.limits = limits
        self.checked: list[str] = []
        self.closed = 0

    def check(self, udf: Udf) -> str | None:
        self.checked.append(udf.name)
        return None

    def run(self, udf: Udf, arrays: Sequence[pa.Array], rows: int) -> StepResult:
        return StepResult(arrays[0], pa.nulls(rows, pa.string()))

    def close(self) -> None:
        self.closed += 1


class EchoLanguage:
    @hookimpl
    def tessera_udf_languages(self) -> Mapping[str, Any]:
        return {"echo": Echo}


@pytest.fixture
def use() -> Iterator[Any]:
    """``use(registry)`` installs it as this process's for the test; the one before comes back afterwards."""
    installed: list[tuple[Registry, Registry | None]] = []

    def install_for_test(registry: Registry) -> Registry:
        installed.append((registry, install(registry)))
        return registry

    yield install_for_test
    for registry, previous in reversed(installed):
        uninstall(registry, previous)


# -- the built-ins ---------------------------------------------------------------------------------------------
def test_the_built_ins_register_through_entry_points_like_any_plugin() -> None:
    described = current().describe()
    assert set(described) == set(KINDS) == {"functions", "udf_languages", "formats", "job_types", "media_operations"}
    by_plugin: dict[str, set[str]] = {}
    for entry in described["functions"]:
        assert entry["distribution"] is not None and entry["distribution"].startswith("tessera ")
        assert entry["module"] == "plugins.functions." + entry["plugin"].removeprefix("tessera."), entry
        by_plugin.setdefault(entry["plugin"], set()).add(entry["name"])
    assert by_plugin == {plugin: set(names.split()) for plugin, names in BUILT_IN_FUNCTIONS.items()}
    languages = {e["name"]: e["module"] for e in described["udf_languages"]}
    assert languages == dict.fromkeys(("javascript", "python", "sql"), "plugins.udf_languages")
    assert current().udf_languages() == ("javascript", "python", "sql")


def test_the_function_lookup_is_a_merged_dict_made_once() -> None:
    registry = current()
    assert registry.functions() is registry.functions()
    assert isinstance(registry.functions(), dict) and "json_get" in registry.functions()


def test_the_kinds_of_the_next_issues_register_the_same_way() -> None:
    class Later:
        @hookimpl
        def tessera_formats(self) -> Mapping[str, Any]:
            return {"csv": "a format"}

        @hookimpl
        def tessera_job_types(self) -> Mapping[str, Any]:
            return {"import": "a job type"}

        @hookimpl
        def tessera_media_operations(self) -> Mapping[str, Any]:
            return {"thumbnail": "a media operation"}

    registry = Registry(plugins=[Later()])
    assert (registry.formats(), registry.job_types()) == ({"csv": "a format"}, {"import": "a job type"})
    assert registry.media_operations() == {"thumbnail": "a media operation"}
    described = registry.describe()
    assert [e["name"] for e in described["formats"]] == ["csv"] and described["functions"] == []
    where = f"{__name__}.{Later.__qualname__}"  # a plugin given directly: named for its class, no distribution
    assert described["job_types"][0] == {"name": "import", "plugin": where, "module": where, "distribution": None}


# -- conflicts and broken plugins ------------------------------------------------------------------------------
def test_a_name_registered_by_two_plugins_names_both() -> None:
    with pytest.raises(PluginError) as info:
        Registry(plugins=[Clamp(), OtherClamp()])
    message = info.value.message
    assert "function 'clamp' is registered by two plugins" in message
    assert "test_registry.Clamp" in message and "test_registry.OtherClamp" in message
    assert info.value.fields["plugins"] == ["test_registry.Clamp", "test_registry.OtherClamp"]


def test_a_plugin_cannot_take_a_built_in_name() -> None:
    class Upper:
        @hookimpl
        def tessera_functions(self) -> Mapping[str, Any]:
            return {"upper": clamp}

    with pytest.raises(PluginError, match=r"function 'upper' is registered by two plugins: tessera\.text .* and"):
        Registry.load(plugins=[Upper()])


def test_broken_plugins_are_named() -> None:
    class Typo:
        @hookimpl
        def tessera_function(self) -> Mapping[str, Any]:  # not a hook: silence would hide the plugin's functions
            return {}

    class NotAMapping:
        @hookimpl
        def tessera_functions(self) -> Any:
            return [clamp]

    class BadName:
        @hookimpl
        def tessera_functions(self) -> Mapping[str, Any]:
            return {"not a name": clamp}

    class Raises:
        @hookimpl
        def tessera_udf_languages(self) -> Mapping[str, Any]:
            raise RuntimeError("no compiler here")

    cases = [
        (Typo(), "unknown hook 'tessera_function'"),
        (NotAMapping(), "tessera_functions() must return a mapping of name to function"),
        (BadName(), "function name 'not a name' is not a name an expression can call"),
        (Raises(), "tessera_udf_languages() failed: no compiler here"),
    ]
    for plugin, message in cases:
        with pytest.raises(PluginError, match=re.escape(message)) as info:
            Registry(plugins=[plugin])
        assert type(plugin).__qualname__ in info.value.message


# -- plugins given directly ------------------------------------------------------------------------------------
def test_a_plugins_function_compiles_in_expressions(use: Any) -> None:
    use(Registry.load(plugins=[Clamp()]))
    compiled = compile_expression("clamp(x, 0, 10) + abs(-1)", SCHEMA)
    result = evaluate(compiled, pa.table({"x": [-5.0, 5.0, 50.0, None], "s": ["a"] * 4}))
    assert result.values.to_pylist() == [1.0, 6.0, 11.0, None]
    with pytest.raises(
        InvalidExpression, match=re.escape("clamp(): argument 2 must be a constant number, got a column")
    ):
        compile_expression("clamp(x, x, 10)", SCHEMA)


def test_without_the_plugin_its_function_is_unknown() -> None:
    with pytest.raises(InvalidExpression, match=re.escape("'clamp' is not a known function")):
        compile_expression("clamp(x, 0, 10)", SCHEMA)


def test_udf_names_and_languages_come_from_the_registry(use: Any) -> None:
    now = "2024-01-01T00:00:00Z"
    with pytest.raises(InvalidUdf, match=re.escape("language must be one of javascript, python, sql, not 'echo'")):
        define(SCHEMA, "f", "echo", "x", [{"name": "x", "type": "float"}], "float", now=now)
    registry = use(Registry.load(plugins=[Clamp(), EchoLanguage()]))
    with pytest.raises(
        InvalidUdf, match=re.escape("language must be one of echo, javascript, python, sql, not 'ruby'")
    ):
        define(SCHEMA, "f", "ruby", "x", [], "float", now=now)
    with pytest.raises(InvalidUdf, match="'clamp' is a built-in function"):
        define(SCHEMA, "clamp", "echo", "x", [], "float", now=now)
    udf = checked(define(SCHEMA, "f", "echo", "x", [{"name": "x", "type": "float"}], "float", now=now))
    assert udf.language == "echo" and udf.inline is None
    echo = registry.language("echo")
    assert isinstance(echo, Echo) and echo.checked == ["f"] and echo.limits == registry.limits


def test_languages_are_made_once_when_needed_and_closed_with_the_registry() -> None:
    registry = Registry(plugins=[EchoLanguage()], limits=UdfLimits(cpu_seconds=0.5))
    echo = registry.language("echo")
    assert registry.language("echo") is echo and isinstance(echo, Echo) and echo.limits.cpu_seconds == 0.5
    with pytest.raises(
        PluginError, match=re.escape("no UDF language 'ruby' is registered in this process (registered: echo)")
    ):
        registry.language("ruby")
    registry.close()
    assert echo.closed == 1
    again = registry.language("echo")  # after close, made anew when something still needs it
    assert again is not echo


def test_install_and_uninstall_nest() -> None:
    first, second = Registry(), Registry()
    before = install(first)
    try:
        assert current() is first
        previous = install(second)
        assert previous is first and current() is second
        uninstall(first, before)  # not current: nothing changes
        assert current() is second
        uninstall(second, previous)
        assert current() is first
    finally:
        uninstall(first, before)
    assert current() is before or before is None


# -- entry points of real distributions ------------------------------------------------------------------------
def distribution(root: Path, name: str, entry_points: dict[str, str], module: str | None = None) -> None:
    """A minimal installed distribution in ``root`` (what pip writes: METADATA and entry_points.txt)."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[tessera]\n{lines}\n")
    if module is not None:
        (root / f"{next(iter(entry_points.values()))}.py").write_text(textwrap.dedent(module))


def test_entry_points_of_installed_packages_are_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = """
        from engine.expr import args
        from engine.expr.core import apply
        from engine.registry import hookimpl
        import pyarrow.compute as pc

        def double(*a):
            args.count(a, 1, 1)
            x = args.number(a, 0)
            return apply(lambda e: pc.multiply_checked(e, 2), x.type, x)

        @hookimpl
        def tessera_functions():
            return {"double": double}
    """
    distribution(tmp_path, "tessera-double", {"double": "tessera_double_fn"}, module)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry.load()
    [entry] = [e for e in registry.describe()["functions"] if e["name"] == "double"]
    assert entry == {
        "name": "double",
        "plugin": "double",
        "module": "tessera_double_fn",
        "distribution": "tessera-double 1.0",
    }
    monkeypatch.delitem(sys.modules, "tessera_double_fn")


def test_two_packages_with_one_entry_point_name_are_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    distribution(tmp_path / "a", "tessera-one", {"same": "module_one"})
    distribution(tmp_path / "b", "tessera-two", {"same": "module_two"})
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    with pytest.raises(PluginError, match="two tessera plugins are named 'same'") as info:
        Registry.load()
    assert "tessera-one 1.0" in info.value.message and "tessera-two 1.0" in info.value.message


def test_the_same_distribution_found_twice_is_loaded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An editable install's metadata and the egg-info in its source tree name the same entry points."""
    module = """
        from engine.registry import hookimpl

        @hookimpl
        def tessera_functions():
            return {"same_again": len}
    """
    distribution(tmp_path / "a", "tessera-twice", {"twice": "tessera_twice_fn"}, module)
    distribution(tmp_path / "b", "tessera-twice", {"twice": "tessera_twice_fn"})
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    entries = [e for e in Registry.load().describe()["functions"] if e["name"] == "same_again"]
    assert [e["plugin"] for e in entries] == ["twice"]
    monkeypatch.delitem(sys.modules, "tessera_twice_fn")


def test_an_entry_point_that_does_not_import_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    distribution(tmp_path, "tessera-broken", {"broken": "tessera_no_such_module"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        PluginError,
        match=re.escape("cannot load the tessera plugin broken = tessera_no_such_module (tessera-broken 1.0)"),
    ):
        Registry.load()
