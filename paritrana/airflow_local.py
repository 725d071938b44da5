"""Running the real DAG in-process (dag.test()) on the embedded default: SQLite metadata
under HOME/airflow, the DAG folder of this checkout. Used by `paritrana demo` and
`paritrana dag-test`. Airflow reads its configuration at import, so the environment is
prepared before anything imports airflow.
"""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

from .settings import Paths

DAGS_FOLDER = Path(__file__).resolve().parent.parent / "dags"
DAG_ID = "paritrana_nightly"


def embedded_environment(paths: Paths) -> dict[str, str]:
    """The embedded default's Airflow: its home and SQLite metadata under HOME/airflow."""
    airflow_home = paths.home / "airflow"
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
    }


def prepare_environment(paths: Paths, landing: Path) -> None:
    airflow_home = paths.home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    os.environ.update({
        **embedded_environment(paths),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
        "PARITRANA_HOME": str(paths.home),
        "PARITRANA_LANDING": str(landing),
    })
    # dag.test() prints every task's log to the terminal; warnings and errors are enough
    # there (the full logs stay under HOME/airflow/logs).
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    if not (airflow_home / "airflow.db").exists():
        # `airflow db migrate` in its own process: about 9 s, once per home.
        subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True,
                       capture_output=True, env=os.environ.copy())


def run_dag(paths: Paths, landing: Path, logical_date: dt.datetime, conf: dict | None = None):
    """One DAG run in this process; returns (state, per-task seconds, summary note)."""
    prepare_environment(paths, landing)
    from airflow.models import DagBag

    # dag.test() serves the task API in-process through Starlette's test client, whose
    # import warns that it is deprecated: upstream's to change, nothing a user can act on,
    # and it would be the one warning line in the middle of a clean run.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    # and the standard provider's sensor module (wait_for_turn) imports a helper that Airflow
    # itself has deprecated
    warnings.filterwarnings("ignore", message=r"The `airflow.utils.operator_helpers.determine_kwargs`")
    bag = DagBag(dag_folder=str(DAGS_FOLDER / f"{DAG_ID}.py"))
    if bag.import_errors:
        raise RuntimeError(f"the DAG does not import: {bag.import_errors}")
    dag = bag.get_dag(DAG_ID)
    # One night in-process, as a test: a failed task is reported at once. Left to retry, as
    # the scheduler would, dag.test() waits out the back-off (2, then 4 minutes) and logs
    # a warning every second meanwhile.
    for task in dag.tasks:
        if hasattr(task, "partial_kwargs"):  # the mapped ingest
            task.partial_kwargs["retries"] = 0
        else:
            task.retries = 0
        if task.task_id == "wait_for_turn":
            # and a run of the scheduler's holding the warehouse is said at once, as `run`
            # says a busy warehouse, not waited for (its log line names that run)
            task.mode, task.timeout = "poke", 0
    t0 = time.perf_counter()
    run = dag.test(logical_date=logical_date, run_conf=conf or {})
    elapsed = time.perf_counter() - t0
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == DAG_ID,
                                                 TaskInstance.run_id == run.run_id).all()
        timings = {}
        order = {task_id: n for n, task_id in enumerate(dag.task_ids)}  # as the DAG wires them
        for ti in sorted(tis, key=lambda ti: (order.get(ti.task_id, len(order)), ti.map_index)):
            # a mapped ingest by its extract (its map_index_template), as the UI shows it
            name = ti.task_id + (f"[{ti.rendered_map_index or ti.map_index}]" if ti.map_index >= 0 else "")
            timings[name] = (str(ti.state), round(ti.duration or 0.0, 2))
        from airflow.models.dagrun import DagRun
        from airflow.models.xcom import XComModel
        note = session.query(DagRun).filter(DagRun.dag_id == DAG_ID, DagRun.run_id == run.run_id).one().note
        # the summary whole, which the note holds only up to Airflow's 1,000 characters
        whole = session.query(XComModel).filter(XComModel.dag_id == DAG_ID, XComModel.run_id == run.run_id,
                                                XComModel.task_id == "summary",
                                                XComModel.key == "summary").one_or_none()
        if whole is not None:
            note = XComModel.deserialize_value(whole)
    if not timings:  # Airflow creates the run but schedules no task before the DAG's start_date
        start = dag.start_date.astimezone(logical_date.tzinfo)
        raise ValueError(f"the DAG ran no task for the night of {logical_date:%Y-%m-%d}: nights before its "
                         f"start_date ({start:%Y-%m-%d}) are not scheduled")
    return str(run.state), timings, note, elapsed, run.run_id
