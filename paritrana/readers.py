"""Readers during loads: the analysts' copy of the warehouse.

DuckDB lets one process write a file and, while it does, no other process may open it,
not even read-only; and a reader holding it open would stop the next run's writer. So
analysts never open the working file: after every publication the run brings a copy up
to date and makes HOME/analytics.duckdb name it with one rename. A reader that has the
old copy open keeps reading it undisturbed; the next connection sees the new one.

Two copies take turns (HOME/.analytics-a.duckdb and .analytics-b.duckdb; analytics.duckdb
is a hard link to the newer one). A night changes a small part of the warehouse file
(about 3% at national size), so the older copy is patched: the warehouse is read in
chunks and only the chunks whose SHA-256 differs from the copy's are written. The copy's
digests are kept beside it with its inode, size and modification time; if anything else
has written to it since (an analyst who opened it read-write), they no longer match and
every chunk is written.

The older copy is patched in place only when no process has it open: DuckDB locks every
file it opens (a shared lock even read-only), so an exclusive lock we can take proves no
reader is there, and holding it keeps one from opening the file half-patched. When a
reader still holds it (a session left open for two nights), the run writes a new file
under the copy's name instead, and the reader keeps the old one.

The first publication writes both copies, so that every later night patches.

The copies are written around the page cache (O_DIRECT) where the file system allows it:
through it, the first publication's two national copies (6 GB) took 5.8 to 12 s and 6.7 to
19 CPU-seconds, the kernel's copying and write-back, and evicted 6 GB of cached files; around
it, 3.1 to 3.6 s and 2.6 to 2.8 CPU-seconds (docs/performance.md, session 44).
PARITRANA_READER_COPY_IO=buffered writes through the page cache, as before 0.3.25.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .settings import Paths, choice_setting

log = logging.getLogger(__name__)

# Large enough for sequential disk speed, small enough that a changed row group does not
# rewrite much around it (DuckDB's blocks are 256 KiB).
CHUNK = 4 * 1024 * 1024
# Reading, hashing and writing release the GIL: two threads keep both cores busy.
THREADS = 2
READER_COPY_IO_ENV, READER_COPY_IO = "PARITRANA_READER_COPY_IO", ("direct", "buffered")
# What O_DIRECT asks of a write's offset, length and memory on common disks (512-byte or
# 4 KiB sectors); a chunk's last bytes past a multiple of it go through the page cache.
DIRECT_ALIGNMENT = 4096
O_DIRECT = getattr(os, "O_DIRECT", 0)  # Linux's; elsewhere every write is buffered


@dataclass(frozen=True)
class CopyOutcome:
    copy: Path
    bytes_total: int
    bytes_written: int
    patched_in_place: bool
    direct_io: bool = False  # its chunks were written around the page cache (O_DIRECT)


def generations(paths: Paths) -> tuple[Path, Path]:
    stem = paths.reader_copy.stem
    return paths.home / f".{stem}-a.duckdb", paths.home / f".{stem}-b.duckdb"


def _digest_file(copy: Path) -> Path:
    return copy.with_name(f"{copy.name}.sha256.json")


def _older_generation(paths: Paths) -> Path:
    """The copy analytics.duckdb does not name: a new reader cannot reach it."""
    first, second = generations(paths)
    with contextlib.suppress(FileNotFoundError):
        if os.path.samestat(os.stat(first), os.stat(paths.reader_copy)):
            return second
    return first


def _identity(fd: int) -> dict:
    st = os.fstat(fd)
    return {"inode": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _known_digests(copy: Path, fd: int) -> list[str]:
    """The copy's chunk digests as we left it, or none if it changed since."""
    try:
        record = json.loads(_digest_file(copy).read_text())
    except (FileNotFoundError, ValueError):
        return []
    if record.get("chunk") != CHUNK or record.get("identity") != _identity(fd):
        return []
    return record["sha256"]


