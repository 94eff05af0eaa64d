"""Frozen data only: column types, schemas, computed-column and UDF definitions, values that fit the types.

Imports nothing else from the engine but ``engine.errors``; every other layer builds on it.
"""
