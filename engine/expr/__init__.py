"""The expression language: compiled expressions and their steps (``core``), the compiler, the argument helpers of
functions (``args``: the functions themselves are plugins, ``engine.registry``), filters (``where``), evaluation over
Arrow tables, aggregates and windows, and calls of UDFs."""
