"""The Python client: ``Database`` (connect, tables, batches), ``Table`` (a facade over the planner and the
coordinator), and what reads and writes return."""
