"""Runs untrusted UDF code in limited worker processes: later issues."""
