"""Runs untrusted UDF code: worker processes with CPU, memory and wall-clock limits (``pool``, ``worker``), Python
under RestrictedPython (``restricted``), JavaScript under quickjs-ng (``js``), SQL translated through an allow-list
(``sql``), single-expression functions inlined (``inline``), and the engine's ``UdfRunner`` over them (``runner``).

Kept import-light: a worker process imports this package before it limits itself.
"""
