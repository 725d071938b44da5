"""Opening the DuckDB warehouse: the single writer, and settings every writer uses."""
from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

import duckdb

from .settings import Paths

# Files stay readable by the DuckDB 1.5 CLI that analysts install (stack.md).
STORAGE_VERSION = "v1.5.0"


class WarehouseBusy(RuntimeError):
    pass


# DuckDB spills to HOME/tmp beyond this; keeps a national load inside a modest machine.
DEFAULT_MEMORY_LIMIT = os.environ.get("PARITRANA_MEMORY_LIMIT", "4GB")


@contextlib.contextmanager
def exclusive(paths: Paths) -> Iterator[None]:
    """Held for a whole run (ingest, dbt, gate, publish): a second writer fails fast with a
    clear message instead of DuckDB's lock error halfway through its work."""
    paths.home.mkdir(parents=True, exist_ok=True)
    with paths.lock.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WarehouseBusy(f"another run is writing {paths.warehouse} (lock {paths.lock})") from None
        yield


@contextlib.contextmanager
def connect(paths: Paths, memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
            read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A writing connection, or a read-only one (the file is then left byte for byte as it
    was); callers hold `exclusive` (dbt opens its own connection in between, so this one is
    closed before dbt runs)."""
    paths.tmp.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(paths.warehouse), read_only=True) if read_only else \
        duckdb.connect(str(paths.warehouse), config={"storage_compatibility_version": STORAGE_VERSION})
    try:
        con.execute(f"set temp_directory = '{paths.tmp}'")
        con.execute("set preserve_insertion_order = true")
        if memory_limit:
            con.execute(f"set memory_limit = '{memory_limit}'")
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def writer(paths: Paths, memory_limit: str | None = DEFAULT_MEMORY_LIMIT) -> Iterator[duckdb.DuckDBPyConnection]:
    """The lock and a connection together, for single-step writers (tests, benchmarks)."""
    with exclusive(paths), connect(paths, memory_limit) as con:
        yield con
