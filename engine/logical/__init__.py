"""Plans are data: what a write or read means for each shard, decided before anything runs (routing by key hash,
partitioning of rows, ordering), and the validation of schema changes (computed columns, UDFs)."""
