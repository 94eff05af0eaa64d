"""Registries and built-ins (import/export formats, job types): later issues. The function library lives in
``engine.functions`` (the expression compiler needs it) and the UDF languages in ``sandbox``."""
