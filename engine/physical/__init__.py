"""Running plans on Ray: shards (their state, writes, reads and log of small writes), the shard-host actors that
hold them, the coordinator that stages and commits across shards, and the runtime that starts the hosts."""
