"""Pipeline sources and sinks for the data around inference."""
from .duckdb import (DuckDBDatabaseNotFoundError, DuckDBQueryError,
                     DuckDBSchemaError, DuckDBWriteResult, ReadFromDuckDB,
                     WriteToDuckDB)

__all__ = [
    'DuckDBDatabaseNotFoundError', 'DuckDBQueryError', 'DuckDBSchemaError',
    'DuckDBWriteResult', 'ReadFromDuckDB', 'WriteToDuckDB'
]
