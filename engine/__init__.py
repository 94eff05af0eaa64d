"""Tessera's engine: sharded tables on Ray and Lance with a transactional catalog.

>>> import engine
>>> db = engine.connect()   # doctest: +SKIP
"""

from engine.client.batch import BatchResult
from engine.client.database import Database, connect
from engine.client.jobs import Job, Jobs
from engine.client.results import QueryResult, WriteResult
from engine.client.table import Table
from engine.config import Settings
from engine.errors import (
    ColumnNotFound,
    Conflict,
    DuplicateKey,
    EngineError,
    InvalidRequest,
    NotFound,
    PluginError,
    RowNotFound,
    SchemaMismatch,
    TableExists,
    TableNotFound,
    TesseraError,
    TooLarge,
    UserError,
)

__all__ = [
    "BatchResult",
    "ColumnNotFound",
    "Conflict",
    "Database",
    "DuplicateKey",
    "EngineError",
    "InvalidRequest",
    "Job",
    "Jobs",
    "NotFound",
    "PluginError",
    "QueryResult",
    "RowNotFound",
    "SchemaMismatch",
    "Settings",
    "Table",
    "TableExists",
    "TableNotFound",
    "TesseraError",
    "TooLarge",
    "UserError",
    "WriteResult",
    "connect",
]
