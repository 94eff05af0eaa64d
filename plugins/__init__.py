"""Registries and built-ins (function library, UDF languages, import/export formats, job types): later issues."""
