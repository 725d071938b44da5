"""The analysts' copy (paritrana.readers): two copies take turns, the older one is patched
chunk by chunk, never under a reader's feet, and always ends byte-identical to the
warehouse."""
from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from paritrana import readers
from paritrana.settings import Paths

SMALL_CHUNK = 64 * 1024


@pytest.fixture
def paths(tmp_path, monkeypatch):
    # small chunks, so that a small warehouse has many and a change touches few of them
    monkeypatch.setattr(readers, "CHUNK", SMALL_CHUNK)
    paths = Paths(tmp_path)
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute("create table big as select range as id, md5(range::varchar) as h from range(300000)")
        con.execute("create table small (night int)")
        con.execute("insert into small values (0)")
    return paths


def _night(paths: Paths, night: int) -> None:
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute("update small set night = ?", [night])


def _served(paths: Paths) -> Path:
    return next(g for g in readers.generations(paths) if os.path.samestat(os.stat(g), os.stat(paths.reader_copy)))


def _assert_copy_of_warehouse(paths: Paths, copy: Path) -> None:
    assert copy.read_bytes() == paths.warehouse.read_bytes()


def test_first_publication_writes_both_copies_then_nights_patch_the_older(paths):
    first = readers.refresh_reader_copy(paths)
    assert [o.copy for o in first] == list(readers.generations(paths))
    assert all(o.bytes_written == o.bytes_total == paths.warehouse.stat().st_size for o in first)
    assert _served(paths) == readers.generations(paths)[0]
    # the summary names the file analysts open, not the copies behind it
    assert readers.served_line(paths.reader_copy, first) == \
        f"analysts' copy {paths.reader_copy}: holds this publication's build " \
        f"({paths.warehouse.stat().st_size / 2**20:.1f} MiB written, and a second copy for the next night to patch)"

    for night in (1, 2, 3):
        before = _served(paths)
        _night(paths, night)
        (outcome,) = readers.refresh_reader_copy(paths)
        assert outcome.copy != before and _served(paths) == outcome.copy, "the older copy is patched and served"
        assert outcome.patched_in_place
        assert 0 < outcome.bytes_written < outcome.bytes_total / 4, outcome
        assert readers.served_line(paths.reader_copy, [outcome]).endswith(
            f"({outcome.bytes_written / 2**20:.1f} of {outcome.bytes_total / 2**20:.1f} MiB rewritten)")
        _assert_copy_of_warehouse(paths, outcome.copy)
        with duckdb.connect(str(paths.reader_copy), read_only=True) as con:
            assert con.execute("select night from small").fetchone()[0] == night


def test_a_reader_holding_the_older_copy_keeps_it_and_gets_a_new_file(paths):
    readers.refresh_reader_copy(paths)
    _night(paths, 1)
    readers.refresh_reader_copy(paths)  # serves b; a is now the older copy, holding night 0
    older = readers.generations(paths)[0]
    # another process, as an analyst's session: POSIX locks do not conflict within one process
    reader = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys; con = duckdb.connect(sys.argv[1], read_only=True); print('open', flush=True); "
         "sys.stdin.readline(); print(con.execute('select night from small').fetchone()[0], flush=True)",
         str(older)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "open"
        inode_held = older.stat().st_ino
        _night(paths, 2)
        (outcome,) = readers.refresh_reader_copy(paths)
        assert outcome.copy == older and not outcome.patched_in_place
        assert outcome.bytes_written == outcome.bytes_total
        assert readers.served_line(paths.reader_copy, [outcome]).endswith(
            "written anew: a reader still had the older copy open, and keeps it)")
        assert older.stat().st_ino != inode_held, "a new file took the copy's name"
        _assert_copy_of_warehouse(paths, older)
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "0", "the reader still sees the copy it opened"
    finally:
        reader.kill()
        reader.wait()
    _night(paths, 3)
    (outcome,) = readers.refresh_reader_copy(paths)  # b, patched as usual
    assert outcome.patched_in_place and outcome.bytes_written < outcome.bytes_total / 4


def test_a_copy_written_by_someone_else_is_rewritten_whole(paths):
    readers.refresh_reader_copy(paths)
    _night(paths, 1)
    readers.refresh_reader_copy(paths)
    older = readers.generations(paths)[0]
    # an analyst who opened the copy read-write and changed it
    with duckdb.connect(str(older)) as con:
        con.execute("create table scratch as select 1 as x")
    _night(paths, 2)
    (outcome,) = readers.refresh_reader_copy(paths)
    assert outcome.copy == older and outcome.bytes_written == outcome.bytes_total
    assert readers.served_line(paths.reader_copy, [outcome]).endswith(" MiB rewritten in full)")
    _assert_copy_of_warehouse(paths, older)


