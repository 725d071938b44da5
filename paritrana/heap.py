"""Keeping Python's cycle collector off the objects that the libraries' imports made.

Importing dbt, Great Expectations, SQLAlchemy and pandas leaves about 320 thousand objects
that live as long as the process. Python 3.11 walks every one of them in each full
collection, and it starts one whenever the objects that survived since the last grow by a
quarter: a demo `paritrana run` made 11 of them, about 1.0 of its 10 CPU-s, each walking
the same imported modules again (session 40, gc.callbacks). The three explicit collections
that release DuckDB's files (transform._release_duckdb, gx_duckdb.release_connections) are
among them.

`frozen` moves the objects that exist when a step starts into the collector's permanent
generation (gc.freeze) and gives them back when it ends (gc.unfreeze): inside, collections
walk only what the step made, which is where the DuckDB connections to release are. Nothing
is lost: an object that became garbage inside is collected after the step, when it is
walked again. Nested steps freeze what the outer one made since it began; the outermost
gives everything back.

gc.unfreeze gives back everything frozen, not only what a step froze. A process that held
frozen objects before its first step keeps them so: Airflow's LocalExecutor freezes before
it forks its workers, and a task process forked from one inherits that, so that walking
the parent's objects does not copy their pages. There the step's objects stay frozen too,
for the rest of a task process that ends with its task.
"""
from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
_frozen_before = False  # the process held frozen objects when the outermost step began


@contextlib.contextmanager
def frozen() -> Iterator[None]:
    """Collections inside the block leave out every object that existed when it began."""
    global _depth, _frozen_before
    with _lock:
        if _depth == 0:
            _frozen_before = gc.get_freeze_count() > 0
        gc.freeze()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and not _frozen_before:
                gc.unfreeze()
