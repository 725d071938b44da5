"""The `paritrana` command as a user runs it: generate, run, summary, exit codes."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys

import pytest


def paritrana(*args, env=None):
    return subprocess.run([sys.executable, "-m", "paritrana.cli", *args], capture_output=True, text=True, env=env)


def test_help_on_every_command():
    for cmd in ([], ["generate"], ["run"], ["demo"], ["export"], ["dag-test"], ["status"]):
        out = paritrana(*cmd, "--help")
        assert out.returncode == 0 and "usage: paritrana" in out.stdout


def test_generate_reports_planted_defects(tmp_path):
    gen = paritrana("generate", "--landing", str(tmp_path / "l"), "--profile", "demo", "--scale", "0.2", "--days", "2")
    assert gen.returncode == 0, gen.stderr
    assert "planted defects: 17" in gen.stdout


def test_run_prints_a_reconciled_summary_and_reruns_as_a_no_op(demo, tmp_path):
    """`demo` is `paritrana generate --profile demo --days 2` then `paritrana run` (conftest)."""
    work = demo.copy(tmp_path / "w")
    landing, home = work.landing, work.home_dir
    out = demo.result.stdout
    assert "files: 17 loaded, 0 rejected, 1 skipped (1 re-deliveries, 0 stale)" in out
    assert "quarantined" in out and "exact duplicates dropped" in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("rows:"))
    nums = [int(x.replace(",", "")) for x in line.replace("=", " ").replace("+", " ").split() if x[0].isdigit()]
    assert nums[0] == nums[1] + nums[2] + nums[3] and nums[2] == 12 and nums[3] == 2
    again = paritrana("run", "--landing", str(landing), "--year", "2024", "--home", str(home))
    assert "0 loaded" in again.stdout and "18 already processed" in again.stdout
    # the run ends with its summary, not with shutdown warnings (leaked semaphores, nanobind)
    for result in (demo.result, again):
        assert "leaked" not in result.stderr, result.stderr[-2000:]


def test_a_ranking_as_of_a_date_the_deliveries_do_not_reach_says_so(demo, tmp_path):
    """methodology.md §1 lets `--year 2025` be as of 2025-12-31 with data that end on
    2025-01-02; the ranking must not read as a final one without a word."""
    assert "note: as of" not in demo.result.stdout  # 2024 as of 2024-12-31: the deliveries go beyond
    work = demo.copy(tmp_path / "w")
    later = paritrana("run", "--landing", str(work.landing), "--year", "2025", "--home", str(work.home_dir))
    assert later.returncode == 0, later.stderr[-2000:]
    note = ("note: as of 2025-12-31, but the deliveries end on 2025-01-02: the figures are those of 2025-01-02, "
            "not of 2025-12-31 (for a provisional ranking that says so, run with --as-of 2025-01-02)")
    assert later.stdout.count(note) == 2  # when it is known, and in the summary
    records = sorted((work.home_dir / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime)
    assert json.loads(records[-1].read_text())["deliveries_until"] == "2025-01-02"


def test_user_errors_name_the_cause_without_a_traceback(tmp_path):
    out = paritrana("run", "--landing", str(tmp_path / "nowhere"), "--year", "2024", "--home", str(tmp_path / "h"))
    assert out.returncode == 1
    assert "nowhere" in out.stderr and "Traceback" not in out.stderr
    bad = paritrana("generate", "--landing", str(tmp_path / "x"), "--profile", "demo", "--scale", "-1")
    assert bad.returncode == 1 and "scale" in bad.stderr
    (tmp_path / "a_file").write_text("x")
    not_a_folder = paritrana("run", "--landing", str(tmp_path / "a_file"), "--year", "2024", "--home", str(tmp_path / "h"))
    assert not_a_folder.returncode == 1 and "a_file is a file, not a folder" in not_a_folder.stderr
    # the generator checks what it is given before writing anything
    for flag, value, message in [("--days", "-2", "--days must be 0 or more"),
                                 ("--seed", "-5", "--seed must be 0 or more"),
                                 ("--year", "1999", "--year must be from 2017, the award's first year, to 9998 "
                                                    "(got 1999)"),
                                 ("--year", "9999", "--year must be from 2017"),
                                 ("--scale", "inf", "--scale must be a positive number (got inf)"),
                                 ("--scale", "nan", "--scale must be a positive number (got nan)")]:
        out = paritrana("generate", "--landing", str(tmp_path / "g"), "--profile", "demo", flag, value)
        assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert not (tmp_path / "g").exists()
    # so does a run, and the DAG's param year: no award before 2017
    for year in ("1999", "0"):
        early = paritrana("run", "--landing", str(tmp_path), "--year", year, "--home", str(tmp_path / "h"))
        assert early.returncode == 1 and f"--year must be from 2017, the award's first year, to 9998 (got {year})" \
            in early.stderr and not (tmp_path / "h" / "warehouse.duckdb").exists(), early.stderr
    early = paritrana("dag-test", "--landing", str(tmp_path), "--date", "2025-01-04", "--year", "1999", "--home",
                      str(tmp_path / "h"))
    assert early.returncode == 1 and "--year must be from 2017" in early.stderr and "Traceback" not in early.stderr
    from paritrana.orchestration import run_dates
    with pytest.raises(ValueError, match=r"^the DAG's param year must be from 2017"):
        run_dates(dt.datetime(2025, 1, 2, tzinfo=dt.timezone.utc), "2016")
    into_file = paritrana("generate", "--landing", str(tmp_path / "a_file"), "--profile", "demo")
    assert into_file.returncode == 1 and "a_file is a file, not a folder" in into_file.stderr


def test_a_mistyped_argument_exits_1_never_2_which_means_the_gate_failed(tmp_path):
    """argparse's own exit status for usage errors is 2, the status `run` keeps for a failed
    quality gate (outputs.md §1)."""
    home = str(tmp_path / "h")
    for args, named in ((["run", "--landing", str(tmp_path), "--year", "abc", "--home", home], "--year"),
                        (["run", "--landing", str(tmp_path), "--year", "2024", "--as-of", "2024-13-01",
                          "--home", home], "--as-of"),
                        (["run", "--year", "2024", "--home", home], "--landing"),
                        (["export", "--category", "nope", "--year", "2024", "--format", "csv",
                          "--out", str(tmp_path / "x.csv"), "--home", home], "--category"),
                        (["nonsense"], "nonsense")):
        out = paritrana(*args)
        assert out.returncode == 1, (args, out.returncode, out.stderr)
        assert named in out.stderr and "Traceback" not in out.stderr


def test_an_as_of_date_outside_the_assessment_year_is_refused_before_any_work(tmp_path):
    """methodology.md §1: D is Y-12-31 or, for a provisional run, a date in Y. Another date
    would publish year Y's ranking judged on another year's states and payments."""
    home = tmp_path / "h"
    for as_of in ("2025-06-01", "2023-12-31"):
        out = paritrana("run", "--landing", str(tmp_path), "--year", "2024", "--as-of", as_of, "--home", str(home))
        assert out.returncode == 1, (as_of, out.returncode, out.stderr)
        assert f"as-of date {as_of} is not in the assessment year 2024" in out.stderr
        assert "Traceback" not in out.stderr
    assert not (home / "warehouse.duckdb").exists()


def test_a_second_writer_fails_fast_and_says_who_holds_the_warehouse(tmp_path):
    """One writer at a time (README, Airflow): a run that finds the warehouse's lock taken
    exits 1 at once, naming the warehouse and the lock, and touches nothing."""
    from paritrana.settings import resolve_home
    from paritrana.warehouse import exclusive

    home, landing = tmp_path / "home", tmp_path / "landing"
    landing.mkdir()
    paths = resolve_home(home)
    with exclusive(paths):
        out = paritrana("run", "--landing", str(landing), "--year", "2024", "--home", str(home))
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert f"another run is writing {paths.warehouse} (lock {paths.lock})" in out.stderr
    assert "Traceback" not in out.stderr and not paths.warehouse.exists()


def test_a_run_by_hand_waits_for_no_airflow_run_and_says_whose_turn_it_is(tmp_path):
    """An Airflow run takes the lock task by task, so between two of its tasks the lock is
    free: a `paritrana run` then came between its build and its gate, and that run failed
    to publish. It now stops, exit 1, touching nothing, naming the run that holds the turn
    and what to do if that run is over; a queue of waiting runs alone does not stop it."""
    import json

    from paritrana import run_turns
    from paritrana.settings import resolve_home

    home, landing = tmp_path / "home", tmp_path / "landing"
    landing.mkdir()
    paths = resolve_home(home)
    holder = run_turns.Run("paritrana_nightly", "scheduled__2025-01-03T18:00:00+00:00",
                           "2025-01-03T18:00:02.123456+00:00")
    run_turns.take(paths, holder, lambda run: True)
    no_airflow = {k: v for k, v in os.environ.items() if k != "AIRFLOW_HOME"}
    out = paritrana("run", "--landing", str(landing), "--year", "2024", "--home", str(home), env=no_airflow)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert ("run scheduled__2025-01-03T18:00:00+00:00 of paritrana_nightly (started "
            "2025-01-03T18:00:02.123456+00:00) holds the warehouse's turn") in out.stderr
    # with no Airflow to ask whether that run ended (test_dag.py asks one), the user is told how
    assert f"; there is no Airflow to ask (AIRFLOW_HOME is not set, and {home / 'airflow'} holds no" in out.stderr
    assert f"delete {paths.turn} first" in out.stderr and "Traceback" not in out.stderr
    assert not paths.warehouse.exists()
    # only waiters: nobody is between two writes
    paths.turn.write_text(json.dumps({"holder": None, "since": None, "waiting": [
        {"dag_id": "paritrana_nightly", "run_id": "backfill__x", "started": "2025-01-03T18:00:03+00:00"}]}))
    out = paritrana("run", "--landing", str(landing), "--year", "2024", "--home", str(home))
    assert "holds the warehouse's turn" not in out.stderr and paths.warehouse.exists(), out.stderr[-2000:]


def test_a_session_holding_the_working_file_stops_a_run_with_who_and_what_to_do(tmp_path):
    """DuckDB lets no process write a file that another holds open, read-only included: an
    analyst's session on warehouse.duckdb instead of analytics.duckdb made the run end in
    DuckDB's traceback, whose advice (open it read-only) is for the reader. Now the run and
    dbt's own connection both stop with the holder's PID and the way on; the same command
    then finishes the job."""
    import datetime as dt

    from paritrana import methodology, transform
    from paritrana.settings import resolve_home
    from paritrana.warehouse import WarehouseBusy, writer

    from paritrana.generator import generate

    home, landing = tmp_path / "home", tmp_path / "landing"
    generate(landing, "demo", scale=0.2)  # deliveries to publish: an empty ranking is refused (0.3.7)
    paths = resolve_home(home)
    with writer(paths) as con:
        con.execute("create table t as select 1 as x")
    session = _holding(paths.warehouse, read_only=True)
    try:
        out = paritrana("run", "--landing", str(landing), "--year", "2024", "--home", str(home))
        assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
        assert f"the warehouse {paths.warehouse} is open in another process" in out.stderr
        assert f"PID {session.pid})" in out.stderr and str(paths.reader_copy) in out.stderr
        assert "Traceback" not in out.stderr and "read-only mode" not in out.stderr
        with pytest.raises(WarehouseBusy, match=f"PID {session.pid}"):  # dbt opens its own connection
            transform.build(paths, 2024, dt.date(2024, 12, 31), methodology.load(), lambda _: None)
    finally:
        session.communicate("")
    out = paritrana("run", "--landing", str(landing), "--year", "2024", "--home", str(home))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    # The analysts' copy opened read-write (the DuckDB CLI's default) is named as what is held
    # when explain must read it (a publication from before basis/); from basis/ it is not stopped.
    session = _holding(paths.reader_copy, read_only=False)
    try:
        out = paritrana("explain", "--entity", "17", "--home", str(home))
        assert out.returncode == 0 and out.stdout.startswith("Provinsi Bengkulu (17)"), out.stderr
        shutil.rmtree(home / "published" / "2024" / "latest" / "basis")
        out = paritrana("explain", "--entity", "17", "--home", str(home))
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert f"{paths.reader_copy} is open for writing in another process" in out.stderr
        assert f"PID {session.pid})" in out.stderr and "the warehouse" not in out.stderr
    finally:
        session.communicate("")


def _holding(database, read_only: bool) -> subprocess.Popen:
    """Another process with the database open, as an analyst's session holds it."""
    session = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1], "
                                "read_only=sys.argv[2] == 'ro'); print('open', flush=True); sys.stdin.read()",
                                str(database), "ro" if read_only else "rw"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert session.stdout.readline().strip() == "open"
    return session


