"""A load killed or interrupted mid-file leaves the warehouse as before that file; the next
run finishes the job."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import duckdb

from ingestion.rules import sql_str
from paritrana.generator import generate

from conftest import paritrana, write_control

SCRIPT = """
import sys
from pathlib import Path
from ingestion.loader import ingest
from paritrana.settings import resolve_home
from paritrana.warehouse import writer
with writer(resolve_home(sys.argv[1])) as con:
    ingest(con, Path(sys.argv[2]), b"test-key", sys.argv[3], lambda m: print(m, flush=True))
"""

TABLES = ("participants", "claims", "contributions", "employers")


def _state(home):
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        out = {t: sorted(con.execute(f"select * exclude (_load_id) from raw.{t}").fetchall(), key=repr) for t in TABLES}
        out["ledger"] = sorted(con.execute("select file_name, status, rows_loaded from raw.load_ledger").fetchall())
        return out
    finally:
        con.close()


def _ingest(home, landing, run_id, kill_after=None):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(home), str(landing), run_id],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if kill_after is None:
        assert proc.wait(timeout=300) == 0
        return None
    # Kill while the large participants file is being loaded.
    for line in proc.stdout:
        if "participants__" in line:
            time.sleep(kill_after)
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode


def test_killed_load_is_finished_by_the_next_run(tmp_path):
    landing = tmp_path / "in"
    generate(landing, "demo", scale=4.0, days_after=1)
    _ingest(tmp_path / "clean", landing, "clean")
    expected = _state(tmp_path / "clean")

    assert _ingest(tmp_path / "killed", landing, "first", kill_after=0.2) == -signal.SIGKILL
    half = _state(tmp_path / "killed")
    # Killed inside the participants snapshot: none of its rows, no ledger row, earlier files intact.
    assert half["participants"] == [] and half["claims"] == expected["claims"]
    assert not any(name.startswith("participants__") for name, *_ in half["ledger"])
    _ingest(tmp_path / "killed", landing, "rerun")
    assert _state(tmp_path / "killed") == expected


def _large_participants(landing, n):
    """A valid participants snapshot of n rows (written by DuckDB: seconds, not minutes)."""
    for old in landing.glob("participants__2024-12-31.*"):
        old.unlink()
    path = landing / "participants__2024-12-31.csv"
    duckdb.sql(f"""copy (select (10000000000 + range)::varchar as kpj, '1771014508900003' as nik,
        'Siti Aminah' as full_name, '1990-08-05' as birth_date, 'P' as gender, 'PU' as segment,
        'BK000123' as npp, '17.71' as region_code, 'KARYAWAN' as occupation, 'EMPLOYER' as funding,
        null as funder_code, 1 as jkk, 1 as jkm, 1 as jht, 1 as jp, 1 as jkp, 3000000 as monthly_wage_idr,
        'ACTIVE' as status, '2020-01-01' as effective_date from range({n})) to {sql_str(str(path))} (header)""")
    write_control(path, n)


def _interrupted_run(landing, home, when: str) -> tuple[str, str]:
    """`paritrana run`, sent SIGINT a second after its output shows `when`: exit 1 and the
    message say it was interrupted (outputs.md §1 keeps 2 for a failed gate)."""
    proc = subprocess.Popen([sys.executable, "-m", "paritrana.cli", "run", "--landing", str(landing), "--year", "2024",
                             "--home", str(home)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            # as a terminal delivers it, even where the test runner ignores SIGINT
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if when in line:
            time.sleep(1.0)
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    out = "".join(seen) + out
    assert proc.returncode == 1, out[-2000:] + err[-2000:]
    assert "paritrana run: interrupted: what was loaded stays loaded" in err, err[-2000:]
    return out, err


def test_ctrl_c_during_a_load_stops_the_run_and_the_next_run_loads_the_file(tmp_path):
    """Ctrl-C reaches a running DuckDB query as an error of DuckDB's own ("Query
    interrupted"), which the reader guard once took for a fault of the file: the file was
    recorded UNREADABLE, so no later run loaded it, and the run went on. It must stop the
    run (exit 1, outputs.md §1), record nothing of that file, and leave it to the next run."""
    from ingestion.loader import ingest
    from ingestion.personal_data import load_key
    from paritrana.settings import resolve_home
    from paritrana.warehouse import writer

    landing, home = tmp_path / "in", tmp_path / "home"
    generate(landing, "demo", scale=0.2)
    n = 3_000_000
    _large_participants(landing, n)  # seconds of scan, for the interrupt to land in
    out, err = _interrupted_run(landing, home, "participants__2024-12-31.csv")
    assert "Traceback" not in err
    assert "building the warehouse" not in out  # the run stopped there
    ledger = _state(home)["ledger"]
    assert not any(name.startswith("participants__") for name, *_ in ledger)
    assert ("employers__2024-12-31.csv", "LOADED") in [(name, status) for name, status, _ in ledger]

    with writer(resolve_home(home)) as con:
        report = ingest(con, landing, load_key(home), "rerun")
    results = {r.file_name: (r.status, r.rows_loaded) for r in report.results}
    assert results["participants__2024-12-31.csv"] == ("LOADED", n)
    assert {status for status, _ in results.values()} == {"LOADED"}  # and the files after it


def test_ctrl_c_during_the_build_stops_the_run_and_the_same_command_publishes(tmp_path):
    """dbt stops on Ctrl-C and hands the interrupt back: the run says it was interrupted,
    publishes nothing, and the same command afterwards builds and publishes."""
    landing, home = tmp_path / "in", tmp_path / "home"
    generate(landing, "demo", days_after=1)
    out, _ = _interrupted_run(landing, home, " OK created ")  # among dbt's nodes
    assert "validating" not in out and not (home / "published").exists()
    again = paritrana("run", "--landing", str(landing), "--year", "2024", "--home", str(home))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert (home / "published" / "2024" / "latest" / "manifest.json").exists()


def _ledger(home):
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return dict(con.execute("select status, count(*) from raw.load_ledger group by status").fetchall())
    finally:
        con.close()


def _limited_run(landing, home, *, env=None, file_size_limit=None):
    """`paritrana run` with a memory setting or an operating-system limit on file size (a
    full disk, without needing one: writes past the limit fail with EFBIG)."""
    import resource

    def limit():
        if file_size_limit:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
    return paritrana("run", "--landing", str(landing), "--year", "2024", "--home", str(home), env=env,
                     preexec_fn=limit)


def test_memory_or_disk_running_out_is_never_a_files_fault_and_the_same_command_finishes(tmp_path):
    """DuckDB's out-of-memory and write errors used to be taken for the file's: good files
    were recorded UNREADABLE, for good. Now the run stops, saying why, records nothing of
    the file it was loading, and the same command with room finishes the job."""
    landing = tmp_path / "in"
    generate(landing, "demo", days_after=1)
    home = tmp_path / "home"
    oom = _limited_run(landing, home, env={"PARITRANA_INGEST_MEMORY_LIMIT": "4MB"})
    assert oom.returncode == 1, oom.stderr
    assert "Out of Memory Error" in oom.stderr and "The machine stopped the run, not the data" in oom.stderr
    assert "Traceback" not in oom.stderr and "REJECTED" not in _ledger(home)

    full = _limited_run(landing, home, file_size_limit=3_000_000)
    assert full.returncode == 1, full.stderr
    assert "File too large" in full.stderr and "The machine stopped the run, not the data" in full.stderr
    assert "Traceback" not in full.stderr
    stopped = _ledger(home)
    assert "REJECTED" not in stopped and stopped.get("LOADED", 0) > 0  # it stopped part way

    done = _limited_run(landing, home)
    assert done.returncode == 0, done.stderr
    assert "0 rejected" in done.stdout and "checks: 59 passed" in done.stdout
    assert _ledger(home).get("REJECTED", 0) == 0


def test_a_landing_file_the_run_may_not_read_or_that_goes_away_stops_the_run_and_is_not_recorded(
        tmp_path, monkeypatch):
    """A provider's upload private to its user, or a file moved away while the run reads the
    landing: not UNREADABLE (which is the file's fault, and for good). The run stops naming
    the file and what to do, records nothing of it, and the next run loads it. Permissions
    are real when the tests run as a user; as root, who may read anything, the refusal that
    open() would raise is raised where the file is first read."""
    import errno

    import pytest

    from ingestion import loader
    from ingestion.personal_data import load_key
    from paritrana.settings import resolve_home
    from paritrana.warehouse import writer

    landing, home = tmp_path / "in", resolve_home(tmp_path / "home")
    generate(landing, "demo", days_after=1)
    private, moved = landing / "claims__2025-01-01.csv", landing / "employers__2025-01-01.csv"
    kept = moved.read_bytes()
    original = loader._load_one

    def provider_at_work(con, d, *args):
        if d.path == moved:
            moved.unlink()
        if d.path == private and os.geteuid() == 0 and not private.stat().st_mode & 0o444:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(private))
        return original(con, d, *args)

    monkeypatch.setattr(loader, "_load_one", provider_at_work)

    def names_in_ledger():
        with writer(home) as con:
            return {r[0] for r in con.execute("select file_name from raw.load_ledger").fetchall()}

    private.chmod(0)
    with writer(home) as con, pytest.raises(loader.LandingFileUnreadable) as stopped:
        loader.ingest(con, landing, load_key(home.home), "private")
    assert f"cannot read {private}: permission denied" in str(stopped.value)
    assert "run the same command again" in str(stopped.value)
    assert private.name not in names_in_ledger()
    private.chmod(0o644)

    with writer(home) as con, pytest.raises(loader.LandingFileUnreadable) as stopped:
        loader.ingest(con, landing, load_key(home.home), "moved")
    assert f"{moved} went away while the run read the landing" in str(stopped.value)
    recorded = names_in_ledger()
    assert private.name in recorded and moved.name not in recorded

    moved.write_bytes(kept)
    monkeypatch.setattr(loader, "_load_one", original)
    with writer(home) as con:
        report = loader.ingest(con, landing, load_key(home.home), "after")
    assert {r.file_name: r.status for r in report.results}[moved.name] == "LOADED"
    assert private.name in report.already_processed


def test_a_disk_that_fills_during_the_dbt_build_is_said_as_the_machines_stop(demo, tmp_path):
    """dbt failing to write its own files (a full disk: here the run's results file leads to
    /dev/full, which refuses every write with ENOSPC) was reported as a failed build. It is
    the machine's stop, said with what to do; the latest publication stays; the same
    command with room publishes."""
    work = demo.copy(tmp_path / "w")
    before = os.readlink(work.home_dir / "published" / "2024" / "latest")
    results = work.home_dir / "dbt" / "target" / "run_results.json"
    results.unlink()
    results.symlink_to("/dev/full")
    full = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))
    assert full.returncode == 1, full.stdout[-2000:] + full.stderr[-2000:]
    assert "paritrana run: error: dbt build: [Errno 28] No space left on device. The machine stopped the run, " \
           "not the data: free disk space" in full.stderr
    assert "dbt build failed" not in full.stderr and "Traceback" not in full.stderr
    assert os.readlink(work.home_dir / "published" / "2024" / "latest") == before

    results.unlink()
    again = paritrana("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert os.readlink(work.home_dir / "published" / "2024" / "latest") != before


def test_an_analysts_copy_that_cannot_be_written_does_not_hide_the_publication(demo, tmp_path):
    """The analysts' copy is written after the publication: when the disk refuses it, the
    run used to exit 1 with only `[Errno 27] File too large`, as if nothing had been
    published. It now says what was published and what the analysts still see, and the same
    command with room brings the copy up to date."""
    work = demo.copy(tmp_path / "w")
    home = work.home_dir
    for generation in home.glob(".analytics-*"):  # the next copy is then written whole, past the limit
        generation.unlink()
    served = (home / "analytics.duckdb").read_bytes()
    limited = _limited_run(work.landing, home, file_size_limit=(home / "warehouse.duckdb").stat().st_size // 2)
    assert limited.returncode == 1, limited.stdout[-2000:] + limited.stderr[-2000:]
    latest = home / "published" / "2024" / "latest"
    assert f"paritrana run: error: published {home / 'published' / '2024' / os.readlink(latest)} (the year's " \
           "latest), but the analysts' copy could not be brought up to date ([Errno 27] File too large): " \
           f"{home / 'analytics.duckdb'} still holds the previous publication's build. Free disk space and run " \
           "the same command again" in limited.stderr
    assert (home / "analytics.duckdb").read_bytes() == served

    again = _limited_run(work.landing, home)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert (home / "analytics.duckdb").read_bytes() == (home / "warehouse.duckdb").read_bytes()


def test_memory_running_out_in_the_dbt_build_is_said_as_the_machines_stop(demo, tmp_path):
    """A model that DuckDB cannot compute within PARITRANA_MEMORY_LIMIT was reported as a
    failed build, with the node's whole message; it is the machine's stop, said with the
    node, DuckDB's line and what to do, and the same command with room publishes."""
    work = demo.copy(tmp_path / "w")
    command = ("run", "--landing", str(work.landing), "--year", "2024", "--home", str(work.home_dir), "--full-refresh")
    # 30 MB let the demo's build through once in a loaded suite (session 30): well below it
    short = paritrana(*command, env={"PARITRANA_MEMORY_LIMIT": "12MB"})
    assert short.returncode == 1, short.stdout[-2000:] + short.stderr[-2000:]
    assert re.search(r"paritrana run: error: dbt build: (model \w+: )?Out of Memory Error: [^\n]*\. The machine "
                     r"stopped the run, not the data: free disk space or memory \(or raise "
                     r"PARITRANA_INGEST_MEMORY_LIMIT / PARITRANA_MEMORY_LIMIT\)", short.stderr), short.stderr
    assert "dbt build failed" not in short.stderr and "Possible solutions" not in short.stderr
    again = paritrana(*command)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]


def test_a_read_only_home_is_told_to_be_made_writable_not_to_free_space():
    """A HOME on a read-only file system (mounting one needs root, so the error is made
    here) is the machine's stop too, but more room would not help: said so."""
    import errno

    from paritrana.warehouse import machine_failure, machine_stop

    read_only = OSError(errno.EROFS, "Read-only file system", "/mnt/home/.writer.lock")
    assert machine_failure(read_only)
    assert str(machine_stop(read_only, None)) == (
        "[Errno 30] Read-only file system: '/mnt/home/.writer.lock'. The machine stopped the run, not the data: "
        "make that file system writable (or give another --home) and run the same command again; what was loaded "
        "stays loaded")
    full = str(machine_stop(OSError(errno.ENOSPC, "No space left on device"), "exporting", loading=False))
    assert full == ("exporting: [Errno 28] No space left on device. The machine stopped the command, not the data: "
                    "free disk space or memory and run the same command again")
