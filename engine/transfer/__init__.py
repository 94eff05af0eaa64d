"""Moving rows between tables and files: imports, exports and streams (issue 14).

- ``sources``: opening an import's source (an upload, ``file://`` under ``TESSERA_IMPORT_DIR``, ``http(s)://``
  through ``engine.fetch``), gzip and zip with a decompressed cap, bytes counted for progress;
- ``conform`` and ``rules``: a source batch made into the table's columns, and the validation rules, vectorised,
  every bad cell reported rather than raised;
- ``scan``: a table's rows at one version, shard page by shard page (host cursors), merged when ordered;
- ``encode``: rows as JSON, JSONL, CSV or Arrow IPC chunks for a stream;
- ``importer`` and ``exporter``: the ``data_import`` and ``data_export`` work, for the jobs and the Python client.

The formats themselves are plugins (``plugins.formats``, ``engine.registry.Format``).
"""
