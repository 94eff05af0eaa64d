"""The plugin registry: how expression functions and UDF languages reach the engine (and, from the next issues,
import/export formats, job types and media operations).

The engine owns the extension interface, as pytest owns its hook specifications: this module defines the pluggy
markers (project ``"tessera"``), one hook per kind (``Plugin``) and what each kind's values are. The plugins live
elsewhere. Tessera's own built-ins (``plugins/``) and a third-party package register the same way, with an entry
point in the group ``tessera`` that names a module holding ``@hookimpl`` functions::

    # pyproject.toml of the package
    [project.entry-points.tessera]
    example = "tessera_plugin_example"

    # tessera_plugin_example/__init__.py
    from engine.registry import hookimpl

    @hookimpl
    def tessera_functions():
        return {"reverse": reverse}  # see engine.expr.args for how to write one

``Registry.load()`` registers every such entry point; ``Registry(plugins=[...])`` takes plugins directly (tests).
Every kind is merged once, when the registry is built, so a conflict shows at start-up and the compiler's function
lookup stays a dict lookup. A name that two plugins register is a ``PluginError`` naming both: there is no override
order, so what a name means never depends on which packages happen to be installed or which loads first.

Each process has one current registry (``current()``): loaded from the entry points when first needed, or installed
by the composition root (``Database``, each shard host) with ``install``. The registry owns what its UDF languages
start (sandbox worker pools), and ``Registry.close()`` closes them.

This module imports none of the engine's layers at run time (an import-linter contract), so every layer may use it.
"""

from __future__ import annotations

import importlib.metadata
import keyword
import re
import threading
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import pluggy

from engine.config import Settings
from engine.errors import PluginError

if TYPE_CHECKING:
    import pyarrow as pa

    from engine.expr.core import Function, StepResult
    from engine.model.udfs import Udf

PROJECT = "tessera"
GROUP = "tessera"  # the entry-point group plugins declare
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- what the kinds are ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UdfLimits:
    """What a UDF language may spend per call of a sandbox worker (one batch of at most ``batch_rows`` rows, one
    registration check or one execute): the ``udf_*`` settings, handed to every language factory."""

    cpu_seconds: float = 2.0
    wall_seconds: float = 5.0
    memory_mb: int = 512  # address space of a worker process
    workers: int = 2  # worker processes per process that runs UDFs
    batch_rows: int = 16_384

    @classmethod
    def of(cls, settings: Settings) -> UdfLimits:
        return cls(**settings.udf_limits())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class UdfLanguage(Protocol):
    """A language UDFs are written in: ``check`` runs when a UDF is registered, ``run`` whenever one computes."""

    # True for a language that is only ever translated into the expression language (SQL): a definition whose
    # translation does not fit its declared types is refused when registered, as it has no other way to run.
    inline_only: bool

    def check(self, udf: Udf) -> str | None:
        """Compile ``udf``; return the expression it is equivalent to (inlined) or None; raise UdfCompileError."""

    def run(self, udf: Udf, arrays: Sequence[pa.Array], rows: int) -> StepResult:
        """``udf`` over ``rows`` rows of ``arrays`` (one per parameter, of the parameters' Arrow types).

        Returns values of the return type's Arrow type, and a reason where a row failed (null elsewhere).
        Raises UdfLimitExceeded when a limit was hit.
        """

    def close(self) -> None:
        """Stop what the language started (worker processes). It may be used again afterwards and start anew."""


UdfLanguageFactory = Callable[[UdfLimits], UdfLanguage]


class Format(Protocol):
    """An import/export format (``plugins.formats``): Arrow batches in and out of a byte stream.

    ``seekable`` says that ``read`` seeks in its source (Parquet's footer, an .xlsx's zip directory): an import
    spools a source that cannot seek (a download) to a temporary file first. Options are checked when ``read`` or
    ``write`` is called, before any byte is read or written: an unknown option, or a bad value, is a
    ``FormatError`` naming the option. A source that is not what the format says is a ``SourceError`` naming the
    line or record.
    """

    media_type: str  # e.g. "text/csv"
    extensions: tuple[str, ...]  # (".csv", ".tsv")
    seekable: bool

    def read(self, source: BinaryIO, options: Mapping[str, Any], batch_size: int) -> Iterator[pa.RecordBatch]:
        """Batches of at most ``batch_size`` rows, holding a bounded amount of the source in memory (a format that
        cannot stream says so and caps what it reads: Excel's readers load a whole sheet).

        Types are the reader's inferred ones (or ``options["schema"]``, where the format takes it). A reader that
        infers batch by batch (JSON, JSONL) may, in a later batch, add columns or give an all-null column a type;
        it never changes a column's type.
        """

    def write(
        self, batches: Iterable[pa.RecordBatch], schema: pa.Schema, sink: BinaryIO, options: Mapping[str, Any]
    ) -> None:
        """Write ``batches`` (of ``schema``: what is written when there are none) to ``sink`` as they come. CSV and
        Excel text cells starting with = + - @ (or tab, carriage return) get a leading ``'`` against formula
        injection unless ``options["escape_formulas"]`` is false; Excel starts a new sheet past 1,048,576 rows."""


