"""The shard log: small writes kept in the catalog, folded into Lance in bulk.

A Lance commit costs 2-4 ms whatever its size (a data file, a manifest, a transaction file and a version hint), which
was most of a small transaction. So a write that adds and removes at most ``DELTA_ROWS`` rows is not committed to
Lance: the shard applies it in memory, and the catalog stores it as a ``Delta`` (the addresses of the rows removed,
the rows added) in the same SQLite transaction that publishes the new version. A shard's state at a version is a
Lance version (its *base*) plus the deltas logged since:

    version v   =   Lance base L_v   +   d_1 ... d_k   (the deltas of the versions after L_v was written, up to v)

A shard folds its pending deltas into one Lance commit (a new base) with the write that would make them more than
``DELTA_CHAIN``, with any larger write, before a compaction or a column change, and when maintenance finds it idle.
Rows a delta adds have no Lance address yet: they carry a provisional one (``VIRTUAL`` | n) until folded, so a later
write removes them by address like any other row. Rows with a Lance address always come first in a shard's table
(every write appends its rows at the end), so a fold writes the table's tail.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.model.delta import Delta

DELTA_ROWS = 256  # rows added plus rows removed: more, and the write goes to Lance
DELTA_CHAIN = 64  # deltas a shard keeps before folding them into Lance
VIRTUAL = np.uint64(1 << 63)  # the provisional address bit (a Lance address is fragment id << 32 | offset)
ADDRESSES = pa.uint64()


def is_virtual(addresses: np.ndarray) -> np.ndarray:
    return (addresses & VIRTUAL) != 0


def provisional(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.uint64) | VIRTUAL


def encode(gone: np.ndarray, rows: pa.Table) -> Delta:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    return Delta(np.ascontiguousarray(gone, dtype="<u8").tobytes(), sink.getvalue().to_pybytes())


def decode(delta: Delta) -> tuple[np.ndarray, pa.Table]:
    gone = np.frombuffer(delta.gone, dtype="<u8").astype(np.uint64)
    return gone, pa.ipc.open_stream(delta.rows).read_all()


def replay(table: pa.Table, address: str, deltas: list[tuple[np.ndarray, pa.Table]]) -> pa.Table:
    """``table`` after ``deltas`` (decoded, their rows in ``table``'s schema), in order: every delta's rows
    appended, then one filter for every removed address (no address is handed out twice between folds, so a
    row a later delta removed is found wherever it came from)."""
    table = pa.concat_tables([table, *(rows for _, rows in deltas if rows.num_rows)])
    gone = np.concatenate([np.empty(0, np.uint64), *(removed for removed, _ in deltas)])
    if len(gone):
        table = table.filter(pc.invert(pc.is_in(table[address], value_set=pa.array(gone, ADDRESSES))))
    return table


def lance_rows(addresses: pa.ChunkedArray | pa.Array) -> int:
    """How many leading rows have a Lance address (the rest are provisional or not yet written)."""
    values = pc.fill_null(addresses, pa.scalar(int(VIRTUAL), ADDRESSES)).to_numpy()
    virtual = np.flatnonzero(is_virtual(values))
    return int(virtual[0]) if len(virtual) else len(values)
