"""Opening the DuckDB warehouse: the single writer, and settings every writer uses."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb

from ingestion.rules import sql_str

from .settings import Paths

# Files stay readable by the DuckDB 1.5 CLI that analysts install (stack.md).
STORAGE_VERSION = "v1.5.0"


class WarehouseBusy(RuntimeError):
    pass


class MachineFailure(OSError):
    """Work stopped by the machine, not by its input: the disk full, memory exhausted, a
    file that could not be written. Never a file's fault: nothing of the file being loaded
    is recorded, and the same command finishes the job once the cause is fixed."""


# DuckDB reports the operating system's refusals inside its own errors' text.
_MACHINE_TEXTS = ("No space left on device", "Disk quota exceeded", "Read-only file system", "File too large",
                  "Could not write file", "Out of Memory Error")
_MACHINE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def machine_failure(e: BaseException) -> bool:
    """Whether a failed statement failed for the machine's sake rather than its input's.
    A caller that takes a query's failure for a property of its input (a file's
    UNREADABLE) must ask this first, as it asks `interrupted`."""
    if isinstance(e, duckdb.OutOfMemoryException):
        return True
    if isinstance(e, OSError) and e.errno in _MACHINE_ERRNOS:
        return True
    return isinstance(e, duckdb.Error) and machine_text(str(e))


def machine_text(text: str) -> bool:
    """Whether an error's text (DuckDB's, or a dbt node's message) is the machine's refusal."""
    return any(t in text for t in _MACHINE_TEXTS)


@contextlib.contextmanager
def writing_to(target: str) -> Iterator[None]:
    """A write that the disk refused (full, too large) says what it was writing: Python's
    error on a stream, and GX's on its stores, name no file."""
    try:
        yield
    except BrokenPipeError:  # the reader went away: the command line stops quietly
        raise
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, f"{e.strerror} (writing {target})") from e
        raise


def first_line(e: BaseException) -> str:
    """An error's first line (DuckDB's: paths and sizes, never a row), or its kind."""
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def machine_stop(e: BaseException, doing: str | None, loading: bool = True) -> MachineFailure:
    """The error to raise for a machine failure met while `doing`: the error's first line
    (paths and sizes, never a row), what it means, and what to do. `loading`: a run's,
    whose loaded files stay loaded and whose memory limits are settings."""
    first = first_line(e)
    if getattr(e, "errno", None) == errno.EROFS or "Read-only file system" in first:
        # more room would not help: the folder cannot be written at all
        advice = "make that file system writable (or give another --home) and run the same command again"
    elif loading:
        advice = ("free disk space or memory (or raise PARITRANA_INGEST_MEMORY_LIMIT / PARITRANA_MEMORY_LIMIT) and "
                  "run the same command again")
    else:
        advice = "free disk space or memory and run the same command again"
    if loading:
        advice += "; what was loaded stays loaded"
    return MachineFailure(f"{doing + ': ' if doing else ''}{first}. The machine stopped the "
                          f"{'run' if loading else 'command'}, not the data: {advice}")


class WarehouseDamaged(OSError):
    """The warehouse file itself is damaged (cut short, overwritten, a failing disk): no
    fault of any delivery, and not mended by running again."""


# DuckDB's words for a database file it cannot trust. The second kind also describes a data
# file that DuckDB reads, so it counts only when it does not name that file.
_CORRUPT = "Corrupt database file"
_UNREADABLE_FILE = ("not a valid DuckDB database file", "Could not read enough bytes")


def damaged(e: BaseException, reading: Path | None = None) -> bool:
    """Whether an error says that the warehouse file is damaged; `reading` is a data file
    being read at the time, whose own faults are not the warehouse's."""
    text = str(e)
    return _CORRUPT in text or (any(t in text for t in _UNREADABLE_FILE)
                                and (reading is None or str(reading) not in text))


def damage_stop(e: BaseException, warehouse: Path) -> WarehouseDamaged:
    """What to do about a damaged warehouse: DuckDB's reason, and the two ways back."""
    found = re.search(f"{_CORRUPT}[^\n)]*|[^\n]*({'|'.join(map(re.escape, _UNREADABLE_FILE))})[^\n]*", str(e))
    reason = found.group(0).strip() if found else type(e).__name__
    return WarehouseDamaged(
        f"the warehouse {warehouse} is damaged ({reason}), and the run stopped. Restore it from a "
        f"backup, or rebuild it: move it aside (keep it for inspection) and run again, and every file still in "
        f"the landing is loaded anew (the NIK key under {warehouse.parent / 'secrets'} gives the same tokens)")


_LOCKED = "Could not set lock on file"


