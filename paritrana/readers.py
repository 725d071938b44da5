"""Readers during loads: the analysts' copy of the warehouse.

DuckDB lets one process write a file and, while it does, no other process may open it,
not even read-only; and a reader holding it open would stop the next run's writer. So
analysts never open the working file: after every publication the run copies it to
HOME/analytics.duckdb (a temporary name, then one rename). A reader that has the old copy
open keeps reading it undisturbed; the next connection sees the new one.
"""
from __future__ import annotations

import os
import shutil

from .settings import Paths


def refresh_reader_copy(paths: Paths) -> None:
    tmp = paths.reader_copy.with_name(f".{paths.reader_copy.name}.tmp")
    shutil.copyfile(paths.warehouse, tmp)
    os.replace(tmp, paths.reader_copy)
