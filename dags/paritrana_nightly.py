"""
### Paritrana nightly

Every night at 01:00 Asia/Jakarta: wait for the warehouse's turn → find ready deliveries
(control files) in the landing folder → ingest, one mapped task per extract → dbt build
(+ dbt docs) → Great Expectations gate → publish → run summary (task log and XCom
`summary`; the DAG run note when run in-process).

* **As-of date**: the business date before the logical date (Jakarta time); a backfill
  over past dates recomputes those dates. Param `year` makes it the final run of that
  year (as-of capped at Y-12-31), e.g. in January; a night before year Y has no as-of
  date in it and fails at `find_deliveries` saying so. The DAG starts on 2017-01-01
  (the award's first year) with catchup off, so any night since can be backfilled.
* **One writer**: `max_active_runs=1`, the ingest task maps with
  `max_active_tis_per_dag=1`, the other steps depend on each other, and every step takes
  the warehouse's writer lock (a manual `paritrana run` makes a task retry, not corrupt).
  Runs take turns: a backfill's runs (up to its own `--max-active-runs`, 10 by default)
  and the scheduled night wait in `wait_for_turn` while another live run holds the
  warehouse, from its first write to its summary (`HOME/.run_turn.json`).
* **Idempotent**: clearing any task and re-running it gives the same result.
* **Gate**: a blocking failure fails the `quality_gate` task with the check names; the
  year's latest publication (if any) stays the latest and `summary` fails the run visibly.

Locations: `$PARITRANA_HOME` (warehouse, publications, reports) and `$PARITRANA_LANDING`
(default `$PARITRANA_HOME/landing`).
"""
from __future__ import annotations

import datetime as dt
import os

import pendulum
from airflow.sdk import dag, get_current_context, task

DEFAULT_ARGS = {
    "owner": "paritrana-data-engineering",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=20),
}
# How often a waiting run asks for the warehouse's turn; each ask starts a task process.
TURN_POKE_SECONDS = int(os.environ.get("PARITRANA_TURN_POKE_SECONDS", "60"))


def _dates():
    from paritrana.orchestration import run_dates

    context = get_current_context()
    logical = context.get("logical_date") or context["dag_run"].run_after
    return run_dates(logical, context["params"].get("year"))


def _run_id():
    from paritrana.orchestration import safe_run_id

    return safe_run_id(get_current_context()["run_id"])


@dag(
    dag_id="paritrana_nightly",
    schedule="0 1 * * *",
    start_date=pendulum.datetime(2017, 1, 1, tz="Asia/Jakarta"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={"year": None, "full_refresh": False, "config": None},
    tags=["paritrana", "warehouse", "nightly"],
    doc_md=__doc__,
)
def paritrana_nightly():
    # Rescheduled between pokes, so a waiting run holds no worker slot; a run still waiting
    # after a day fails (each poke's log names the run it waits for). It retries: Airflow
    # 3.3 can fail a rescheduled sensor when one poke's end reaches the scheduler after the
    # next poke began (apache/airflow#71172; seen here with pokes 3 s apart).
    @task.sensor(poke_interval=TURN_POKE_SECONDS, timeout=24 * 3600, mode="reschedule")
    def wait_for_turn() -> bool:
        from paritrana.orchestration import locations, wait_for_turn

        return wait_for_turn(locations()[0], get_current_context())

    @task(retries=0)
    def find_deliveries() -> list[str]:
        from paritrana.orchestration import find_deliveries, full_refresh_param, load_methodology, locations
        from paritrana.pipeline import check_settings

        paths, landing = locations()
        year, _ = _dates()
        params = get_current_context()["params"]
        load_methodology(paths, year, params.get("config"))  # refused before any work, as are the others
        full_refresh_param(params.get("full_refresh"))
        check_settings(paths, year)
        extracts, landing_notes = find_deliveries(landing, paths.home)
        get_current_context()["ti"].xcom_push(key="landing", value=landing_notes)
        return extracts

    @task(max_active_tis_per_dag=1, map_index_template="{{ extract }}")
    def ingest(extract: str) -> dict:
        from paritrana.orchestration import hold_turn, ingest_group, locations

        get_current_context()["extract"] = extract  # the UI shows ingest[participants], not ingest[3]
        paths, landing = locations()
        hold_turn(paths, get_current_context())
        return ingest_group(paths, landing, extract, _run_id())

    @task(trigger_rule="none_failed")
    def dbt_build() -> dict:
        from paritrana.orchestration import build, full_refresh_param, hold_turn, locations

        paths, _ = locations()
        hold_turn(paths, get_current_context())
        year, as_of = _dates()
        params = get_current_context()["params"]
        return build(paths, year, as_of, params.get("config"), full_refresh_param(params.get("full_refresh")))

    @task
    def quality_gate() -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from paritrana.orchestration import gate, hold_turn, locations
        from paritrana.quality.gate import GateFailed

        paths, _ = locations()
        hold_turn(paths, get_current_context())
        year, _ = _dates()
        try:
            return gate(paths, _run_id(), year, get_current_context()["params"].get("config"))
        except GateFailed as e:  # a failed check is not transient: no retry (a busy warehouse is)
            raise AirflowFailException(str(e)) from e

    @task
    def publish() -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from paritrana.builds import StaleBuild
        from paritrana.orchestration import hold_turn, locations, publish

        paths, _ = locations()
        hold_turn(paths, get_current_context())
        year, as_of = _dates()
        try:
            return publish(paths, _run_id(), year, as_of, get_current_context()["params"].get("config"))
        except StaleBuild as e:  # another build is in the warehouse: retrying cannot bring this one back
            raise AirflowFailException(str(e)) from e

    @task(trigger_rule="all_done", retries=0)
    def summary(ingested) -> str:
        from airflow.sdk.exceptions import AirflowFailException

        from paritrana.orchestration import (gate_report, give_back_turn, latest_name, locations, log, set_run_note,
                                             summarize)

        paths, _ = locations()
        try:
            context = get_current_context()
            # Pulled, not passed: a failed gate leaves no XCom and must not stop the summary.
            built, checked, published = (context["ti"].xcom_pull(task_ids=t) for t in
                                         ("dbt_build", "quality_gate", "publish"))
            year, as_of = _dates()
            groups = [ingested[i] for i in range(len(ingested))] if ingested else []
            states = context["ti"].get_task_states(dag_id=context["dag"].dag_id, run_ids=[context["run_id"]])
            text = summarize(_run_id(), year, as_of, groups, built, checked, published,
                             states.get(context["run_id"], {}), context["ti"].xcom_pull(task_ids="find_deliveries"),
                             context["ti"].xcom_pull(task_ids="find_deliveries", key="landing"),
                             None if checked else gate_report(paths, _run_id()),
                             None if published else latest_name(paths, year))
            log.info("run summary\n%s", text)
            context["ti"].xcom_push(key="summary", value=text)  # whole: the run note is cut at 1,000 characters
            set_run_note(context["dag"].dag_id, context["run_id"], text)
            if not published:
                raise AirflowFailException("nothing was published this run:\n" + text)
            return text
        finally:  # the next run may write, whatever this summary says
            give_back_turn(paths, get_current_context())

    turn = wait_for_turn()
    found = find_deliveries()
    turn >> found
    ingested = ingest.expand(extract=found)
    built = dbt_build()
    checked = quality_gate()
    published = publish()
    ingested >> built >> checked >> published >> summary(ingested)


paritrana_nightly()