def test_a_bad_setting_is_refused_by_name_before_anything_is_loaded(tmp_path):
    """Tuning variables (README §Tuning) are checked at the start of a run: exit 1, the
    variable named, no traceback, and no file loaded."""
    import os

    landing = tmp_path / "landing"
    gen = paritrana("generate", "--landing", str(landing), "--profile", "demo", "--scale", "0.05")
    assert gen.returncode == 0, gen.stderr
    for name, value in (("PARITRANA_MEMORY_LIMIT", "abc"), ("PARITRANA_INGEST_MEMORY_LIMIT", "lots"),
                        ("PARITRANA_TEMP_STAGE_MAX_ROWS", "x"), ("PARITRANA_NIK_TOKEN", "bogus")):
        home = tmp_path / f"home-{name}"
        out = paritrana("run", "--landing", str(landing), "--year", "2024", "--home", str(home),
                        env={**os.environ, name: value})
        assert out.returncode == 1, (name, out.returncode, out.stderr[-2000:])
        assert name in out.stderr and repr(value) in out.stderr and "Traceback" not in out.stderr
        assert "loaded" not in out.stdout


def test_the_version_is_the_one_every_manifest_records(demo):
    import paritrana as package

    shown = paritrana("--version")
    assert shown.returncode == 0, shown.stderr
    manifest = json.loads((demo.home_dir / "published" / "2024" / "latest" / "manifest.json").read_text())
    assert shown.stdout == f"paritrana {manifest['code_version']}\n"
    # the package's version, and the commit of a checkout (CI runs one)
    assert re.fullmatch(re.escape(package.__version__) + r"(\+[0-9a-f]{12})?", manifest["code_version"])


