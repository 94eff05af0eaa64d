"""Runs untrusted UDF code: worker processes with CPU, memory and wall-clock limits (``pool``, ``worker``), Python
under RestrictedPython (``restricted``), JavaScript under quickjs-ng (``js``), SQL translated through an allow-list
(``sql``), single-expression functions inlined (``inline``), and the runner of Python and JavaScript UDFs over them
(``runner``), which the UDF-language plugins (``plugins.udf_languages``) use.

Kept import-light: a worker process imports this package before it limits itself.
"""