class JobContext(Protocol):
    """What a running job's handler gets (``engine.jobs.context.RunContext``)."""

    job_id: str
    job_type: str
    parameters: Any  # the job's parameters as submitted (JSON); the handler checks them
    attempt: int  # 1 for the first run, more after a restart re-queued it
    db: Any  # the engine client (``engine.Database``) of the worker that runs it

    def progress(self, pct: float, message: str | None = None) -> None:
        """Report progress (0..100; a lower value than before is ignored); written at most a few times a second."""

    def log(self, line: str) -> None:
        """Append a line to the job's log (the last 1,000 lines, each at most 2 KB, are kept)."""

    def cancelled(self) -> bool:
        """True once the job should stop: cancelled, timed out, or taken over after this worker was lost."""

    def check_cancelled(self) -> None:
        """Raise ``engine.errors.JobCancelled`` if ``cancelled()``."""


class JobType(Protocol):
    """A kind of background job (``engine.jobs``): a contract job type (``table_recompute``, ``data_import`` ...)
    or, under any other name, a ``custom`` job's ``parameters.type``. ``run`` checks its parameters (raising
    ``engine.errors.JobParameterError``), checks ``job.cancelled()`` between steps, and returns its result (JSON).
    ``retry_safe`` says whether a run interrupted by a crash may run again from the start."""

    def run(self, job: JobContext) -> Any: ...

    def retry_safe(self, parameters: Any) -> bool: ...


class MediaOperation(Protocol):
    """An operation on media values (used from the next issues): whole columns in, a column out."""

    def __call__(self, arrays: list[pa.Array]) -> pa.Array: ...


class Plugin(Protocol):
    """The hooks: a plugin implements any of them, each marked ``@hookimpl``, each returning ``{name: value}``."""

    @hookspec
    def tessera_functions(self) -> Mapping[str, Function]:
        """Expression functions (``engine.expr.core.Function``): called with the compiled arguments at compile time."""

    @hookspec
    def tessera_udf_languages(self) -> Mapping[str, UdfLanguageFactory]:
        """UDF languages: factories called once per registry, with the sandbox limits, when first needed."""

    @hookspec
    def tessera_formats(self) -> Mapping[str, Format]:
        """Import/export formats by name (``csv``, ``json``, ``jsonl``, ``parquet``, ``excel`` are the built-ins in
        ``plugins.formats``): each value a ``Format``, used by the import and export jobs."""

    @hookspec
    def tessera_job_types(self) -> Mapping[str, JobType]:
        """Job types: a contract type's handler under its name, or a ``custom`` job's ``parameters.type``."""

    @hookspec
    def tessera_media_operations(self) -> Mapping[str, MediaOperation]:
        """Media operations (used from the next issues)."""


# The kinds as ``describe`` and ``tessera plugins`` name them, with their hooks and what one of them is called.
KINDS: dict[str, tuple[str, str]] = {
    "functions": ("tessera_functions", "function"),
    "udf_languages": ("tessera_udf_languages", "UDF language"),
    "formats": ("tessera_formats", "format"),
    "job_types": ("tessera_job_types", "job type"),
    "media_operations": ("tessera_media_operations", "media operation"),
}
_LANGUAGE_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Provided:
    """One registered name: its value and who provides it (``distribution`` is None for a plugin given directly)."""

    name: str
    value: Any
    plugin: str
    module: str
    distribution: str | None


# -- the registry ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Loaded:
    """A plugin loaded from an entry point: the entry point's name and its distribution (``"tessera 0.1.0"``)."""

    plugin: object
    name: str
    distribution: str


