"""The nightly DAG (issue 5): integrity, and the real DAG run with dag.test() end to end."""
from __future__ import annotations

import ast
import csv
import datetime as dt
import hashlib
import json
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import yaml

from conftest import paritrana, write_delivery
from paritrana import run_turns
from paritrana.orchestration import full_refresh_param, run_dates, safe_run_id

DAGS = Path(__file__).resolve().parent.parent / "dags"
ROOT = DAGS.parent


def test_dags_import_fast_with_owners_tags_and_retries():
    """DagBag in a fresh process (as the DAG processor parses it): no errors, under 2 s."""
    code = (
        "import json, time\n"
        "from airflow.models import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAGS)!r})\n"
        "stats = {s.file: s.duration.total_seconds() if hasattr(s.duration, 'total_seconds') else s.duration "
        "for s in bag.dagbag_stats}\n"
        "dags = {d.dag_id: {'tags': sorted(d.tags), 'owners': d.owner, 'max_active_runs': d.max_active_runs,"
        " 'tasks': {t.task_id: {'retries': t.retries, 'owner': t.owner} for t in d.tasks}} for d in bag.dags.values()}\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()}, 'stats': stats, 'dags': dags}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert report["dags"], "no DAG found"
    assert all(seconds < 2.0 for seconds in report["stats"].values()), report["stats"]
    for dag_id, d in report["dags"].items():
        assert d["tags"] and d["max_active_runs"] == 1
        for task_id, t in d["tasks"].items():
            assert t["owner"] == "paritrana-data-engineering", task_id
            # a failed check fails the gate for good (AirflowFailException), a busy warehouse retries
            assert t["retries"] >= (0 if task_id in ("summary", "find_deliveries") else 1), task_id
    tasks = report["dags"]["paritrana_nightly"]["tasks"]
    assert set(tasks) == {"wait_for_turn", "find_deliveries", "ingest", "dbt_build", "quality_gate", "publish",
                          "summary"}


@pytest.mark.parametrize("path", sorted(DAGS.glob("*.py")), ids=lambda p: p.name)
def test_dag_files_do_no_work_at_parse_time(path):
    """Module level holds only imports of airflow/stdlib, constants, functions and the DAG
    call: the product's code is imported inside tasks, never when the file is parsed."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(m.startswith(("paritrana", "ingestion", "duckdb", "great_expectations", "dbt"))
                           for m in modules), ast.unparse(node)
        elif isinstance(node, ast.Expr):
            assert isinstance(node.value, ast.Constant) or (
                isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)), ast.unparse(node)
        elif isinstance(node, ast.Assign):
            for call in (n for n in ast.walk(node.value) if isinstance(n, ast.Call)):
                assert ast.unparse(call.func) in ("dt.timedelta", "int", "os.environ.get"), ast.unparse(call)
        else:
            assert isinstance(node, ast.FunctionDef), ast.unparse(node)[:80]


def test_run_dates_follow_the_logical_date():
    jkt = dt.timezone(dt.timedelta(hours=7))
    night = dt.datetime(2025, 3, 5, 1, 0, tzinfo=jkt)
    assert run_dates(night) == (2025, dt.date(2025, 3, 4))
    assert run_dates(night.astimezone(dt.timezone.utc)) == (2025, dt.date(2025, 3, 4))
    assert run_dates(dt.datetime(2025, 1, 1, 1, 0, tzinfo=jkt)) == (2024, dt.date(2024, 12, 31))
    assert run_dates(night, year=2024) == (2024, dt.date(2024, 12, 31))
    assert run_dates(dt.datetime(2024, 6, 2, 1, 0, tzinfo=jkt), year=2024) == (2024, dt.date(2024, 6, 1))
    with pytest.raises(ValueError, match="as-of date 2024-06-01 is not in the assessment year 2025"):
        run_dates(dt.datetime(2024, 6, 2, 1, 0, tzinfo=jkt), year=2025)  # a night before the year
    # the trigger form gives text: a year as text counts, an empty field is no year
    assert run_dates(night, year="2024") == (2024, dt.date(2024, 12, 31))
    assert run_dates(night, year=" ") == (2025, dt.date(2025, 3, 4))
    with pytest.raises(ValueError, match="param year must be a year such as 2024 \\(or empty\\), not '20x4'"):
        run_dates(night, year="20x4")
    # the param is named as the trigger form names it, not as the command line's option
    with pytest.raises(ValueError, match="^the DAG's param year must be from 2017, the award's first year, "
                                         "to 9998 \\(got 1999\\)$"):
        run_dates(night, year="1999")
    assert safe_run_id("scheduled__2025-01-01T18:00:00+00:00") == "scheduled__2025-01-01T18-00-00-00-00"


def test_a_night_with_no_as_of_date_in_its_year_fails_at_the_first_task_saying_why(tmp_path):
    """A 2024 night is scheduled (the DAG starts in 2017, the award's first year), and with
    year 2025 it has no as-of date in that year (methodology §1): the run fails at
    find_deliveries with the reason, nothing loaded. A night before the DAG's start_date
    runs no task, and dag-test says so instead of reporting an empty success."""
    landing, home = tmp_path / "landing", tmp_path / "home"
    landing.mkdir()
    out = paritrana("dag-test", "--landing", str(landing), "--home", str(home), "--date", "2024-06-02",
                    "--year", "2025", timeout=600)
    # 1, as `run` exits for any failure but the gate's (2 was any failed DAG run before 0.3.6)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "as-of date 2024-06-01 is not in the assessment year 2025" in out.stdout + out.stderr
    assert re.search(r"find_deliveries\s+failed", out.stdout), out.stdout[-3000:]
    assert not (home / "warehouse.duckdb").exists()
    early = paritrana("dag-test", "--landing", str(landing), "--home", str(home), "--date", "2016-06-02",
                      timeout=600)
    assert early.returncode == 1, early.stdout[-3000:] + early.stderr[-3000:]
    assert "ran no task for the night of 2016-06-02" in early.stderr and "Traceback" not in early.stderr


def test_a_first_night_with_nothing_ready_publishes_no_empty_ranking_and_says_what_waits(tmp_path):
    """Before 0.3.7 such a night failed dbt_build with DuckDB's "schema raw does not
    exist" (no ingest task ran to make the raw layer), its summary said only "no new files"
    of a data file waiting for its control file; and `run` published four empty rankings,
    every check passed, as the latest. Now the build makes the raw layer, the gate refuses
    empty rankings by name, and the summary says what waits and which checks failed."""
    landing = tmp_path / "landing"
    (landing / ".upload").mkdir(parents=True)
    (landing / "claims__2025-01-01.csv").write_text("claim_id\n")  # its control file is still to come
    write_delivery(landing / ".upload", "participants__2025-01-01.csv", "kpj\n")  # hidden until moved
    night = paritrana("dag-test", "--landing", str(landing), "--home", str(tmp_path / "dag"), "--date",
                      "2025-01-02", "--year", "2024", timeout=600)
    assert night.returncode == 2, night.stdout[-3000:] + night.stderr[-3000:]
    assert re.search(r"dbt_build +success", night.stdout) and re.search(r"quality_gate +failed", night.stdout)
    assert "\nfiles: no new files, 2 ignored (hidden or partial)\n" in night.stdout
    assert "\nwaiting claims__2025-01-01.csv: no control file yet\n" in night.stdout
    assert "\nignored .upload/participants__2025-01-01.csv: hidden" in night.stdout
    assert re.search(r"\nchecks: \d+ run, 3 blocking failed; file://", night.stdout), night.stdout[-3000:]
    for ranking in ("pemda_indicators", "badan_usaha_indicators", "umk_indicators"):
        assert (f"\nFAILED marts.{ranking}.expect_table_row_count_to_be_between: observed 0, "
                "expected {'min_value': 1}") in night.stdout
    assert "\npublished: nothing; 2024 has no publication yet\n" in night.stdout  # not "the previous one stays"
    assert not (tmp_path / "dag" / "published").exists()

    run = paritrana("run", "--landing", str(landing), "--home", str(tmp_path / "run"), "--year", "2024")
    assert run.returncode == 2, run.stdout[-3000:] + run.stderr[-3000:]
    assert "FAILED marts.umk_indicators.expect_table_row_count_to_be_between: observed 0" in run.stderr
    assert not (tmp_path / "run" / "published").exists()


def test_a_long_summary_keeps_its_counts_and_outcome_in_the_run_note():
    """Airflow keeps 1,000 characters of a run note: the note was the summary's first
    1,000, so a night with many rejected files lost the line saying what was published."""
    from paritrana.orchestration import NOTE_LIMIT, fit_note

    summary = "\n".join(["Paritrana run r: year 2024, as of 2024-12-31", "files: 40 rejected",
                         "rows: 0 read = 0 loaded + 0 quarantined + 0 duplicates"]
                        + [f"rejected claims__2025-01-{d:02}.csv: MISSING_COLUMN (required column(s) absent)"
                           for d in range(1, 31)]
                        + ["checks: 56 run, 1 blocking failed; file:///home/gx/index.html",
                           "warning raw.files_mostly_quarantined.expect_column_values_to_be_between(quarantined_share)"
                           " on file_name=claims__2025-01-31.csv (quarantined_share 1.0): observed {}",
                           "FAILED marts.umk_indicators.expect_table_row_count_to_be_between: observed 0",
                           "published: nothing; 2024 has no publication yet"])
    note = fit_note(summary)
    assert len(summary) > NOTE_LIMIT >= len(note)
    lines = note.splitlines()
    assert lines[:3] == summary.splitlines()[:3] and lines[-4:] == summary.splitlines()[-4:]
    assert lines[3] == "rejected claims__2025-01-01.csv: MISSING_COLUMN (required column(s) absent)"
    dropped = 30 - sum(line.startswith("rejected ") for line in lines)
    assert dropped > 0 and f"… {dropped} more lines (files, checks) in the summary task's log" in lines
    # past the files' lines, the warning gives way before the failed check
    many = summary.replace("observed {}", "observed {}" + " ." * 400)
    kept = fit_note(many).splitlines()
    assert not any(line.startswith("warning ") for line in kept) and kept[-2:] == many.splitlines()[-2:]
    assert fit_note("short\nsummary") == "short\nsummary"


def test_a_gate_that_stopped_before_its_verdict_is_not_said_to_have_failed_its_checks():
    """A gate task that failed on a busy warehouse (a backfill's other run held it) was
    summed up as "the quality gate did not pass", as if checks had failed."""
    import datetime as dt

    from paritrana.orchestration import summarize

    states = {"wait_for_turn": "success", "find_deliveries": "success", "dbt_build": "success",
              "quality_gate": "failed", "publish": "upstream_failed"}
    text = summarize("night", 2024, dt.date(2024, 12, 31), [], {"models": 32, "data_tests": 70, "seconds": 6.0,
                                                                 "dbt_docs": "docs"}, None, None, states)
    assert "\nchecks: the quality gate stopped before it judged the checks (its log says why)\n" in text
    assert "did not pass" not in text and "\nfailed: quality_gate (each task's log says why); not run: publish\n" in text
    failed = {"passed": False, "data_docs": "file:///gx", "checks": [
        {"name": "marts.umk_indicators.expect_table_row_count_to_be_between", "severity": "blocking",
         "passed": False, "observed": 0, "threshold": {"min_value": 1}}]}
    judged = summarize("night", 2024, dt.date(2024, 12, 31), [], None, None, None, states, gate_report=failed)
    assert "\nchecks: 1 run, 1 blocking failed; file:///gx\n" in judged and "stopped before" not in judged


def test_a_national_summary_shows_five_provinces_and_says_where_the_others_are():
    """A national night's summary listed the first five of 38 provinces' paid claims and
    no more, as if the country had five: the rest are now counted and their table named."""
    import datetime as dt

    from ingestion.loader import IngestReport
    from paritrana.orchestration import summarize
    from paritrana.pipeline import RunResult, summary

    provinces = [(f"{11 + i}", f"Provinsi P{i}", 100 + i, 1_000_000 * i, i, 10_000 * i) for i in range(38)]
    states = {t: "success" for t in ("wait_for_turn", "find_deliveries", "dbt_build", "quality_gate", "publish")}
    published = {"folder": "/home/published/2024/night", "provinces": provinces}
    text = summarize("night", 2024, dt.date(2024, 12, 31), [], None, None, published, states)
    shown = [line for line in text.splitlines() if " paid claims, " in line]
    assert shown == [f"Provinsi P{i} ({11 + i}): {100 + i:,} paid claims, Rp{1_000_000 * i:,}; "
                     f"{i:,} scholarship children, Rp{10_000 * i:,}" for i in range(5)]
    assert ("\n... and 33 more provinces: marts.pemda_indicators where level = 'PROVINSI' (columns "
            "claims_paid_count, claims_paid_idr, scholarship_children, scholarship_idr)") in text

    run = RunResult("r", 2024, dt.date(2024, 12, 31), IngestReport([], [], [], [], []), Path("runs/r.json"))
    run.highlights = {"provinces": provinces[:1]}
    assert "  Provinsi P0 (11), 2024: 100 paid claims, Rp0; 0 scholarship children, Rp0" in summary(run)
    assert "more provinces" not in summary(run)
    run.highlights = {"provinces": provinces[:6]}
    assert "\n  ... and 1 more province: marts.pemda_indicators" in summary(run)


def test_the_dbt_build_task_says_in_the_summary_why_it_rebuilt_in_full(demo, tmp_path):
    """The first night after an upgrade from before 0.3.14 rebuilds the incremental models in
    full (the warehouse recorded no dbt models): the task's XCom and the run's summary say so."""
    from paritrana.orchestration import build, summarize

    work = demo.copy(tmp_path / "w")
    with duckdb.connect(str(work.paths.warehouse)) as con:
        con.execute("delete from raw.warehouse_settings where name = 'built_by_models'")
    built = build(work.paths, 2024, dt.date(2024, 12, 31), None)
    assert built["rebuilt_because"] == \
        "its last build was by a version before 0.3.14, which does not record its dbt models"
    states = {t: "success" for t in ("wait_for_turn", "find_deliveries", "dbt_build", "quality_gate", "publish")}
    text = summarize("night", 2024, dt.date(2024, 12, 31), [], built, None, None, states)
    assert f"\nrebuilt in full (incremental models too): {built['rebuilt_because']}\n" in text
    assert build(work.paths, 2024, dt.date(2024, 12, 31), None)["rebuilt_because"] is None


def test_a_failed_task_is_reported_at_once_and_named_in_the_summary(demo, tmp_path):
    """dag-test and the demo run one night in-process: a task that fails is not retried with
    back-off (dag.test() waited 2, then 4 minutes, logging a warning every second). The run
    summary names the failed tasks and the ones that could not run, where it said "no new
    files" and "the quality gate did not pass" of a gate that never ran; the exit is 1, as
    `run` exits for anything but a failed gate. Here an analyst's session holds the working
    file, so every ingest task stops. And had its summary not run, `paritrana run` would find
    the failed run holding the warehouse's turn: it asks Airflow, and releases a turn whose
    run Airflow shows ended."""
    work = demo.copy(tmp_path / "d")
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1], "
                               "read_only=True); print('open', flush=True); sys.stdin.read()",
                               str(work.paths.warehouse)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        t0 = time.time()
        out = paritrana("dag-test", "--landing", str(work.landing), "--home", str(work.home_dir), "--date",
                        "2025-01-04", "--year", "2024", timeout=600)
        elapsed = time.time() - t0
    finally:
        holder.communicate("")
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert elapsed < 100, elapsed  # a first retry alone would wait 120 s
    assert f"the warehouse {work.paths.warehouse} is open in another process" in out.stdout + out.stderr
    # each mapped ingest by its extract (map_index_template), as the UI shows it, not ingest[0]
    assert re.search(r"\nfailed: ingest\[claims\], ingest\[contributions\].*\(each task's log says why\); not "
                     r"run: dbt_build, publish, quality_gate\n", out.stdout), out.stdout[-3000:]
    assert re.search(r"  ingest\[participants\] +failed ", out.stdout), out.stdout[-3000:]
    # a failed ingest task records no files: not "no new files"
    assert re.search(r"\nfiles: none recorded(, 1 ignored \(hidden or partial\))?; not counted: the [2-9] failed "
                     r"ingest tasks\n", out.stdout), out.stdout[-3000:]
    # and the top of the rankings that follows is said to be an earlier run's
    latest = (work.home_dir / "published" / "2024" / "latest").resolve().name
    assert f"this run published nothing; the latest publication of 2024 stays {latest}:" in out.stdout
    assert f"\npublished: nothing; the latest publication of 2024 stays {latest}\n" in out.stdout
    assert "checks: the quality gate did not run" in out.stdout and "did not pass" not in out.stdout

    # Had its summary not run (a worker killed), the failed run would hold the warehouse's
    # turn: `paritrana run`, which is no Airflow task, asks this home's Airflow of the holder
    with sqlite3.connect(work.home_dir / "airflow" / "airflow.db") as db:
        (run_id, state), = db.execute("select run_id, state from dag_run where dag_id = 'paritrana_nightly'")
    assert state == "failed"
    airflow, turn = work.home_dir / "airflow", work.paths.turn

    def held_by(holder: str, airflow_state: str = "failed") -> None:
        with sqlite3.connect(airflow / "airflow.db") as db:
            db.execute("update dag_run set state = ? where run_id = ?", (airflow_state, run_id))
        turn.write_text(json.dumps({"holder": {"dag_id": "paritrana_nightly", "run_id": holder,
                                               "started": "2025-01-04T01:00:02+00:00"}, "since": None, "waiting": []}))

    def by_hand(command: str = "run"):
        where = ("--landing", str(work.landing), "--year", "2024") if command == "run" else ()
        return paritrana(command, *where, "--home", str(work.home_dir), unset=("AIRFLOW_HOME",))

    # a run this Airflow does not know may be another Airflow's: the turn stays held
    held_by("scheduled__2025-01-03T18:00:00+00:00")
    out = by_hand()
    assert out.returncode == 1 and (f"this home's Airflow ({airflow}) knows no run scheduled__2025-01-03T18:00:00+00:00 "
                                    "of paritrana_nightly") in out.stderr, out.stderr[-2000:]
    # nor can an Airflow that does not answer (AIRFLOW_HOME names one never set up): its reason is said
    unready = tmp_path / "no airflow yet"
    status = paritrana("status", "--home", str(work.home_dir), env={"AIRFLOW_HOME": str(unready)}).stdout
    assert f"; Airflow (AIRFLOW_HOME={unready}) did not answer (Database migration required. Please run `airflow db " \
        "migrate`." in status, status
    # still running in Airflow (its scheduler gone): held until someone marks it failed
    held_by(run_id, "running")
    out = by_hand()
    assert out.returncode == 1 and f"this home's Airflow ({airflow}) shows it running. " in out.stderr
    assert "stays running until it is marked failed in Airflow" in out.stderr, out.stderr[-2000:]
    # marked failed: `status` says the next run releases it, and the run does, and publishes
    held_by(run_id, "failed")
    status = by_hand("status").stdout
    assert (f"\nrun turn: held by paritrana_nightly run {run_id} (started 2025-01-04T01:00:02+00:00); this home's "
            f"Airflow ({airflow}) shows it failed: it ended without giving the turn back, and the next `paritrana run` "
            "releases it\n") in status, status
    out = by_hand()
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert (f"the warehouse's turn was held by run {run_id} of paritrana_nightly (started 2025-01-04T01:00:02+00:00); "
            f"this home's Airflow ({airflow}) shows it failed: it ended without giving the turn back, so the turn is "
            "released") in out.stdout
    assert run_turns.holder(work.paths) is None and "\n  published: " in out.stdout


def _published_digests(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def test_dag_runs_end_to_end_repeatably_and_night_after_night(tmp_path):
    """The real DAG with dag.test(): a first night publishes; the same night again over the
    same deliveries publishes identical files; the next night ingests the day's delta."""
    from paritrana.generator import generate

    full = tmp_path / "generated"
    generate(full, "demo", scale=0.5, days_after=2)
    # a space and an apostrophe in HOME: Airflow's metadata, dbt, GX and DuckDB all live there
    landing, home = tmp_path / "landing", tmp_path / "the team's home"
    landing.mkdir()
    for f in full.iterdir():
        if f.is_file() and "__2024-12-31" in f.name:
            shutil.copy2(f, landing / f.name)

    def night(date):
        t0 = time.time()
        result = paritrana("dag-test", "--landing", str(landing), "--home", str(home), "--date", date,
                           "--year", "2024", timeout=900)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
        return result, time.time() - t0

    # a turn left by a scheduler's run that no longer exists (a crashed machine, a deleted
    # run) holds nobody: Airflow knows no such live run
    home.mkdir()
    (home / ".run_turn.json").write_text(json.dumps({"holder": {
        "dag_id": "paritrana_nightly", "run_id": "scheduled__2024-12-30T18:00:00+00:00",
        "started": "2024-12-30T18:00:01+00:00"}, "since": "2024-12-30T18:00:02+00:00", "waiting": []}))
    first, _ = night("2025-01-01")
    assert "DAG paritrana_nightly" in first.stdout and ": success in" in first.stdout
    assert not (home / ".run_turn.json").exists()  # taken, then given back by the summary
    # the run's own output, without upstream warnings a user cannot act on
    assert "starlette.testclient" not in first.stdout + first.stderr and "leaked" not in first.stderr
    assert "determine_kwargs" not in first.stdout + first.stderr  # the sensor module's upstream deprecation
    # the tasks in the order they run, a mapped ingest named by its extract
    at = [first.stdout.index(f"  {task} ") for task in ("wait_for_turn", "find_deliveries", "ingest[claims]", "ingest[participants]",
                                                         "dbt_build", "quality_gate", "publish", "summary")]
    assert at == sorted(at), first.stdout[:3000]
    # the analysts' command is printed ready to paste into a shell
    analysts = next(line for line in first.stdout.splitlines() if line.startswith("analysts:"))
    assert shlex.split(analysts.removeprefix("analysts:"))[1:] == ["-readonly", str(home / "analytics.duckdb")]
    # and the evaluators' example runs as printed, on the top entity of the first ranking
    evaluators = shlex.split(next(line for line in first.stdout.splitlines() if line.startswith("evaluators:"))
                             .removeprefix("evaluators:"))
    explained = subprocess.run(evaluators, capture_output=True, text=True, timeout=120)
    assert explained.returncode == 0 and f"({evaluators[3]})" in explained.stdout.splitlines()[0], explained.stderr
    lines = first.stdout.splitlines()
    versus = shlex.split(lines[lines.index(next(line for line in lines if line.startswith("evaluators:"))) + 1])
    compared = subprocess.run(versus, capture_output=True, text=True, timeout=120)
    assert (versus[2], versus[4]) == ("--entity", "--versus") and compared.returncode == 0, compared.stderr
    assert "\nagainst " in compared.stdout and f"({versus[3]} ahead by " in compared.stdout
    latest = home / "published" / "2024" / "latest"
    run1 = latest.resolve()
    manifest1 = json.loads((run1 / "manifest.json").read_text())
    assert manifest1["as_of"] == "2024-12-31" and manifest1["run_id"] == run1.name
    for f in manifest1["files"]:
        assert hashlib.sha256((run1 / f["file"]).read_bytes()).hexdigest() == f["sha256"]
    assert "published: " in first.stdout and "paid claims" in first.stdout  # the run note / summary
    # what analysts open, named as they open it (not the copies .analytics-a/-b behind it)
    assert re.search(rf"\nanalysts' copy {re.escape(str(home / 'analytics.duckdb'))}: holds this publication's build "
                     r"\([\d.,]+ MiB written, and a second copy for the next night to patch\)\n", first.stdout)
    assert ".analytics-a" not in first.stdout
    # the top of each ranking shows each total as its file publishes it (it showed 83.4 for 83.4023)
    lines = first.stdout.splitlines()
    for ranking in ("pemda_provinsi", "pemda_kabkota", "badan_usaha", "umk"):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"top of rankings_{ranking}"))
        rank, code, *_, total = lines[at + 1].split()
        with (run1 / f"rankings_{ranking}.csv").open() as f:
            published = next(r for r in csv.DictReader(f) if r["entity_code"] == code)
        assert (rank, total) == (f"{published['rank_national']}.", published["total_score"]), lines[at + 1]

    second, _ = night("2025-01-01")
    run2 = latest.resolve()
    assert run2 != run1 and _published_digests(run2) == _published_digests(run1)
    # patched, or rewritten in full: a demo's warehouse is three chunks, and a build changes them all
    assert re.search(r"\nanalysts' copy .*: holds this publication's build \([\d.,]+ (of [\d.,]+ MiB rewritten|"
                     r"MiB rewritten in full)\)\n", second.stdout), second.stdout[-3000:]

    for f in full.iterdir():  # the day's delta arrives
        if f.is_file() and "__2025-01-01" in f.name:
            shutil.copy2(f, landing / f.name)
    shutil.copytree(full / "resent", landing / "resent")  # and the provider sends its claims again
    # with a file that is refused and one whose control file is still to come
    write_delivery(landing, "participants__2025-01-02.csv", "kpj,nik\n17000000001,1771014508900003\n")
    (landing / "claims__2025-01-02.csv").write_text("claim_id\n")
    # and one whose every row is quarantined (dates in DD/MM/YYYY): loaded, warned about
    write_delivery(landing, "employers__2025-01-02.csv",
                   "npp,name,size_class,sector,region_code,reported_workforce,status,effective_date\n"
                   + "".join(f"BK90000{i},Usaha {i},MIKRO,G,17.71,3,ACTIVE,0{i}/01/2025\n" for i in range(1, 4)))
    third, _ = night("2025-01-02")
    # the engineer reads which file the gate's warning is about, as `paritrana run` says it
    assert "\nwarning raw.files_mostly_quarantined.expect_column_values_to_be_between(quarantined_share) on " \
           "file_name=employers__2025-01-02.csv (quarantined_share 1.0): observed {'unexpected_count': 1," \
           in third.stdout
    assert "employers__2025-01-02.csv: every row (3) quarantined: BAD_TYPE:effective_date 3" in third.stdout
    # the engineer reads in the run's summary which file was refused and why, and what waits
    assert ("rejected participants__2025-01-02.csv: MISSING_COLUMN (required column(s) absent from the header: "
            "full_name,") in third.stdout
    assert "waiting claims__2025-01-02.csv: no control file yet" in third.stdout
    # a skipped file is said in words, as `paritrana run` says it (not `skipped_redelivery`)
    assert re.search(r"\nfiles: [^\n]*\b1 skipped as re-delivered \(the same bytes as a loaded file\)", third.stdout)
    # and where the day's quarantined rows are (the delta plants some)
    assert re.search(r"\nrows: [\d,]+ read = [\d,]+ loaded \+ [1-9][\d,]* quarantined \+ \d+ duplicates; each "
                     r"quarantined row \(file, line, reasons, masked content\) is in raw\.quarantine\n", third.stdout)
    run3 = latest.resolve()
    manifest3 = json.loads((run3 / "manifest.json").read_text())
    dates = {i["business_date"] for i in manifest3["inputs"]}
    assert dates == {"2024-12-31", "2025-01-01", "2025-01-02"} and manifest3["as_of"] == "2024-12-31"
    assert "participants__2025-01-02.csv" not in {i["file_name"] for i in manifest3["inputs"]}  # the refused file
    assert _published_digests(run3) != _published_digests(run1)  # re-versioned claims change results
    with duckdb.connect(str(home / "analytics.duckdb"), read_only=True) as con:
        assert con.execute("select count(distinct run_id) from raw.load_ledger").fetchone()[0] == 2


def test_compose_agrees_with_the_lock_and_the_dag():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    lock = (ROOT / "requirements.lock").read_text()
    airflow_version = next(line.split("==")[1] for line in lock.splitlines() if line.startswith("apache-airflow=="))
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"FROM apache/airflow:{airflow_version}-python3.11" in dockerfile
    services = compose["services"]
    assert {"postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-worker", "airflow-triggerer", "airflow-init"} <= set(services)
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
                 "airflow-triggerer", "airflow-init"):
        s = services[name]
        env = s["environment"]
        assert s["image"].endswith(f":{airflow_version}") and s["build"] == "."
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        mounts = {m.split(":")[1]: m.split(":")[0] for m in s["volumes"]}
        assert mounts["/opt/paritrana"] == "./"
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/paritrana/dags"
        assert mounts[env["PARITRANA_HOME"]] in compose["volumes"]
        assert mounts[env["PARITRANA_LANDING"]] in compose["volumes"]
    assert "--concurrency 1" in services["airflow-worker"]["command"]
    assert (ROOT / "dags" / "paritrana_nightly.py").exists()
    # The environment variables the compose file sets are the ones the DAG's tasks read.
    orchestration = (ROOT / "paritrana" / "orchestration.py").read_text()
    assert 'LANDING_ENV = "PARITRANA_LANDING"' in orchestration
    assert 'HOME_ENV = "PARITRANA_HOME"' in (ROOT / "paritrana" / "settings.py").read_text()



def test_the_full_refresh_param_reads_text_as_a_cli_conf_gives_it():
    """`airflow dags trigger -c '{"full_refresh": "false"}'` passes text, which bool() took
    for true: a night then rebuilt every model from scratch. Anything else is refused."""
    assert [full_refresh_param(v) for v in (None, False, "", "false", "False", "0", "no", " off ")] == [False] * 8
    assert [full_refresh_param(v) for v in (True, "true", "TRUE", "1", 1, "yes", "on")] == [True] * 7
    with pytest.raises(ValueError, match="param full_refresh must be true or false, not 'sometimes'"):
        full_refresh_param("sometimes")
