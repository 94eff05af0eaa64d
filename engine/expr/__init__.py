"""The expression language: compiled expressions and their steps (``core``), the compiler, the function library,
filters (``where``), evaluation over Arrow tables, aggregates and windows, and calls of UDFs."""
