"""The one work-around Great Expectations needs on DuckDB (stack.md).

GX 1.x reads a metric's rows after closing the SQLAlchemy connection; for DuckDB the
close rolls back and the rows are gone (`MetricResolutionError: list index out of
range`, upstream issues #10738 and #11579). GX already keeps one persistent connection
for SQLite and a few others; adding the `duckdb` dialect to that list fixes it.
tests/test_publication.py::test_gx_duckdb_workaround_still_needed fails loudly when an
upgrade breaks this or makes it unnecessary. Table assets also fail on DuckDB 2.0 (the
column-type inspection), so every asset is a query asset.
"""
from __future__ import annotations

from great_expectations.execution_engine import sqlalchemy_execution_engine as _engine

DIALECT = "duckdb"


class _Dialect(str):
    # GX compares members of the list both as strings and by `.value`.
    @property
    def value(self) -> str:
        return str(self)


def apply() -> None:
    names = {str(getattr(d, "value", d)) for d in _engine._PERSISTED_CONNECTION_DIALECTS}
    if DIALECT not in names:
        _engine._PERSISTED_CONNECTION_DIALECTS = (*_engine._PERSISTED_CONNECTION_DIALECTS, _Dialect(DIALECT))


def remove() -> None:
    """For the test that proves the work-around is still needed."""
    _engine._PERSISTED_CONNECTION_DIALECTS = tuple(
        d for d in _engine._PERSISTED_CONNECTION_DIALECTS if str(getattr(d, "value", d)) != DIALECT)


def release_connections() -> None:
    """Close every DuckDB connection GX opened. With the work-around GX keeps one per
    execution engine and never closes it (nor does engine.close() reach the DBAPI
    connection), but the warehouse must be free for the publication step in this process
    and for the next writer."""
    import gc

    import duckdb_engine
    import sqlalchemy

    # type(obj), not isinstance(obj, ...): the latter asks lazy proxies (Airflow's, in a
    # task) for their __class__, which imports optional modules.
    for obj in gc.get_objects():
        kind = type(obj)
        if issubclass(kind, _engine.SqlAlchemyExecutionEngine) and getattr(obj, "dialect_name", "") == DIALECT:
            obj.close()
        elif issubclass(kind, sqlalchemy.engine.Engine) and obj.url.drivername.startswith(DIALECT):
            obj.dispose()
    for obj in gc.get_objects():
        if issubclass(type(obj), duckdb_engine.ConnectionWrapper):
            try:
                obj.close()
            except Exception:  # noqa: BLE001 - already closed
                pass
    gc.collect()