def reader_copy_io() -> str:
    """$PARITRANA_READER_COPY_IO: "direct" (the default) or "buffered"; see the module's text."""
    return choice_setting(READER_COPY_IO_ENV, READER_COPY_IO)


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for fd's writes; whether it is now on. A file system that
    refuses it (EINVAL) leaves the fd buffered."""
    if not O_DIRECT:
        return False
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | O_DIRECT if on else flags & ~O_DIRECT)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        return False
    return on


def _write(fd: int, data: memoryview, offset: int, direct: list[bool], tails: list) -> None:
    """Write data at offset: around the page cache while direct[0] holds, its whole blocks
    at once and its last partial block left in `tails` for after; a write refused as direct
    (EINVAL: the disk wants a larger alignment) makes this fd buffered for good."""
    if direct[0]:
        whole = len(data) - len(data) % DIRECT_ALIGNMENT
        try:
            if whole:
                _write_all(fd, data[:whole], offset)
            if whole < len(data):
                tails.append((fd, bytes(data[whole:]), offset + whole))
            return
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            direct[0] = _set_direct(fd, False)
    _write_all(fd, data, offset)


def _write_all(fd: int, data: memoryview | bytes, offset: int) -> None:
    """pwrite until every byte is written: a short write (a disk filling up) must end in
    the error that stops it, not in a copy with a hole."""
    data = memoryview(data)
    while data:
        n = os.pwritev(fd, [data], offset)
        data, offset = data[n:], offset + n


def sync_chunks(source_fd: int, targets: list[tuple[int, list[str]]]
                ) -> tuple[list[str], list[int], list[bool]]:
    """Make every target (fd, known chunk digests) byte-identical to source in one read of
    it, writing to each the chunks whose digest is not its known one; returns the
    source's digests, the bytes written to each target, and whether each was written
    around the page cache."""
    size = os.fstat(source_fd).st_size
    direct_io = reader_copy_io() == "direct"
    # one flag per target, in a list so that a refused write can clear it for every thread
    direct = [[_set_direct(fd, direct_io)] for fd, _ in targets]
    tails: list[tuple[int, bytes, int]] = []  # list.append is atomic: the threads share it
    # O_DIRECT writes from aligned memory: each thread reads into its own mmap'ed
    # (page-aligned) buffer, freed with the thread
    local = threading.local()

    def one(index: int) -> tuple[str, list[int]]:
        if not hasattr(local, "buffer"):
            local.buffer = mmap.mmap(-1, CHUNK)
        data = memoryview(local.buffer)[:os.preadv(source_fd, [local.buffer], index * CHUNK)]
        digest = hashlib.sha256(data).hexdigest()
        written = []
        for (fd, known), fd_direct in zip(targets, direct):
            if index < len(known) and known[index] == digest:
                written.append(0)
            else:
                _write(fd, data, index * CHUNK, fd_direct, tails)
                written.append(len(data))
        return digest, written

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(one, range((size + CHUNK - 1) // CHUNK)))
    for fd, _ in targets:
        _set_direct(fd, False)  # the tails are not whole blocks
    for fd, data, offset in tails:
        _write_all(fd, data, offset)
    for fd, _ in targets:
        os.ftruncate(fd, size)
        os.fsync(fd)
    return ([digest for digest, _ in results],
            [sum(written[i] for _, written in results) for i in range(len(targets))],
            [fd_direct[0] for fd_direct in direct])


@contextlib.contextmanager
def _exclusive_target(copy: Path) -> Iterator[tuple[int, bool]]:
    """An open, exclusively locked file to write the copy into: the copy itself when no
    reader holds it (True), else a new file renamed over it when done (False)."""
    fd = os.open(copy, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        # the kind of lock DuckDB takes (fcntl record locks), without waiting
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        log.info("%s is held open by a reader; writing a new file instead", copy)
        tmp = copy.with_name(f"{copy.name}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            yield fd, False
            os.replace(tmp, copy)
        finally:
            os.close(fd)
        return
    try:
        yield fd, True
    finally:
        os.close(fd)  # releases the lock


def update_copies(source: Path, copies: list[Path]) -> list[CopyOutcome]:
    """Bring each copy up to date with source, in one read of it."""
    source_fd = os.open(source, os.O_RDONLY)
    try:
        with contextlib.ExitStack() as stack:
            targets = [stack.enter_context(_exclusive_target(copy)) for copy in copies]
            known = []
            for copy, (target_fd, in_place) in zip(copies, targets):
                known.append(_known_digests(copy, target_fd) if in_place else [])
                _digest_file(copy).unlink(missing_ok=True)  # stale until the new one is written
            digests, written, direct = sync_chunks(source_fd, [(fd, k) for (fd, _), k in zip(targets, known)])
            identities = [_identity(fd) for fd, _ in targets]
    finally:
        os.close(source_fd)
    outcomes = []
    for copy, identity, (_, in_place), n, d in zip(copies, identities, targets, written, direct):
        _digest_file(copy).write_text(json.dumps({"chunk": CHUNK, "identity": identity, "sha256": digests}))
        outcomes.append(CopyOutcome(copy, identity["size"], n, in_place, d))
    return outcomes


@dataclass(frozen=True)
class PreparedCopy:
    """The copy to serve, first in `outcomes`; the first time, both copies are written."""
    outcomes: list[CopyOutcome]


def prepare_reader_copy(paths: Paths) -> PreparedCopy:
    """Bring the older copy up to date without serving it: it only reads the warehouse, so
    it can run while the publication is written from the same (unchanged) file. The first
    time, the other copy is written in the same pass, so that every later night patches."""
    first, second = generations(paths)
    if not first.exists() and not second.exists():
        return PreparedCopy(update_copies(paths.warehouse, [first, second]))
    return PreparedCopy(update_copies(paths.warehouse, [_older_generation(paths)]))


def serve_reader_copy(paths: Paths, prepared: PreparedCopy) -> list[CopyOutcome]:
    """Make analytics.duckdb name the prepared copy (one rename)."""
    link = paths.reader_copy.with_name(f".{paths.reader_copy.name}.link")
    link.unlink(missing_ok=True)
    os.link(prepared.outcomes[0].copy, link)
    os.replace(link, paths.reader_copy)
    return prepared.outcomes


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f}" if n < 10 * 2**20 else f"{n / 2**20:,.0f}"


def served_line(reader_copy: Path, outcomes: list[CopyOutcome]) -> str:
    """What analysts now read, for a run's summary: the name they open, not the copy behind
    it (.analytics-a/-b are this module's business), and what it cost to bring it there."""
    served = outcomes[0]
    mib = f"{_mib(served.bytes_total)} MiB"
    if len(outcomes) > 1:
        how = f"{mib} written, and a second copy for the next night to patch"
    elif not served.patched_in_place:
        how = f"{mib} written anew: a reader still had the older copy open, and keeps it"
    elif served.bytes_written == served.bytes_total:  # every chunk changed, or the copy did since it was served
        how = f"{mib} rewritten in full"
    else:
        how = f"{_mib(served.bytes_written)} of {mib} rewritten"
    return f"analysts' copy {reader_copy}: holds this publication's build ({how})"


def refresh_reader_copy(paths: Paths) -> list[CopyOutcome]:
    """Bring the older copy up to date and serve it."""
    return serve_reader_copy(paths, prepare_reader_copy(paths))
