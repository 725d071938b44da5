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
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .settings import Paths

log = logging.getLogger(__name__)

# Large enough for sequential disk speed, small enough that a changed row group does not
# rewrite much around it (DuckDB's blocks are 256 KiB).
CHUNK = 4 * 1024 * 1024
# Reading, hashing and writing release the GIL: two threads keep both cores busy.
THREADS = 2


@dataclass(frozen=True)
class CopyOutcome:
    copy: Path
    bytes_total: int
    bytes_written: int
    patched_in_place: bool


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


def sync_chunks(source_fd: int, targets: list[tuple[int, list[str]]]) -> tuple[list[str], list[int]]:
    """Make every target (fd, known chunk digests) byte-identical to source in one read of
    it, writing to each the chunks whose digest is not its known one; returns the
    source's digests and the bytes written to each target."""
    size = os.fstat(source_fd).st_size

    def one(index: int) -> tuple[str, list[int]]:
        data = os.pread(source_fd, CHUNK, index * CHUNK)
        digest = hashlib.sha256(data).hexdigest()
        written = []
        for fd, known in targets:
            if index < len(known) and known[index] == digest:
                written.append(0)
            else:
                os.pwrite(fd, data, index * CHUNK)
                written.append(len(data))
        return digest, written

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(one, range((size + CHUNK - 1) // CHUNK)))
    for fd, _ in targets:
        os.ftruncate(fd, size)
        os.fsync(fd)
    return ([digest for digest, _ in results],
            [sum(written[i] for _, written in results) for i in range(len(targets))])


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
            digests, written = sync_chunks(source_fd, [(fd, k) for (fd, _), k in zip(targets, known)])
            identities = [_identity(fd) for fd, _ in targets]
    finally:
        os.close(source_fd)
    outcomes = []
    for copy, identity, (_, in_place), n in zip(copies, identities, targets, written):
        _digest_file(copy).write_text(json.dumps({"chunk": CHUNK, "identity": identity, "sha256": digests}))
        outcomes.append(CopyOutcome(copy, identity["size"], n, in_place))
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