class Registry:
    """The plugins of one process, merged per kind. Thread-safe: the merged kinds never change after ``__init__``.

    ``plugins`` are registered under their module's (or class's) name, after the ``loaded`` entry points.
    """

    def __init__(
        self, plugins: Iterable[object] = (), *, limits: UdfLimits | None = None, loaded: Sequence[Loaded] = ()
    ) -> None:
        self.limits = limits or UdfLimits()
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(Plugin)
        self._distributions: dict[str, str] = {}  # plugin name -> "distribution version"
        for entry in loaded:
            self._register(entry.plugin, entry.name, entry.distribution)
        for plugin in plugins:
            self._register(plugin, _module(plugin))
        try:
            self._pm.check_pending()  # a @hookimpl whose name is no hook (a typo) is an error, not silence
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {self._pm.get_name(exc.plugin)}: {exc}") from None
        self._kinds = {kind: self._merge(kind) for kind in KINDS}
        self._functions: dict[str, Function] = {n: p.value for n, p in self._kinds["functions"].items()}
        self._languages: dict[str, UdfLanguage] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, limits: UdfLimits | None = None, *, plugins: Iterable[object] = ()) -> Registry:
        """The plugins of the ``tessera`` entry points of every installed distribution, then ``plugins``; the
        limits default to the ``TESSERA_UDF_*`` variables'.

        The entry points are read here rather than by pluggy's ``load_setuptools_entrypoints``, which skips an entry
        point whose name is taken without a word and cannot say which entry point failed to import.
        """
        loaded = [Loaded(_load(ep, distribution), ep.name, distribution) for ep, distribution in _entry_points()]
        if not any(entry.distribution.startswith("tessera ") for entry in loaded):
            raise PluginError(
                "Tessera's built-in plugins are not registered: the installed 'tessera' distribution declares no "
                f"'{GROUP}' entry points (reinstall it: pip install -e .)"
            )
        return cls(plugins, limits=limits or UdfLimits.of(Settings.from_env()), loaded=loaded)

    def _register(self, plugin: object, name: str, distribution: str | None = None) -> None:
        try:
            self._pm.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginError(f"cannot register the plugin {name}: {exc}", plugin=name) from None
        if distribution is not None:
            self._distributions[name] = distribution

    def _merge(self, kind: str) -> dict[str, Provided]:
        """Every plugin's answer to the kind's hook, one plugin at a time so that each name's provider is known."""
        hook, singular = KINDS[kind]
        merged: dict[str, Provided] = {}
        for impl in getattr(self._pm.hook, hook).get_hookimpls():
            plugin = impl.plugin_name
            try:
                provided = impl.function()
            except Exception as exc:
                raise PluginError(f"plugin {plugin}: {hook}() failed: {exc}", plugin=plugin) from exc
            if not isinstance(provided, Mapping):
                raise PluginError(f"plugin {plugin}: {hook}() must return a mapping of name to {singular}")
            for name, value in provided.items():
                _check(kind, singular, name, value, plugin)
                other = merged.get(name)
                if other is not None:
                    raise PluginError(
                        f"{singular} '{name}' is registered by two plugins: {other.plugin} ({other.module}) and "
                        f"{plugin} ({_module(impl.plugin)})",
                        name=name,
                        plugins=[other.plugin, plugin],
                    )
                merged[name] = Provided(name, value, plugin, _module(impl.plugin), self._distributions.get(plugin))
        return dict(sorted(merged.items()))

    # -- the kinds ---------------------------------------------------------------------------------------------
    def functions(self) -> Mapping[str, Function]:
        """The expression functions by name (what the compiler looks a call up in, after the table's UDFs)."""
        return self._functions

    def udf_languages(self) -> tuple[str, ...]:
        """The names of the registered UDF languages, sorted."""
        return tuple(self._kinds["udf_languages"])

    def language(self, name: str) -> UdfLanguage:
        """The UDF language ``name``, made by its factory when first asked for; PluginError if none is registered."""
        found = self._languages.get(name)
        if found is not None:
            return found
        with self._lock:
            found = self._languages.get(name)
            if found is None:
                provided = self._kinds["udf_languages"].get(name)
                if provided is None:
                    known = ", ".join(self.udf_languages()) or "none"
                    raise PluginError(f"no UDF language '{name}' is registered in this process (registered: {known})")
                found = provided.value(self.limits)
                self._languages[name] = found
            return found

    def formats(self) -> Mapping[str, Format]:
        return {n: p.value for n, p in self._kinds["formats"].items()}

    def job_types(self) -> Mapping[str, JobType]:
        return {n: p.value for n, p in self._kinds["job_types"].items()}

    def media_operations(self) -> Mapping[str, MediaOperation]:
        return {n: p.value for n, p in self._kinds["media_operations"].items()}

    def describe(self) -> dict[str, list[dict[str, str | None]]]:
        """What is registered, per kind, with the plugin, module and distribution that provide each name."""
        return {
            kind: [
                {"name": p.name, "plugin": p.plugin, "module": p.module, "distribution": p.distribution}
                for p in provided.values()
            ]
            for kind, provided in self._kinds.items()
        }

    def close(self) -> None:
        """Close the UDF languages made so far (their worker processes stop); they are made again if needed."""
        with self._lock:
            languages, self._languages = list(self._languages.values()), {}
        for language in languages:
            language.close()