def test_status_says_what_a_home_holds_and_what_its_next_build_will_do(demo, tmp_path):
    """A data engineer asks, before a night or after an upgrade, without waiting for a run:
    the last build and its version, whether the next build is incremental or full and why,
    the latest publication of each year, the run turn, and how current each daily extract
    is. A warehouse open in another process is named, and the rest still said."""
    import duckdb

    from paritrana import code_version, run_turns

    work = demo.copy(tmp_path / "w")
    latest = (work.home_dir / "published" / "2024" / "latest").resolve()
    out = paritrana("status", "--home", str(work.home_dir))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"home: {work.home_dir}"
    assert re.fullmatch(r"last build: [0-9a-f]{16} built, year 2024 as of 2024-12-31, by "
                        rf"{re.escape(code_version())} \(configuration sha256 [0-9a-f]{{12}}…\)", lines[2]), lines
    assert lines[3] == "next build: incremental"
    # the demo's deliveries reach 2025-01-02, after the run's as-of date
    assert lines[4] == ("daily extracts, as of the last build's date 2024-12-31: " + "; ".join(
        f"{e} to 2025-01-02 (after the as-of date)" for e in ("claims", "contributions", "employers", "participants")))
    assert lines[5:7] == ["published (latest of each year):",
                          f"  2024: {latest.name}, as of 2024-12-31, made "
                          f"{json.loads((latest / 'manifest.json').read_text())['created_at']} by {code_version()}"]
    build = re.search(r"last build: ([0-9a-f]{16}) ", lines[2]).group(1)
    copy = work.home_dir / "analytics.duckdb"
    assert lines[7] == f"analysts' copy: {copy} holds build {build}, year 2024 as of 2024-12-31, the warehouse's last"
    assert lines[8] == "run turn: free"

    with duckdb.connect(str(work.paths.warehouse)) as con:  # as a version before 0.3.14 leaves it
        con.execute("delete from raw.warehouse_settings where name = 'built_by_models'")
        # and as a later build leaves it that published nothing as the latest (a failed gate)
        con.execute("update raw.warehouse_settings set value = replace(value, ?, '0123456789abcdef') "
                    "where name = 'last_build'", [build])
    run_turns.take(work.paths, run_turns.Run("paritrana_nightly", "scheduled__x", "2025-01-03T18:00:02+00:00"),
                   lambda run: True)
    out = paritrana("status", "--home", str(work.home_dir),
                    env={k: v for k, v in os.environ.items() if k != "AIRFLOW_HOME"})
    assert "\nnext build: in full, incremental models too: its last build was by a version before 0.3.14, which does " \
        "not record its dbt models\n" in out.stdout
    assert f"\nanalysts' copy: {copy} holds build {build}, year 2024 as of 2024-12-31, not the warehouse's last " \
        "(0123456789abcdef): the runs since published none that became the latest\n" in out.stdout
    assert out.stdout.endswith("\nrun turn: held by paritrana_nightly run scheduled__x (started "
                               "2025-01-03T18:00:02+00:00); there is no Airflow to ask (AIRFLOW_HOME is not set, "
                               f"and {work.home_dir / 'airflow'} holds no Airflow database)\n")
    with duckdb.connect(str(copy)):  # an analyst's session without -readonly
        held = paritrana("status", "--home", str(work.home_dir))
    assert re.search(rf"\nanalysts' copy: {re.escape(str(copy))} is open for writing in another process \(.+, PID \d+\): "
                     r"a session that opened it without -readonly\n", held.stdout), held.stdout
    copy.unlink()  # and a file that is not a DuckDB database is said as it is, not as a lock
    copy.write_text("not a database")
    unreadable = paritrana("status", "--home", str(work.home_dir))
    assert f"\nanalysts' copy: {copy} could not be read: IO Error: " in unreadable.stdout, unreadable.stdout
    with duckdb.connect(str(work.paths.warehouse)):
        busy = paritrana("status", "--home", str(work.home_dir))
    assert busy.returncode == 0 and "Traceback" not in busy.stderr, busy.stderr
    assert re.search(rf"\nwarehouse: {re.escape(str(work.paths.warehouse))} is open in another process \(.+, PID "
                     r"\d+\): a run writing it, or a session that opened it for writing; ask again when it has closed\n"
                     r"published \(latest of each year\):\n", busy.stdout), busy.stdout
    empty = paritrana("status", "--home", str(tmp_path / "new"))
    assert empty.stdout.splitlines()[1:] == [f"warehouse: none yet at {tmp_path / 'new' / 'warehouse.duckdb'}: the "
                                             "first run builds it", "published: nothing yet",
                                             f"analysts' copy: none yet at {tmp_path / 'new' / 'analytics.duckdb'}: "
                                             "the first publication writes it", "run turn: free"]
