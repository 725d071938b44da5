"""The DAG under Airflow's own scheduler (`airflow standalone`: scheduler, DAG processor,
API server, LocalExecutor, SQLite metadata), as a data engineer runs it: a backfill of two
nights beside the scheduled night, three runs at once. dag.test() runs one run in one
process; only the scheduler shows runs overlapping and tasks without Airflow's database."""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from paritrana.generator import generate
from paritrana.orchestration import safe_run_id

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).parent / "airflow")
DAG_ID = "paritrana_nightly"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _airflow(env: dict, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([AIRFLOW, *args], capture_output=True, text=True, env=env, timeout=timeout)


def _json(out: str):
    # the JSON line, after whatever warnings Airflow's CLI prints first
    return json.loads(next(line for line in out.splitlines() if line.startswith("[")))


def _metadata(home: Path, query: str, params: tuple = ()) -> list[tuple]:
    """Rows of Airflow's SQLite metadata, read-only. The waits below poll this, not the CLI:
    each `airflow` call costs about 4.5 CPU-seconds of imports, and a poll every few seconds
    took a third of a core from the runs under test and the suite's other worker."""
    try:
        with closing(sqlite3.connect(f"file:{home / 'airflow' / 'airflow.db'}?mode=ro", uri=True, timeout=10)) as db:
            return db.execute(query, params).fetchall()
    except sqlite3.OperationalError:  # not created yet, or its tables not yet migrated
        return []


def _logs(home: Path, run_id: str, task_id: str) -> str:
    folder = home / "airflow" / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"
    return "\n".join(p.read_text() for p in sorted(folder.rglob("*.log")))


@pytest.fixture
def scheduler(tmp_path):
    home, landing = tmp_path / "home", tmp_path / "landing"
    generate(landing, "demo", days_after=2)
    api = _free_port()
    env = {**os.environ,
           "AIRFLOW_HOME": str(home / "airflow"), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
           "AIRFLOW__CORE__PARALLELISM": "4",  # LocalExecutor's workers: 32 by default, on two cores
           "AIRFLOW__API__PORT": str(api), "AIRFLOW__API__BASE_URL": f"http://localhost:{api}",
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{api}/execution/",
           "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
           "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
           "PARITRANA_HOME": str(home), "PARITRANA_LANDING": str(landing),
           # quicker than the default minute; much quicker and Airflow 3.3 can take one poke's
           # late end for the next one's and fail the sensor (apache/airflow#71172), to retry
           "PARITRANA_TURN_POKE_SECONDS": "10",
           # standalone starts its components as `airflow` from the PATH, as the README says
           "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    (home / "airflow").mkdir(parents=True)
    with (tmp_path / "standalone.log").open("w") as out:
        process = subprocess.Popen([AIRFLOW, "standalone"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    try:
        yield home, env, tmp_path / "standalone.log"
    finally:
        # the whole session: standalone, its components and the LocalExecutor's workers
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
                process.wait(wait)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue


def test_a_backfill_beside_the_scheduled_night_runs_them_one_at_a_time_in_order(scheduler):
    home, env, log = scheduler
    deadline, created = time.monotonic() + 180, None
    while True:  # the DAG processor must have parsed the DAG before a backfill can name it
        if _metadata(home, "select 1 from serialized_dag where dag_id = ?", (DAG_ID,)):
            created = _airflow(env, "backfill", "create", "--dag-id", DAG_ID, "--from-date", "2025-01-01",
                               "--to-date", "2025-01-03", "--max-active-runs", "2")
            if created.returncode == 0:
                break
        assert time.monotonic() < deadline, (created.stderr[-2000:] if created else "the DAG was not parsed") \
            + "\n" + log.read_text()[-3000:]
        time.sleep(2)

    deadline = time.monotonic() + 600
    while True:  # an observer of the runs, not the behaviour under test: the CLI says the outcome below
        states = _metadata(home, "select state from dag_run where dag_id = ?", (DAG_ID,))
        if len(states) >= 3 and all(state in ("success", "failed") for state, in states):
            break
        assert time.monotonic() < deadline, f"runs not finished in 10 minutes: {states}\n{log.read_text()[-3000:]}"
        time.sleep(2)
    # one CLI call beside the scheduler's writes to SQLite once took over 120 s on a loaded machine
    runs = _json(_airflow(env, "dags", "list-runs", DAG_ID, "-o", "json", timeout=300).stdout)
    backfills = [r for r in runs if r["run_id"].startswith("backfill__")]
    assert len(runs) >= 3 and {r["state"] for r in runs} == {"success"}, runs
    assert len(backfills) == 2  # the nights of 2025-01-01 and 2025-01-02, beside last night's scheduled run

    held = {}  # each run holds the warehouse from its turn to the end of its summary
    for r in runs:
        tasks = {t["task_id"]: t for t in _json(_airflow(env, "tasks", "states-for-dag-run", DAG_ID, r["run_id"],
                                                         "-o", "json").stdout)}
        assert tasks["wait_for_turn"]["state"] == tasks["summary"]["state"] == "success"
        held[r["run_id"]] = (tasks["wait_for_turn"]["end_date"], tasks["summary"]["end_date"])
    spans = sorted(held.values())
    assert all(earlier[1] < later[0] for earlier, later in zip(spans, spans[1:])), held  # never two at once
    waits = "".join(_logs(home, r["run_id"], "wait_for_turn") for r in runs)
    assert "holds the warehouse's turn" in waits  # they did meet: three runs started together
    first, second = sorted(backfills, key=lambda r: r["logical_date"])
    assert held[first["run_id"]] < held[second["run_id"]]  # a backfill's nights in the order it made them
    assert not (home / ".run_turn.json").exists()  # given back by the last summary

    # each night published its own as-of date; the backfill's last night is 2025's latest
    for r, as_of in ((first, "2025-01-01"), (second, "2025-01-02")):
        folder = home / "published" / "2025" / safe_run_id(r["run_id"])
        assert json.loads((folder / "manifest.json").read_text())["as_of"] == as_of, folder
    assert (home / "published" / "2025" / "latest").resolve().name.startswith("backfill__2025-01-02")

    # a task under a scheduler cannot write its run's note: the summary says where it is instead
    summary = _logs(home, second["run_id"], "summary")
    assert "run summary" in summary and "in this task's XCom `summary`" in summary
    assert "could not set the DAG run note" not in summary
