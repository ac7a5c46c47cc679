"""Pipeline sources and sinks for the data around inference."""
from .duckdb import (DuckDBDatabaseNotFoundError, DuckDBLockTimeoutError,
                     DuckDBQueryError, DuckDBSchemaError, DuckDBWriteResult,
                     ReadFromDuckDB, WriteToDuckDB)

__all__ = [
    'DuckDBDatabaseNotFoundError', 'DuckDBLockTimeoutError',
    'DuckDBQueryError', 'DuckDBSchemaError', 'DuckDBWriteResult',
    'ReadFromDuckDB', 'WriteToDuckDB'
]
