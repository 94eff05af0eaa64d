"""Tessera's built-in plugins, registered through the plugin registry (``engine.registry``) by entry points in
``pyproject.toml``, exactly as a third-party package registers its own:

- ``functions/``: the expression functions, one family per module (``math``, ``text``, ``time``, ``json``,
  ``convert``);
- ``udf_languages``: ``python`` and ``javascript`` (run in the sandbox's worker processes) and ``sql`` (translated).

Import/export formats, job types and media operations are registered here from the next issues.
"""