def _direct_io_allowed(folder: Path) -> bool:
    """Whether this file system takes O_DIRECT writes (most do; the copy is then written
    around the page cache)."""
    fd = os.open(folder / "probe", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        return readers._set_direct(fd, True)
    finally:
        os.close(fd)


def _sync_file(tmp_path: Path, data: bytes, known: list[str] | None = None, target: bytes | None = None):
    source, copy = tmp_path / "source", tmp_path / "copy"
    source.write_bytes(data)
    if target is not None:
        copy.write_bytes(target)
    source_fd, copy_fd = os.open(source, os.O_RDONLY), os.open(copy, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        digests, (written,), (direct,) = readers.sync_chunks(source_fd, [(copy_fd, known or [])])
    finally:
        os.close(source_fd)
        os.close(copy_fd)
    assert copy.read_bytes() == data
    return digests, written, direct


# three whole chunks, then a chunk of one 4 KiB block and 904 bytes: its tail is not a whole block
ODD_SIZE = 3 * SMALL_CHUNK + 5000


def test_a_copy_is_written_around_the_page_cache_up_to_its_last_partial_block(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "CHUNK", SMALL_CHUNK)
    data = os.urandom(ODD_SIZE)
    digests, written, direct = _sync_file(tmp_path, data, target=os.urandom(ODD_SIZE + 70000))
    assert written == ODD_SIZE and len(digests) == 4
    # where the file system takes O_DIRECT: ext4 and tmpfs here, and every Linux file system these tests ran on
    assert direct == _direct_io_allowed(tmp_path)

    # a patch writes only the chunks that differ, around the page cache too
    changed = data[:SMALL_CHUNK] + os.urandom(10) + data[SMALL_CHUNK + 10:]
    _, written, direct = _sync_file(tmp_path, changed, known=digests, target=data)
    assert written == SMALL_CHUNK and direct


def test_a_write_refused_around_the_page_cache_goes_through_it(tmp_path, monkeypatch):
    """A disk whose blocks are larger than 4 KiB refuses the direct writes (EINVAL): the
    copy is then written through the page cache, whole and identical."""
    monkeypatch.setattr(readers, "CHUNK", SMALL_CHUNK)
    real_pwritev, refused = os.pwritev, []

    def pwritev(fd, buffers, offset):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & readers.O_DIRECT:
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwritev(fd, buffers, offset)

    monkeypatch.setattr(os, "pwritev", pwritev)
    data = os.urandom(ODD_SIZE)
    _, written, direct = _sync_file(tmp_path, data)
    assert refused and written == ODD_SIZE and not direct


def test_buffered_io_is_a_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "CHUNK", SMALL_CHUNK)
    monkeypatch.setenv("PARITRANA_READER_COPY_IO", "buffered")
    _, written, direct = _sync_file(tmp_path, os.urandom(ODD_SIZE))
    assert written == ODD_SIZE and not direct
    monkeypatch.setenv("PARITRANA_READER_COPY_IO", "cached")
    with pytest.raises(ValueError, match="PARITRANA_READER_COPY_IO must be one of direct, buffered"):
        _sync_file(tmp_path, os.urandom(ODD_SIZE))


def test_a_short_write_is_written_on_until_whole(tmp_path, monkeypatch):
    """pwrite may write less than asked (a disk filling up): the rest is written, or the
    error that stops it is raised; never a copy with a hole."""
    monkeypatch.setattr(readers, "CHUNK", SMALL_CHUNK)
    real_pwritev = os.pwritev
    monkeypatch.setattr(os, "pwritev", lambda fd, buffers, offset: real_pwritev(
        fd, [memoryview(buffers[0])[:max(4096, len(buffers[0]) // 2 // 4096 * 4096)]], offset))
    _, written, _ = _sync_file(tmp_path, os.urandom(ODD_SIZE))
    assert written == ODD_SIZE


def test_a_failed_read_stops_the_copy_and_leaves_no_thread_waiting(tmp_path, monkeypatch):
    """A chunk that cannot be read (a failing disk) fails the copy with its error, and the
    run stops instead of hanging: no other chunk waits for a buffer the failed one held
    (each thread reads into its own)."""
    monkeypatch.setattr(readers, "CHUNK", SMALL_CHUNK)
    real_preadv = os.preadv

    def preadv(fd, buffers, offset):
        if offset >= SMALL_CHUNK:  # every chunk but the first
            raise OSError(errno.EIO, "Input/output error")
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", preadv)
    outcome = {}

    def copy():
        try:
            _sync_file(tmp_path, os.urandom(8 * SMALL_CHUNK))
        except OSError as e:
            outcome["error"] = e

    worker = threading.Thread(target=copy, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the copy hangs"
    assert outcome["error"].errno == errno.EIO