def held_elsewhere(e: BaseException) -> bool:
    """Whether DuckDB could not open the warehouse because another process holds it open,
    read-only included (one writer, and no reader beside it). By its text: dbt passes
    DuckDB's error on wrapped in its own."""
    return _LOCKED in str(e)


def lock_holder(e: BaseException) -> str | None:
    """The process DuckDB names as holding a file's lock ("python3, PID 123"), if it does."""
    holder = re.search(r"Conflicting lock is held in (.*?) \(PID (\d+)\)", str(e))
    return f"{holder.group(1)}, PID {holder.group(2)}" if holder else None


def held_elsewhere_stop(e: BaseException, paths: Paths) -> WarehouseBusy:
    """Who holds which file, as DuckDB names them, and the way on. DuckDB's own advice (open
    it read-only) is for the other session, not for a run, which must write."""
    held = re.search(r'lock on file "(.*?)"', str(e))
    who = lock_holder(e) or "another process"
    # DuckDB names the file absolute, the home may be relative or reached through a link
    if held and Path(held.group(1)).resolve() != paths.warehouse.resolve():  # the analysts' copy, opened read-write
        return WarehouseBusy(
            f"{held.group(1)} is open for writing in another process ({who}): a session that opened it without "
            "-readonly (the DuckDB CLI's default), or DBeaver or Python without read-only. Close it, or open it "
            "again read-only, and run the same command again")
    return WarehouseBusy(
        f"the warehouse {paths.warehouse} is open in another process ({who}), and DuckDB lets no process write "
        f"a file that another one holds, even read-only. An analyst's session (DuckDB CLI, DBeaver, Python) on the "
        f"working file? Analysts open {paths.reader_copy} instead, which runs never wait for. Close that session "
        "and run the same command again: what was done so far stays done")


# DuckDB spills to HOME/tmp beyond this; keeps a national load inside a modest machine.
MEMORY_LIMIT_ENV, INGEST_MEMORY_LIMIT_ENV = "PARITRANA_MEMORY_LIMIT", "PARITRANA_INGEST_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = os.environ.get(MEMORY_LIMIT_ENV, "4GB")
# Ingestion streams each file into its stage; more memory only lets DuckDB keep the
# stage's written blocks, which the OS caches too. At national 1.0 the participants file
# loaded in 125 s with 2 GB against 134 s with 4 GB (its scan: 105 s with 1 or 2 GB, 113 s
# with 4 GB), the other files alike.
INGEST_MEMORY_LIMIT = os.environ.get(INGEST_MEMORY_LIMIT_ENV, "2GB")

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def size_bytes(size: str) -> int:
    """Bytes in a DuckDB size setting such as '4GB' or '1.5 GiB'."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", size)
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"not a memory size: {size!r} (expected e.g. 4GB or 1.5GiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def ingest_memory_limit() -> str:
    """The ingestion's limit: INGEST_MEMORY_LIMIT, or the general one if that is lower. Both
    are checked here, at the start of every run, so that a bad value is refused by name
    before any work."""
    for name, value in ((INGEST_MEMORY_LIMIT_ENV, INGEST_MEMORY_LIMIT), (MEMORY_LIMIT_ENV, DEFAULT_MEMORY_LIMIT)):
        try:
            size_bytes(value)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    return min(INGEST_MEMORY_LIMIT, DEFAULT_MEMORY_LIMIT, key=size_bytes)


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


def interrupted(e: BaseException) -> bool:
    """Whether an error is a user's interrupt (Ctrl-C, SIGINT) that stopped a DuckDB query:
    DuckDB's Python client raises it as RuntimeError("Query interrupted"), or as its
    InterruptException, rather than KeyboardInterrupt, so a caller that takes a query's
    failure for a property of its input must ask this first."""
    return isinstance(e, (KeyboardInterrupt, duckdb.InterruptException)) or \
        (isinstance(e, RuntimeError) and str(e) == "Query interrupted")


@contextlib.contextmanager
def connect(paths: Paths, memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
            read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A writing connection, or a read-only one (the file is then left byte for byte as it
    was); callers hold `exclusive` (dbt opens its own connection in between, so this one is
    closed before dbt runs)."""
    paths.tmp.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(paths.warehouse), read_only=True) if read_only else \
            duckdb.connect(str(paths.warehouse), config={"storage_compatibility_version": STORAGE_VERSION})
    except duckdb.Error as e:
        if damaged(e):
            raise damage_stop(e, paths.warehouse) from e
        if held_elsewhere(e):
            raise held_elsewhere_stop(e, paths) from None
        raise
    try:
        con.execute(f"set temp_directory = {sql_str(str(paths.tmp))}")
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