def _check(kind: str, singular: str, name: object, value: object, plugin: str) -> None:
    if not isinstance(name, str) or not name:
        raise PluginError(f"plugin {plugin}: a {singular} name must be a non-empty string, not {name!r}")
    if kind == "functions" and (not name.isidentifier() or keyword.iskeyword(name)):
        raise PluginError(f"plugin {plugin}: function name {name!r} is not a name an expression can call")
    if kind == "udf_languages" and not _LANGUAGE_NAME.fullmatch(name):
        raise PluginError(f"plugin {plugin}: UDF language name {name!r} must be lowercase letters, digits and _")
    if kind in ("functions", "udf_languages") and not callable(value):
        raise PluginError(f"plugin {plugin}: {singular} '{name}' is not callable")


def _entry_points() -> list[tuple[importlib.metadata.EntryPoint, str]]:
    """The ``tessera`` entry points of every distribution on the path, each with its distribution's name and version.

    One distribution may be found twice (an editable install's metadata and the egg-info in its source tree): an
    entry point seen again with the same target is the same one. The same name with another target is an error.
    """
    found: dict[str, tuple[importlib.metadata.EntryPoint, str]] = {}
    for dist in importlib.metadata.distributions():
        label = f"{dist.metadata['Name']} {dist.version}"
        for entry_point in dist.entry_points:
            if entry_point.group != GROUP:
                continue
            earlier = found.get(entry_point.name)
            if earlier is None:
                found[entry_point.name] = (entry_point, label)
            elif earlier[0].value != entry_point.value:
                raise PluginError(
                    f"two tessera plugins are named '{entry_point.name}': {earlier[0].value} ({earlier[1]}) and "
                    f"{entry_point.value} ({label})",
                    plugins=[earlier[0].value, entry_point.value],
                )
    return list(found.values())


def _load(entry_point: importlib.metadata.EntryPoint, distribution: str) -> object:
    try:
        return entry_point.load()
    except Exception as exc:
        raise PluginError(
            f"cannot load the tessera plugin {entry_point.name} = {entry_point.value} ({distribution}): {exc}",
            plugin=entry_point.name,
        ) from exc


def _module(plugin: object) -> str:
    """Where a plugin's code is: a module's name, or a class's (an instance's class's) dotted path."""
    if isinstance(plugin, type):
        return f"{plugin.__module__}.{plugin.__qualname__}"
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    return f"{type(plugin).__module__}.{type(plugin).__qualname__}"


# -- the registry of this process --------------------------------------------------------------------------------
class _Current:
    """The process's registry; read without the lock (an attribute read), replaced under it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.registry: Registry | None = None


_CURRENT = _Current()


def current() -> Registry:
    """This process's registry: the installed one, or loaded from the entry points (and the ``TESSERA_UDF_*``
    limits) when first needed."""
    registry = _CURRENT.registry
    if registry is not None:
        return registry
    with _CURRENT.lock:
        if _CURRENT.registry is None:
            _CURRENT.registry = Registry.load()
        return _CURRENT.registry


def install(registry: Registry | None) -> Registry | None:
    """Make ``registry`` this process's (None: load one from the entry points when next needed); returns the
    registry it replaces, for ``uninstall``."""
    with _CURRENT.lock:
        previous, _CURRENT.registry = _CURRENT.registry, registry
        return previous


def uninstall(registry: Registry, previous: Registry | None) -> None:
    """Undo ``install(registry)`` if ``registry`` is still this process's: ``previous`` is put back. Another
    registry installed meanwhile stays (its owner undoes it)."""
    with _CURRENT.lock:
        if _CURRENT.registry is registry:
            _CURRENT.registry = previous
